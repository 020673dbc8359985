package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"
)

// runDemo starts one container of image labelled as a replica of service,
// with the app's port published on an ephemeral 127.0.0.1 port, and returns
// "127.0.0.1:<port>".
func runDemo(t *testing.T, cli *client.Client, image, service string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	created, err := cli.ContainerCreate(ctx,
		&container.Config{
			Image:        image,
			Env:          []string{"DEPLOYD_COLOR=blue", "DEPLOYD_SERVICE=" + service},
			Labels:       map[string]string{serviceLabel: service},
			ExposedPorts: nat.PortSet{"8000/tcp": {}},
		},
		&container.HostConfig{
			PortBindings: nat.PortMap{"8000/tcp": {{HostIP: "127.0.0.1", HostPort: ""}}},
		},
		nil, nil, service+"-blue-1")
	if err != nil {
		t.Fatalf("create container: %v", err)
	}
	if err := cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start container: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := cli.ContainerInspect(ctx, created.ID)
		if err != nil {
			t.Fatalf("inspect container: %v", err)
		}
		if b := info.NetworkSettings.Ports["8000/tcp"]; len(b) > 0 && b[0].HostPort != "" {
			return "127.0.0.1:" + b[0].HostPort
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s has no published port after 10s (state %s)", created.ID, info.State.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitStatus polls url until it answers want or 15s pass, and returns the
// body of the matching answer.
func waitStatus(t *testing.T, url string, want int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var last string
	for {
		status, body, err := Get(ctx, url)
		if err == nil && status == want {
			return body
		}
		last = fmt.Sprintf("status %d, body %q, err %v", status, body, err)
		select {
		case <-ctx.Done():
			t.Fatalf("GET %s never answered %d; last: %s", url, want, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func serviceContainers(t *testing.T, cli *client.Client, service string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", serviceLabel+"="+service))})
	if err != nil {
		t.Fatalf("list containers: %v", err)
	}
	return len(list)
}

func TestDemoImage_ContainerServesHealthAndVersionOnPublishedPort(t *testing.T) {
	cli := Docker(t)
	image := DemoImage(t, cli, "deployd-testenv-demo:v1", map[string]string{"APP_VERSION": "v1"})
	svc := UniqueService(t)
	t.Cleanup(func() { RemoveServiceContainers(t, cli, svc) })

	addr := runDemo(t, cli, image, svc)
	body := waitStatus(t, "http://"+addr+"/health", http.StatusOK)
	if !strings.Contains(body, `"healthy"`) {
		t.Fatalf("/health body = %q, want status healthy", body)
	}
	body = waitStatus(t, "http://"+addr+"/", http.StatusOK)
	var root struct{ Version, Color string }
	if err := json.Unmarshal([]byte(body), &root); err != nil {
		t.Fatalf("/ body %q: %v", body, err)
	}
	if root.Version != "v1" || root.Color != "blue" {
		t.Fatalf("/ = version %q color %q, want v1 blue", root.Version, root.Color)
	}
}

func TestDemoImage_BuildArgsBecomeBehaviour(t *testing.T) {
	cli := Docker(t)
	image := DemoImage(t, cli, "deployd-testenv-demo:v2-fail", map[string]string{"APP_VERSION": "v2", "HEALTH_MODE": "failing"})
	svc := UniqueService(t)
	t.Cleanup(func() { RemoveServiceContainers(t, cli, svc) })

	addr := runDemo(t, cli, image, svc)
	waitStatus(t, "http://"+addr+"/health", http.StatusServiceUnavailable)
}

func TestDemoImage_SameRefWithOtherArgsFails(t *testing.T) {
	// The mismatch check runs before any engine call, but DemoImage needs a
	// client and the binary; keep the test honest about its dependencies.
	cli := Docker(t)
	DemoImage(t, cli, "deployd-testenv-demo:v1", map[string]string{"APP_VERSION": "v1"})
	ft := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		DemoImage(ft, cli, "deployd-testenv-demo:v1", map[string]string{"APP_VERSION": "v9"})
	}()
	<-done
	if !ft.fatal {
		t.Fatal("DemoImage with different args for a built ref did not fail the test")
	}
}

// fatalRecorder records Fatalf instead of failing the real test; it must be
// called from its own goroutine since it ends it with runtime.Goexit.
type fatalRecorder struct {
	testing.TB
	fatal bool
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.fatal = true
	runtime.Goexit()
}

func TestRemoveServiceContainers_RemovesRunningAndStoppedAndToleratesNone(t *testing.T) {
	cli := Docker(t)
	image := DemoImage(t, cli, "deployd-testenv-demo:v1", map[string]string{"APP_VERSION": "v1"})
	svc := UniqueService(t)
	t.Cleanup(func() { RemoveServiceContainers(t, cli, svc) })

	runDemo(t, cli, image, svc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := cli.ContainerCreate(ctx, &container.Config{Image: image, Labels: map[string]string{serviceLabel: svc}}, nil, nil, nil, svc+"-green-1")
	if err != nil {
		t.Fatalf("create stopped container: %v", err)
	}
	if got := serviceContainers(t, cli, svc); got != 2 {
		t.Fatalf("containers of %s = %d, want 2", svc, got)
	}
	RemoveServiceContainers(t, cli, svc)
	if got := serviceContainers(t, cli, svc); got != 0 {
		t.Fatalf("containers of %s after removal = %d, want 0", svc, got)
	}
	RemoveServiceContainers(t, cli, svc) // nothing left: no error
}

func TestStartNginx_PlaceholderAnswers502(t *testing.T) {
	ng := StartNginx(t, "web", "api")
	for _, url := range []string{ng.URL + "/", ng.URL + "/api/"} {
		status, body, err := Get(context.Background(), url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		if status != http.StatusBadGateway {
			t.Fatalf("GET %s = %d %q, want 502 from the placeholder", url, status, body)
		}
	}
	// 502 for the documented reason, not because nginx is broken.
	if log := ng.ErrorLogTail(); !strings.Contains(log, "no live upstreams") {
		t.Fatalf("error log does not explain the 502 with \"no live upstreams\":\n%s", log)
	}
}

func TestStartNginx_ReloadRoutesToTheDemoContainer(t *testing.T) {
	cli := Docker(t)
	image := DemoImage(t, cli, "deployd-testenv-demo:v1", map[string]string{"APP_VERSION": "v1"})
	svc := UniqueService(t)
	t.Cleanup(func() { RemoveServiceContainers(t, cli, svc) })
	addr := runDemo(t, cli, image, svc)
	waitStatus(t, "http://"+addr+"/health", http.StatusOK)

	ng := StartNginx(t, svc)
	waitStatus(t, ng.URL+"/", http.StatusBadGateway)

	conf := fmt.Sprintf("upstream %s { server %s; keepalive 4; }\n", svc, addr)
	if err := os.WriteFile(filepath.Join(ng.UpstreamDir, svc+".conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ng.Reload(ctx); err != nil {
		t.Fatalf("reload: %v", err)
	}
	body := waitStatus(t, ng.URL+"/", http.StatusOK)
	if !strings.Contains(body, `"version":"v1"`) {
		t.Fatalf("GET / through nginx = %q, want the demo app's v1 answer", body)
	}
}

func TestStartNginx_ConfigPassesNginxTest(t *testing.T) {
	ng := StartNginx(t, "web")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, ng.TestCommand[0], ng.TestCommand[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", ng.TestCommand, err, out)
	}
}

func TestUniqueService_IsValidAndFresh(t *testing.T) {
	re := regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
	seen := map[string]bool{}
	for range 100 {
		s := UniqueService(t)
		if !re.MatchString(s) {
			t.Fatalf("UniqueService = %q, not a valid service name", s)
		}
		if seen[s] {
			t.Fatalf("UniqueService returned %q twice", s)
		}
		seen[s] = true
	}
}

func TestFreePort_CanBeListenedOn(t *testing.T) {
	port := FreePort(t)
	if port <= 0 || port > 65535 {
		t.Fatalf("FreePort = %d, want a TCP port", port)
	}
}
