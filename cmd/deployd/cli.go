package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/pkg/client"
	"github.com/deployd/deployd/pkg/controller"
)

// cliUsage lists the client commands, which talk to a running deployd.
const cliUsage = `Client commands (server from --server or DEPLOYD_SERVER, token only from DEPLOYD_TOKEN):
  deployd deploy   --service NAME --image TAG [--commit C] [--on-behalf-of WHO] [--wait] [--json]
  deployd rollback --service NAME [--confirm-schema-change] [--wait] [--json]
  deployd cancel   --id ID [--json]
  deployd status   [--service NAME] [--json]
  deployd history  [--service NAME] [--limit N] [--json]
  deployd watch    [--service NAME] [--json]
` + hookUsage + `
With --wait, deploy and rollback print each step as it happens and exit 0
when the deployment succeeded, 1 when it failed, was cancelled or interrupted.
A rollback across a breaking schema change (migrations the standby never ran
against) is refused, naming them, unless --confirm-schema-change is given.
watch prints every service's events as they happen (deploys, steps, log
lines, health and traffic changes, container changes, notifications) until
Ctrl-C, which exits 0; with --json it prints each event's JSON on a line.
Exit status 2 means the command itself was wrong (flags, server, token).
`

// Exit statuses of the client commands.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

const (
	// requestTimeout bounds each API call except the event stream.
	requestTimeout = 30 * time.Second
	// defaultWaitTimeout bounds --wait, so a CI job cannot hang forever on
	// a deployd that went away.
	defaultWaitTimeout = 30 * time.Minute
)

// runCLI runs the client command args[0] (deploy, rollback, cancel, status,
// history) with the flags in args[1:] and returns the exit status. The
// token is read through getenv only: a flag would show in the process list.
// SIGINT and SIGTERM stop a --wait without touching the deployment.
func runCLI(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runCLIContext(ctx, args, stdout, stderr, getenv)
}

// cli is one client command's invocation.
type cli struct {
	stdout, stderr io.Writer
	api            *client.Client
	json           bool
}

// commonFlags are the flags every client command takes.
type commonFlags struct {
	server string
	json   bool
}

func (f *commonFlags) register(fs *flag.FlagSet, getenv func(string) string) {
	fs.StringVar(&f.server, "server", getenv("DEPLOYD_SERVER"), "deployd's URL (default: $DEPLOYD_SERVER)")
	fs.BoolVar(&f.json, "json", false, "print the API's JSON instead of text")
}

func usagef(format string, args ...any) error {
	return fmt.Errorf(format, args...)
}

// required returns a validate func that fails with msg while any of flags
// is empty.
func required(msg string, flags ...*string) func() error {
	return func() error {
		for _, f := range flags {
			if *f == "" {
				return usagef("%s", msg)
			}
		}
		return nil
	}
}

