// Command demoapp stands in for a user's web application in deployd's demos
// and integration tests. Its behaviour (version, health, crashes, startup and
// migration timing) comes from environment variables so that a test can bake
// a misbehaviour into an image tag; see config.go.
//
//	demoapp                 serve HTTP on $PORT (default 8000)
//	demoapp migrate         pretend to apply database migrations, exit $MIGRATE_EXIT
//	demoapp showmigrations  print the migrations of $APP_VERSION, as Django's
//	                        showmigrations --plan does (see versionMigrations)
//	demoapp backup-fake     stand in for pg_dump as a deployd backup image: write
//	                        $BACKUP_FAKE_BYTES bytes (default 4096) to
//	                        $DEPLOYD_BACKUP_FILE, then exit $BACKUP_FAKE_EXIT
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// shutdownGrace is how long in-flight requests get after SIGTERM; it stays
// under Docker's default 10s stop timeout so the exit is clean.
const shutdownGrace = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: it returns the exit code. ctx ends on
// SIGTERM/SIGINT.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := loadConfig(getenv)
	if err != nil {
		fmt.Fprintf(stderr, "demoapp: %v\n", err)
		return 2
	}
	if len(args) > 0 {
		switch args[0] {
		case "migrate":
			return migrate(ctx, cfg, stdout, stderr)
		case "showmigrations":
			return showMigrations(cfg, stdout)
		case "backup-fake":
			return backupFake(getenv, stderr)
		case "healthcheck":
			return healthcheck(ctx, cfg.Port, stderr)
		default:
			fmt.Fprintf(stderr, "demoapp: unknown command %q (want no command, migrate, showmigrations, backup-fake or healthcheck)\n", args[0])
			return 2
		}
	}
	if err := serve(ctx, cfg, nil, stdout); err != nil {
		fmt.Fprintf(stderr, "demoapp: %v\n", err)
		return 1
	}
	return 0
}

// errCrash is the deliberate failure CRASH_AT_START and CRASH_AFTER ask for.
var errCrash = errors.New("crashing as configured")

// serve runs the HTTP server until ctx ends (a nil error: graceful
// shutdown) or a configured crash. ready, when not nil, receives the
// listening address once the server accepts connections.
func serve(ctx context.Context, cfg config, ready chan<- string, stdout io.Writer) error {
	if cfg.CrashAtStart {
		return fmt.Errorf("CRASH_AT_START: %w", errCrash)
	}
	if err := sleep(ctx, cfg.StartupDelay); err != nil {
		return nil // stopped while still starting: nothing to shut down
	}
	hostname, err := os.Hostname()
	if err != nil {
		hostname = "unknown"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("0.0.0.0", strconv.Itoa(cfg.Port)))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	fmt.Fprintf(stdout, "demoapp %s (color %q) listening on %s\n", cfg.Version, cfg.Color, ln.Addr())
	if ready != nil {
		ready <- ln.Addr().String()
	}
	a := &app{cfg: cfg, hostname: hostname}
	return serveOn(ctx, ln, a.routes(), cfg.CrashAfter, stdout)
}

// serveOn serves h on ln until ctx ends, then shuts down gracefully: requests
// whose handlers are running get shutdownGrace to finish. With crashAfter >
// 0 it instead dies that long after start, without draining.
func serveOn(ctx context.Context, ln net.Listener, h http.Handler, crashAfter time.Duration, stdout io.Writer) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	var crash <-chan time.Time
	if crashAfter > 0 {
		t := time.NewTimer(crashAfter)
		defer t.Stop()
		crash = t.C
	}

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-crash:
		// A crash does not drain: the point is to look like a dying process.
		_ = srv.Close()
		<-served
		return fmt.Errorf("CRASH_AFTER %s: %w", crashAfter, errCrash)
	case <-ctx.Done():
	}

	fmt.Fprintln(stdout, "demoapp: shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-served // Serve returns ErrServerClosed as soon as Shutdown starts
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// migrate imitates `manage.py migrate`: output a deploy log can show, an
// exit code the pre-deploy step must honour, and a delay for its timeout.
func migrate(ctx context.Context, cfg config, stdout, stderr io.Writer) int {
	if err := sleep(ctx, cfg.MigrateDelay); err != nil {
		fmt.Fprintln(stderr, "migrate: interrupted")
		return 130
	}
	fmt.Fprintln(stdout, "Operations to perform:")
	fmt.Fprintln(stdout, "  Apply all migrations: app")
	fmt.Fprintln(stdout, "Running migrations:")
	fmt.Fprintln(stdout, "  Applying app.0001_initial... OK")
	if cfg.MigrateExit != 0 {
		fmt.Fprintln(stdout, "  Applying app.0002_add_email... FAILED")
		fmt.Fprintf(stderr, "migrate: django.db.utils.OperationalError: simulated failure (exit %d)\n", cfg.MigrateExit)
		return cfg.MigrateExit
	}
	fmt.Fprintln(stdout, "  Applying app.0002_add_email... OK")
	return 0
}

// backupFake writes a fake dump where deployd's backup step asks for one,
// so that the demo image can stand in for a pg_dump image in tests.
func backupFake(getenv func(string) string, stderr io.Writer) int {
	file := getenv("DEPLOYD_BACKUP_FILE")
	if file == "" {
		fmt.Fprintln(stderr, "backup-fake: DEPLOYD_BACKUP_FILE is not set")
		return 2
	}
	size, exit := 4096, 0
	for _, v := range []struct {
		name string
		dst  *int
	}{{"BACKUP_FAKE_BYTES", &size}, {"BACKUP_FAKE_EXIT", &exit}} {
		if s := getenv(v.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				fmt.Fprintf(stderr, "backup-fake: %s: %q is not a non-negative integer\n", v.name, s)
				return 2
			}
			*v.dst = n
		}
	}
	if err := os.WriteFile(file, bytes.Repeat([]byte{'d'}, size), 0o600); err != nil {
		fmt.Fprintf(stderr, "backup-fake: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "pg_dump: (fake) wrote %d bytes to %s\n", size, file)
	return exit
}

// sleep waits d or until ctx ends, whichever is first.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// healthcheckTimeout bounds the healthcheck command's request: Docker's
// HEALTHCHECK has its own timeout, and a check that hangs past it is
// counted as a failure anyway.
const healthcheckTimeout = 2 * time.Second

// healthcheck asks the app on port for /health, as an image's HEALTHCHECK
// runs it inside the container (a FROM scratch image has no curl): 0 when
// it answers 200, else 1 with the reason on stderr.
func healthcheck(ctx context.Context, port int, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(ctx, healthcheckTimeout)
	defer cancel()
	url := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) + "/health"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 1
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 1
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "healthcheck: GET %s: %s\n", url, res.Status)
		return 1
	}
	return 0
}
