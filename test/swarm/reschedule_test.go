package swarm

import (
	"context"
	"io"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-connections/nat"

	"github.com/deployd/deployd/internal/testenv"
)

// loseDeployd removes deployd's container and its data volume, as when
// the manager it ran on is gone with its disk; the switch it spawned goes
// with it. The sets keep running: Swarm runs them, not deployd.
func (s *stack) loseDeployd() {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.cli.ContainerRemove(ctx, s.deployd, container.RemoveOptions{Force: true}); err != nil {
		t.Fatalf("remove deployd: %v", err)
	}
	if err := s.cli.VolumeRemove(ctx, s.svc+"-data", true); err != nil && !cerrdefs.IsNotFound(err) {
		t.Fatalf("remove deployd's data volume: %v", err)
	}
}

// rescheduleDeployd starts deployd again, as Swarm would on another
// manager: the same image and config, a new empty data volume. The
// container is the one newStack runs, but for the volume; nginx's upstream
// volume stays, as nginx does.
func (s *stack) rescheduleDeployd(volume string) {
	t := s.t
	t.Helper()
	data := s.volume(volume)
	s.run(container.Config{
		Image: testenv.DeploydImageRef, Cmd: []string{"serve", "--config", "/etc/deployd/deployd.yml"},
		Env:          []string{"DEPLOYD_TOKEN=" + s.token},
		ExposedPorts: nat.PortSet{"7400/tcp": {}},
		Labels:       map[string]string{"deployd.test": s.svc},
	}, container.HostConfig{
		Binds: []string{"/var/run/docker.sock:/var/run/docker.sock", s.cfgPath + ":/etc/deployd/deployd.yml:ro",
			s.svc + "-upstreams:/etc/nginx/deployd", data + ":/var/lib/deployd"},
		GroupAdd:      []string{dockerGID(t)},
		PortBindings:  nat.PortMap{"7400/tcp": {{HostIP: "127.0.0.1"}}},
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
	}, s.deployd)
	s.apiURL = "http://" + s.published(s.deployd, "7400/tcp")
	s.waitAPI()
}

// deploydLogs returns deployd's whole log.
func (s *stack) deploydLogs() string {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	rc, err := s.cli.ContainerLogs(ctx, s.deployd, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatalf("logs of deployd: %v", err)
	}
	defer rc.Close()
	var b strings.Builder
	if _, err := io.Copy(&b, rc); err != nil {
		t.Fatalf("read deployd's log: %v", err)
	}
	return b.String()
}