func runCLIContext(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, cliUsage)
		return exitUsage
	}
	name := args[0]
	fs := flag.NewFlagSet("deployd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var common commonFlags
	common.register(fs, getenv)

	// validate checks the flags before anything needs the server or token,
	// so a missing --service is reported as that.
	validate := func() error { return nil }
	var run func(context.Context, *cli) error
	switch name {
	case "deploy":
		service := fs.String("service", "", "the service to deploy (required)")
		image := fs.String("image", "", "the image tag or reference within the service's repository (required)")
		commit := fs.String("commit", "", "the commit the image was built from, for the record")
		onBehalfOf := fs.String("on-behalf-of", "", "who you act for, recorded beside the token's name as a claim")
		// --actor is the flag's old name; the token's name is the actor now.
		fs.StringVar(onBehalfOf, "actor", "", "deprecated: the old name of --on-behalf-of")
		w := registerWait(fs)
		validate = required("deploy needs --service and --image", service, image)
		run = func(ctx context.Context, c *cli) error {
			cctx, cancel := callCtx(ctx)
			defer cancel()
			d, err := c.api.Deploy(cctx, *service, *image, *commit, *onBehalfOf)
			if err != nil {
				return fmt.Errorf("deploy %s: %w", *service, err)
			}
			return c.started(ctx, d, w)
		}
	case "rollback":
		service := fs.String("service", "", "the service to roll back to its standby color (required)")
		confirmSchema := fs.Bool("confirm-schema-change", false,
			"roll back even across a breaking schema change (migrations the standby never ran against)")
		w := registerWait(fs)
		validate = required("rollback needs --service", service)
		run = func(ctx context.Context, c *cli) error {
			cctx, cancel := callCtx(ctx)
			defer cancel()
			d, err := c.api.Rollback(cctx, *service, *confirmSchema)
			var apiErr *client.APIError
			if errors.As(err, &apiErr) && apiErr.Code == controller.ESCHEMACHANGE {
				// The server's hint names the API field; this is the flag.
				return fmt.Errorf("not rolled back: %s\nRun again with --confirm-schema-change to roll back anyway",
					strings.TrimSuffix(apiErr.Message, " Roll back with confirm_schema_change to do it anyway."))
			}
			if err != nil {
				return fmt.Errorf("roll back %s: %w", *service, err)
			}
			return c.started(ctx, d, w)
		}
	case "cancel":
		id := fs.String("id", "", "the deployment to cancel (required)")
		validate = required("cancel needs --id", id)
		run = func(ctx context.Context, c *cli) error {
			cctx, cancel := callCtx(ctx)
			defer cancel()
			d, err := c.api.Cancel(cctx, *id)
			if err != nil {
				return fmt.Errorf("cancel %s: %w", *id, err)
			}
			if c.json {
				return c.printJSON(d)
			}
			fmt.Fprintf(c.stdout, "cancel requested for deployment %s (%s); it stops at its next safe point\n", d.ID, d.Status)
			return nil
		}
	case "status":
		service := fs.String("service", "", "show only this service")
		run = func(ctx context.Context, c *cli) error { return c.status(ctx, *service) }
	case "history":
		service := fs.String("service", "", "show only this service's deployments")
		limit := fs.Int("limit", 20, "how many deployments to show, newest first")
		validate = func() error {
			if *limit < 1 {
				return usagef("--limit must be at least 1, got %d", *limit)
			}
			return nil
		}
		run = func(ctx context.Context, c *cli) error { return c.history(ctx, *service, *limit) }
	case "watch":
		service := fs.String("service", "", "show only this service's events")
		run = func(ctx context.Context, c *cli) error { return c.watch(ctx, *service) }
	default:
		fmt.Fprintf(stderr, "deployd: unknown command %q\n\n%s", name, cliUsage)
		return exitUsage
	}

	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "deployd %s: unexpected argument %q\n", name, fs.Arg(0))
		return exitUsage
	}
	if err := validate(); err != nil {
		fmt.Fprintf(stderr, "deployd %s: %v\n", name, err)
		return exitUsage
	}
	api, err := newAPIClient(common.server, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "deployd %s: %v\n", name, err)
		return exitUsage
	}
	c := &cli{stdout: stdout, stderr: stderr, api: api, json: common.json}
	err = run(ctx, c)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "deployd %s: %v\n", name, err)
	// Failed deployments and failed calls alike: the CI step fails.
	return exitFailed
}

func newAPIClient(server string, getenv func(string) string) (*client.Client, error) {
	if server == "" {
		return nil, errors.New("no server: pass --server URL or set DEPLOYD_SERVER")
	}
	token := getenv("DEPLOYD_TOKEN")
	if token == "" {
		return nil, errors.New("DEPLOYD_TOKEN is not set: the API token is read only from the environment, never from a flag")
	}
	return client.New(server, token, nil)
}

// callCtx bounds one API call; the stream of --wait has its own timeout.
func callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, requestTimeout)
}

func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}

// waitFlags are --wait and its timeout.
type waitFlags struct {
	wait    bool
	timeout time.Duration
}

func registerWait(fs *flag.FlagSet) *waitFlags {
	w := &waitFlags{}
	fs.BoolVar(&w.wait, "wait", false, "follow the deployment until it ends; exit 1 unless it succeeded")
	fs.DurationVar(&w.timeout, "timeout", defaultWaitTimeout, "how long --wait waits before giving up (the deployment goes on)")
	return w
}

// deploymentFailed is a deployment that ended other than succeeded.
type deploymentFailed struct {
	d api.Deployment
}

func (e *deploymentFailed) Error() string {
	msg := fmt.Sprintf("deployment %s %s", e.d.ID, e.d.Status)
	if e.d.Error != "" {
		msg += ": " + e.d.Error
	}
	return msg
}

