// Command deployd is a blue-green deployment controller for one Docker host
// with nginx in front. See the README for the configuration and the API.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/deployd/deployd/internal/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `deployd: blue-green deploys for one Docker host with nginx in front.

Daemon commands:
  deployd serve [--config PATH]   run the daemon (config also from DEPLOYD_CONFIG)
  deployd switchd [--config PATH] run the traffic switch process of traffic.mode switch
                                  (the daemon starts it itself unless traffic.switchd.spawn is false)
  deployd check [--config PATH]   validate the configuration and exit
  deployd recover [--config PATH] rebuild a corrupted store from Docker and nginx
  deployd ping [--url URL]        exit 0 when the daemon answers /healthz (for container health checks)
  deployd nginx [--socket PATH] -t|-T|-V|reload
                                  ask the root nginx helper (host install) to test or reload nginx
  deployd version                 print the version
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage+"\n"+cliUsage)
		return 2
	}
	switch args[0] {
	case "deploy", "rollback", "cancel", "status", "history", "watch":
		return runCLI(args, stdout, stderr, os.Getenv)
	case "hook":
		return runHook(args[1:], stdout, stderr, os.Getenv)
	case "serve":
		return serve(args[1:], stderr)
	case "switchd":
		return runSwitchd(args[1:], stderr)
	case "check":
		return check(args[1:], stdout, stderr)
	case "recover":
		return runRecover(args[1:], stdout, stderr)
	case "ping":
		return ping(args[1:], stdout, stderr)
	case "nginx":
		return nginxHelper(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "deployd", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage+"\n"+cliUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "deployd: unknown command %q\n\n%s\n%s", args[0], usage, cliUsage)
		return 2
	}
}

// loadConfigFlag parses --config and loads the configuration it names,
// returning its path too.
func loadConfigFlag(name string, args []string, stderr io.Writer) (*config.Config, string, error) {
	fs := flag.NewFlagSet("deployd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (default: $DEPLOYD_CONFIG)")
	if err := fs.Parse(args); err != nil {
		return nil, "", err
	}
	if fs.NArg() > 0 {
		return nil, "", fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	p, err := config.Path(*path, os.Getenv)
	if err != nil {
		return nil, "", err
	}
	cfg, err := config.Load(p, os.Getenv)
	return cfg, p, err
}

func check(args []string, stdout, stderr io.Writer) int {
	cfg, _, err := loadConfigFlag("check", args, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "deployd: %v\n", err)
		return 1
	}
	if _, err := cfg.ResolveTokens(os.Getenv, os.ReadFile); err != nil {
		fmt.Fprintf(stderr, "deployd: %v\n", err)
		return 1
	}
	if _, err := cfg.ResolveWebhookSecret(os.Getenv, os.ReadFile); err != nil {
		fmt.Fprintf(stderr, "deployd: %v\n", err)
		return 1
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	if cfg.Nginx.Mode == config.NginxModeExec {
		// The same question startup asks, so that a pid file nginx does
		// not use is found before a restart, not at the next deploy.
		p := askNginxPID(context.Background(), cfg.Nginx)
		path, warning, err := p.resolve(cfg)
		switch {
		case err != nil && p.askErr != nil:
			// nginx may only be reachable from the daemon's own
			// environment (its user, the helper's socket).
			fmt.Fprintf(stdout, "warning: %v; deployd serve refuses to start unless nginx answers there\n", err)
		case err != nil:
			fmt.Fprintf(stderr, "deployd: %v\n", err)
			return 1
		case warning != "":
			fmt.Fprintf(stdout, "warning: %s\n", warning)
		default:
			fmt.Fprintf(stdout, "nginx pid file: %s (matches nginx's config)\n", path)
		}
	}
	if cfg.NginxStatic() {
		// Nothing of nginx's is asked: say what it must proxy to instead,
		// since deployd never checks that it does.
		where := "the traffic switch"
		if cfg.EdgesOn() {
			where = "each edge's traffic switch"
		}
		for _, name := range slices.Sorted(maps.Keys(cfg.Services)) {
			fmt.Fprintf(stdout, "nginx static: proxy %s to %s at %s\n", name, where, cfg.SwitchListen(name))
		}
	}
	fmt.Fprintf(stdout, "configuration ok: %d service(s)\n", len(cfg.Services))
	return 0
}

func serve(args []string, stderr io.Writer) int {
	cfg, path, err := loadConfigFlag("serve", args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "deployd: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	m := NewMain(cfg, os.Getenv, stderr)
	m.ConfigPath = path
	if err := m.Run(ctx); err != nil {
		m.Logger.WithError(withRecoverCommand(err, path)).Error("deployd could not start")
		closeMain(m, cfg)
		return 1
	}
	m.Logger.WithField("listen", m.Addr()).WithField("version", version).Info("deployd started")

	var code int
	select {
	case <-ctx.Done():
		m.Logger.Info("shutting down")
	case err := <-m.ServeErr():
		m.Logger.WithError(err).Error("API server stopped")
		code = 1
	}
	stop()
	if err := closeMain(m, cfg); err != nil {
		code = 1
	}
	return code
}

func closeMain(m *Main, cfg *config.Config) error {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		m.Logger.WithError(err).Error("shutdown")
		return err
	}
	m.Logger.Info("deployd stopped")
	return nil
}

// ping is a health check for images without curl: it asks a running
// daemon's /healthz and exits non-zero unless it answers 200.
func ping(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("deployd ping", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:7400/healthz", "the daemon's health endpoint")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "deployd ping: %v\n", err)
		return 2
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "deployd ping: %v\n", err)
		return 1
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "deployd ping: %s answered %s\n", *url, resp.Status)
		return 1
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}
