package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/deployd/deployd/pkg/client"
)

// hookUsage is the webhook sender's usage; it is the CLI's way to deploy
// with the webhook secret instead of an API token.
const hookUsage = `  deployd hook     --service NAME --image TAG [--commit C] [--ref R] [--actor A] [--delivery ID] [--json]
                   signs with DEPLOYD_WEBHOOK_SECRET (only from the environment) and a fresh timestamp
`

// webhookSecretEnv is where hook reads the secret: never a flag, which
// would show in the process list.
const webhookSecretEnv = "DEPLOYD_WEBHOOK_SECRET"

// runHook sends one signed, timestamped delivery to POST /hooks/deploy and
// prints the deployment it started. Exit statuses are the CLI's.
func runHook(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runHookContext(ctx, args, stdout, stderr, getenv)
}

func runHookContext(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("deployd hook", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var common commonFlags
	common.register(fs, getenv)
	var d client.WebhookDelivery
	fs.StringVar(&d.Service, "service", "", "the service to deploy (required)")
	fs.StringVar(&d.Image, "image", "", "the image tag or reference within the service's repository (required)")
	fs.StringVar(&d.Commit, "commit", "", "the commit the image was built from, for the record")
	fs.StringVar(&d.Ref, "ref", "", "the git ref built (checked against the service's allowed_refs)")
	fs.StringVar(&d.Actor, "actor", "", "who asked, for the record")
	delivery := fs.String("delivery", "", "the delivery id; the same id again answers with the deployment it started (default: random)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "deployd hook: "+format+"\n", a...)
		return code
	}
	switch {
	case fs.NArg() > 0:
		return fail(exitUsage, "unexpected argument %q", fs.Arg(0))
	case d.Service == "" || d.Image == "":
		return fail(exitUsage, "hook needs --service and --image")
	case common.server == "":
		return fail(exitUsage, "no server: pass --server URL or set DEPLOYD_SERVER")
	}
	if *delivery == "" {
		var b [16]byte
		_, _ = rand.Read(b[:]) // never fails (Go 1.24+)
		*delivery = hex.EncodeToString(b[:])
	}
	if !client.ValidDelivery(*delivery) {
		return fail(exitUsage, "--delivery must be up to 128 letters, digits, '-', '_' or '.'")
	}
	secret := getenv(webhookSecretEnv)
	if secret == "" {
		return fail(exitUsage, "%s is not set: the webhook secret is read only from the environment", webhookSecretEnv)
	}
	hook, err := client.NewHook(common.server, []byte(secret), nil)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	cctx, cancel := callCtx(ctx)
	defer cancel()
	accepted, replayed, err := hook.Send(cctx, *delivery, d)
	if err != nil {
		return fail(exitFailed, "%v", err)
	}
	c := &cli{stdout: stdout, stderr: stderr, json: common.json}
	if c.json {
		if err := c.printJSON(accepted); err != nil {
			return fail(exitFailed, "%v", err)
		}
		return exitOK
	}
	what := "started"
	if replayed {
		what = "already started by this delivery"
	}
	fmt.Fprintf(stdout, "deployment %s %s (%s, delivery %s)\n", accepted.Deployment.ID, what, accepted.URL, *delivery)
	return exitOK
}
