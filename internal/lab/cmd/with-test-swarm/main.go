// Command with-test-swarm runs a command while the local engine is kept a
// single-node swarm manager (lab.KeepSwarm), then leaves the swarm if it
// is the tests' own and nobody else uses it. make test runs go test under
// it, so that the packages that use the swarm run beside the others: the
// swarm is set up before any test starts and left after the last one, and
// never while other tests' containers run.
//
//	go run ./internal/lab/cmd/with-test-swarm go test ./...
//
// Outside CI an engine that cannot be a swarm manager is a warning (the
// swarm tests then skip); with CI=true it is an error. It exits with the
// command's exit code.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/docker/docker/client"

	"github.com/deployd/deployd/internal/lab"
)

// keepTimeout bounds setting the swarm up, mostly the wait for a swarm
// lock another run holds; leaveTimeout bounds leaving it.
const (
	keepTimeout  = 10 * time.Minute
	leaveTimeout = time.Minute
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: with-test-swarm command [args...]")
		return 2
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		fmt.Fprintln(os.Stderr, "with-test-swarm: docker client:", err)
		return 1
	}
	defer func() { _ = cli.Close() }()

	ctx, cancel := context.WithTimeout(context.Background(), keepTimeout)
	keep, err := lab.KeepSwarm(ctx, cli)
	cancel()
	switch {
	case errors.Is(err, lab.ErrSwarmUnavailable) && os.Getenv("CI") != "true":
		fmt.Fprintln(os.Stderr, "with-test-swarm: no swarm for the tests (they will skip):", err)
	case err != nil:
		fmt.Fprintln(os.Stderr, "with-test-swarm:", err)
		return 1
	}

	code := runCommand(args)

	if keep != nil {
		ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
		defer cancel()
		if _, err := keep.Release(ctx, cli); err != nil {
			fmt.Fprintln(os.Stderr, "with-test-swarm: leave the test swarm:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// runCommand runs args with this process's stdio, passes SIGINT and
// SIGTERM on to it (so that Ctrl-C still runs the tests' cleanups and
// the swarm is left after them), and returns its exit code.
func runCommand(args []string) int {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(signals)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "with-test-swarm:", err)
		return 1
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case sig := <-signals:
				_ = cmd.Process.Signal(sig)
			case <-done:
				return
			}
		}
	}()
	err := cmd.Wait()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		return exit.ExitCode()
	default:
		fmt.Fprintln(os.Stderr, "with-test-swarm:", err)
		return 1
	}
}
