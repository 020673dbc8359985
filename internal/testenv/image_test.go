package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
)

// runToExit creates and starts a container of image with cmd and returns
// its exit code. With stopAfter > 0 it stops the container (SIGTERM, 10s
// grace) that long after start and reports how long the stop took.
func runToExit(t *testing.T, cli *client.Client, image, service string, cmd []string, stopAfter time.Duration) (int64, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	created, err := cli.ContainerCreate(ctx,
		&container.Config{Image: image, Cmd: cmd, Labels: map[string]string{serviceLabel: service}},
		nil, nil, nil, "")
	if err != nil {
		t.Fatalf("create container: %v", err)
	}
	waitC, errC := cli.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
	if err := cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start container: %v", err)
	}
	var stopTook time.Duration
	if stopAfter > 0 {
		select {
		case <-time.After(stopAfter):
		case res := <-waitC:
			t.Fatalf("container exited with %d before it was stopped", res.StatusCode)
		}
		timeout := 10
		start := time.Now()
		if err := cli.ContainerStop(ctx, created.ID, container.StopOptions{Timeout: &timeout}); err != nil {
			t.Fatalf("stop container: %v", err)
		}
		stopTook = time.Since(start)
	}
	select {
	case res := <-waitC:
		return res.StatusCode, stopTook
	case err := <-errC:
		t.Fatalf("wait for container: %v", err)
	}
	return 0, 0
}

func TestDemoImage_ExitCodes(t *testing.T) {
	cli := Docker(t)
	svc := UniqueService(t)
	t.Cleanup(func() { RemoveServiceContainers(t, cli, svc) })

	tests := []struct {
		name      string
		ref       string
		args      map[string]string
		cmd       []string
		stopAfter time.Duration
		want      int64
	}{
		{"migrate succeeds", "deployd-testenv-demo:v1", map[string]string{"APP_VERSION": "v1"}, []string{"migrate"}, 0, 0},
		{"migrate fails with MIGRATE_EXIT", "deployd-testenv-demo:v1-migrate3", map[string]string{"APP_VERSION": "v1", "MIGRATE_EXIT": "3"}, []string{"migrate"}, 0, 3},
		{"CRASH_AT_START exits 1", "deployd-testenv-demo:v1-crash", map[string]string{"APP_VERSION": "v1", "CRASH_AT_START": "1"}, nil, 0, 1},
		{"SIGTERM as PID 1 exits 0 at once", "deployd-testenv-demo:v1", map[string]string{"APP_VERSION": "v1"}, nil, 500 * time.Millisecond, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			image := DemoImage(t, cli, tt.ref, tt.args)
			got, stopTook := runToExit(t, cli, image, svc, tt.cmd, tt.stopAfter)
			if got != tt.want {
				t.Fatalf("exit code = %d, want %d", got, tt.want)
			}
			// Docker kills after the 10s grace; a graceful exit is far quicker.
			if stopTook > 5*time.Second {
				t.Fatalf("stop took %v, want the app to exit on SIGTERM", stopTook)
			}
		})
	}
}
