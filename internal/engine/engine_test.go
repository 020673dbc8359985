package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/deployd/deployd/pkg/controller"
)

// engineAway is the error the client gives when no engine answers.
func engineAway(t *testing.T) error {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.WithHost("unix://" + filepath.Join(t.TempDir(), "docker.sock")))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	_, err = cli.Ping(context.Background())
	if err == nil {
		t.Fatal("Ping of a socket nobody listens on succeeded")
	}
	return err
}

func TestWrapErr_MapsTheEngineErrorClassesOntoTheSentinels(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want error // nil: neither sentinel
	}{
		{"not found", fmt.Errorf("no such container: %w", cerrdefs.ErrNotFound), controller.ErrNotFound},
		{"engine away", engineAway(t), controller.ErrUnavailable},
		{"other", errors.New("conflict"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := WrapErr("inspect web-1", tt.err)
			if !strings.HasPrefix(got.Error(), "inspect web-1: ") || !errors.Is(got, tt.err) {
				t.Errorf("WrapErr = %v, want it to name the op and wrap %v", got, tt.err)
			}
			for _, s := range []error{controller.ErrNotFound, controller.ErrUnavailable} {
				if errors.Is(got, s) != (s == tt.want) {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", got, s, !(s == tt.want), s == tt.want)
				}
			}
		})
	}
	if WrapErr("op", nil) != nil {
		t.Error("WrapErr(nil) is not nil")
	}
}

func TestReadTail_KeepsTheLastBytesOfBothStreams(t *testing.T) {
	var stream bytes.Buffer
	out, errw := stdcopy.NewStdWriter(&stream, stdcopy.Stdout), stdcopy.NewStdWriter(&stream, stdcopy.Stderr)
	fmt.Fprint(out, "applying 0001\n")
	fmt.Fprint(errw, "relation missing\n")
	all := "applying 0001\nrelation missing\n"
	got, err := ReadTail(&stream, 20)
	if err != nil || got != all[len(all)-20:] {
		t.Errorf("ReadTail = %q, %v; want the last 20 bytes of both streams", got, err)
	}
}
