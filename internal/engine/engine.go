// Package engine is what both runtimes, dockerx on one host and swarmx on
// a swarm, do alike with the Docker Engine API's answers: its error
// classes mapped onto the controller's sentinels, and the tail of a
// multiplexed log stream.
package engine

import (
	"fmt"
	"io"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/deployd/deployd/internal/tailbuf"
	"github.com/deployd/deployd/pkg/controller"
)

// WrapErr adds op to err and maps the engine's error classes onto the
// controller's sentinels, so callers can use errors.Is: a connection that
// failed is controller.ErrUnavailable, an object that is not there
// controller.ErrNotFound.
func WrapErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case client.IsErrConnectionFailed(err):
		return fmt.Errorf("%s: %w: %w", op, controller.ErrUnavailable, err)
	case cerrdefs.IsNotFound(err):
		return fmt.Errorf("%s: %w: %w", op, controller.ErrNotFound, err)
	default:
		return fmt.Errorf("%s: %w", op, err)
	}
}

// ReadTail reads a log stream of a process run without a TTY, which the
// engine multiplexes, and returns its last max bytes, stdout and stderr
// interleaved as the engine recorded them.
func ReadTail(r io.Reader, max int) (string, error) {
	tail := tailbuf.New(max)
	if _, err := stdcopy.StdCopy(tail, tail, r); err != nil {
		return "", fmt.Errorf("read logs: %w", err)
	}
	return tail.String(), nil
}