// started reports an accepted deployment and, with --wait, follows it.
func (c *cli) started(ctx context.Context, d api.Deployment, w *waitFlags) error {
	if !w.wait {
		if c.json {
			return c.printJSON(d)
		}
		fmt.Fprintf(c.stdout, "%s %s of %s: %s (%s)\n", d.Kind, d.ID, d.Service, d.Status, describeMove(d))
		return nil
	}
	// With --json, stdout holds only the final JSON; progress goes to
	// stderr where a CI log still shows it.
	progress := c.stdout
	if c.json {
		progress = c.stderr
	}
	fmt.Fprintf(progress, "%s %s of %s (%s)\n", d.Kind, d.ID, d.Service, describeMove(d))

	wctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	var final *api.Event
	err := c.api.Events(wctx, d.ID, 0, func(ev api.Event) error {
		if line := eventLine(ev); line != "" {
			fmt.Fprintln(progress, line)
		}
		if ev.Type == controller.EventStatus {
			e := ev
			final = &e
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return fmt.Errorf("stopped waiting for deployment %s (%w); it goes on: see deployd history, or stop it with deployd cancel --id %s", d.ID, err, d.ID)
		}
		return fmt.Errorf("follow deployment %s: %w", d.ID, err)
	}

	// The record is the authority on the outcome; the final event stands in
	// when the record cannot be read.
	cctx, ccancel := callCtx(ctx)
	defer ccancel()
	got, err := c.api.Deployment(cctx, d.ID)
	if err != nil {
		if final == nil {
			return fmt.Errorf("read deployment %s: %w", d.ID, err)
		}
		fmt.Fprintf(c.stderr, "deployd: read deployment %s: %v\n", d.ID, err)
		got = d
		if err := got.Status.UnmarshalText([]byte(final.Status)); err != nil {
			return fmt.Errorf("deployment %s: %w", d.ID, err)
		}
		got.Error = final.Message
	}
	if c.json {
		if err := c.printJSON(got); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(c.stdout, "%s %s of %s %s%s\n", got.Kind, got.ID, got.Service, got.Status, durationSuffix(got))
	}
	if got.Status != controller.StatusSucceeded {
		return &deploymentFailed{got}
	}
	return nil
}

func describeMove(d api.Deployment) string {
	from := string(d.FromColor)
	if from == "" {
		from = "none"
	}
	s := fmt.Sprintf("%s -> %s", from, d.ToColor)
	if d.Image != "" {
		s = d.Image + ", " + s
	}
	return s
}

func durationSuffix(d api.Deployment) string {
	if dur := deploymentDuration(d); dur != "-" {
		return " in " + dur
	}
	return ""
}

// eventLine renders one progress event, "" for those not worth a line.
func eventLine(ev api.Event) string {
	switch ev.Type {
	case controller.EventStep:
		s := ev.Status
		if ev.Message != "" {
			s += ": " + ev.Message
		}
		return fmt.Sprintf("  %-10s %s", ev.Step, s)
	case controller.EventLog:
		return fmt.Sprintf("  %-10s %s", ev.Step, ev.Message)
	case controller.EventStatus:
		// The final status gets its own summary line after the stream.
		var st controller.Status
		if st.UnmarshalText([]byte(ev.Status)) == nil && st.Done() {
			return ""
		}
		return "  status     " + ev.Status
	}
	return ""
}

func (c *cli) status(ctx context.Context, service string) error {
	ctx, cancel := callCtx(ctx)
	defer cancel()
	var views []api.Service
	if service != "" {
		v, err := c.api.Service(ctx, service)
		if err != nil {
			return fmt.Errorf("service %s: %w", service, err)
		}
		if c.json {
			return c.printJSON(v)
		}
		views = []api.Service{v}
	} else {
		vs, err := c.api.Services(ctx)
		if err != nil {
			return fmt.Errorf("services: %w", err)
		}
		if c.json {
			if vs == nil {
				vs = []api.Service{}
			}
			return c.printJSON(map[string]any{"services": vs})
		}
		views = vs
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tACTIVE\tSTANDBY\tLAST DEPLOYMENT")
	for _, v := range views {
		last := "-"
		if d := v.Deployment; d != nil {
			last = fmt.Sprintf("%s %s (%s)", d.Kind, d.Status, d.ID)
		}
		standby := colorImage(v.StandbyColor, v.StandbyImage)
		if v.StandbyState != "" && v.StandbyState != controller.StandbyNone {
			standby += " (" + v.StandbyState + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", v.Name, colorImage(v.ActiveColor, v.ActiveImage), standby, last)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	// A failure stays in view until a deploy of the service succeeds, as
	// on the status page.
	for _, v := range views {
		if d := v.LastFailure; d != nil {
			by := ""
			if d.Trigger.Actor != "" {
				by = " by " + d.Trigger.Actor
			}
			fmt.Fprintf(c.stdout, "%s: last deploy of %s %s%s at %s (%s): %s\n", v.Name, d.Image, d.Status, by,
				d.CreatedAt.UTC().Format(time.RFC3339), d.ID, d.Error)
		}
		// What a rollback would go back across, before anyone asks for one.
		if ch := v.RollbackSchemaChange; ch != nil {
			kind := "compatible"
			if ch.Breaking {
				kind = "breaking: a rollback needs --confirm-schema-change"
			}
			fmt.Fprintf(c.stdout, "%s: rollback crosses %s (%s)\n", v.Name, strings.Join(ch.Migrations, ", "), kind)
		}
	}
	return nil
}

func colorImage(c controller.Color, image string) string {
	if c == controller.NoColor {
		return "-"
	}
	if image == "" {
		return string(c)
	}
	return string(c) + " " + image
}

func (c *cli) history(ctx context.Context, service string, limit int) error {
	ctx, cancel := callCtx(ctx)
	defer cancel()
	ds, err := c.api.Deployments(ctx, service, limit)
	if err != nil {
		return fmt.Errorf("deployments: %w", err)
	}
	if c.json {
		if ds == nil {
			ds = []api.Deployment{}
		}
		return c.printJSON(map[string]any{"deployments": ds})
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSERVICE\tKIND\tIMAGE\tSTATUS\tDURATION\tACTOR")
	for _, d := range ds {
		actor := d.Trigger.Actor
		if d.Trigger.Source != "" && d.Trigger.Source != "api" {
			actor = strings.TrimPrefix(actor+" ("+d.Trigger.Source+")", " ")
		}
		if actor == "" {
			actor = "-"
		}
		if d.Trigger.OnBehalfOf != "" {
			actor += " for " + d.Trigger.OnBehalfOf + " (claimed)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Service, d.Kind, orDash(d.Image), d.Status, deploymentDuration(d), actor)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write history: %w", err)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// deploymentDuration is how long a finished deployment took, "-" while it
// runs.
func deploymentDuration(d api.Deployment) string {
	if d.FinishedAt == nil || d.CreatedAt.IsZero() {
		return "-"
	}
	dur := d.FinishedAt.Sub(d.CreatedAt)
	if dur < time.Second {
		return dur.Round(time.Millisecond).String()
	}
	return dur.Round(time.Second).String()
}

// watch prints the system's events until ctx ends (Ctrl-C), which is not
// an error.
func (c *cli) watch(ctx context.Context, service string) error {
	err := c.api.Watch(ctx, service, func(ev client.SystemEvent) error {
		if ev.Type == "heartbeat" {
			return nil
		}
		var err error
		if c.json {
			_, err = fmt.Fprintf(c.stdout, "%s\n", ev.Data)
		} else if line := watchLine(ev); line != "" {
			_, err = fmt.Fprintln(c.stdout, line)
		}
		if err != nil {
			return fmt.Errorf("write event: %w", err)
		}
		return nil
	})
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return fmt.Errorf("watch events: %w", err)
}

// watchLine renders one system event as a line of deployd watch, "" for
// those not worth one.
func watchLine(ev client.SystemEvent) string {
	var what string
	switch ev.Type {
	case "hello":
		return ""
	case "reset":
		return fmt.Sprintf("%s %-10s events may have been missed (%s); run deployd status to see where things stand",
			ev.Time.Local().Format(time.TimeOnly), "-", ev.Reason)
	case "deployment":
		what = fmt.Sprintf("%s %s %s %s", ev.Kind, ev.Deployment, ev.Image, ev.Status)
		if ev.Message != "" {
			what += ": " + ev.Message
		}
	case "step":
		what = fmt.Sprintf("step %s: %s", ev.Step, ev.Status)
		if ev.Message != "" {
			what += " (" + ev.Message + ")"
		}
	case "log":
		what = fmt.Sprintf("log %s: %s", ev.Step, ev.Message)
	case "service":
		what = "service " + ev.Message
	case "containers":
		what = "containers changed"
	case "notice":
		what = ev.Kind + ": " + ev.Message
	default:
		what = ev.Type
		if ev.Message != "" {
			what += ": " + ev.Message
		}
	}
	return fmt.Sprintf("%s %-10s %s", ev.Time.Local().Format(time.TimeOnly), orDash(ev.Service), what)
}
