package main

// The deployd-swarm strategy: the same K deploys and K rollbacks as
// deployd-switch, with the service on runtime: swarm, on the local engine
// made a single-node swarm. How it is built, and why:
//
//   - On swarm, deployd probes the app's tasks on their overlay addresses
//     and switchd proxies to them, so deployd (which spawns switchd) runs
//     in a container attached to the service's attachable overlay, with
//     the Docker socket mounted and the socket's group added, as the
//     swarm tests run it. Its image is the FROM scratch one the swarm
//     tests build (lab.BuildDeploydImage), from a static build.
//   - The bench's own host nginx and load generator stay, so that only the
//     path behind nginx differs from the deployd-switch row: host nginx →
//     switchd (in deployd's container) → the swarm task on the overlay,
//     against host nginx → switchd (host process) → the container's
//     published port. nginx reaches switchd on a unix socket in a host
//     directory bind-mounted into deployd's container (switchd makes its
//     sockets 0666, and the directory is 0777 for the image's user).
//   - deployd runs with nginx.mode static: it writes no upstream file and
//     reloads nothing, so it needs no access to the host nginx; the bench
//     writes this service's upstream (the shape deployd renders) once.
//   - The swarm runtime runs every image pinned by its registry digest
//     (pkg/swarmx PinImage; a reference without a registry is refused),
//     so the demo images are pushed to a private registry on loopback
//     (lab.StartRegistry), as in the swarm tests. The engine pulls from it
//     on the host's loopback, which is why deployd, in its container, can
//     pin through the Engine API without reaching the registry itself.
//   - The swarm is joined under the lock the swarm tests hold
//     (lab.JoinSwarm): the bench inits it only when the engine is in none,
//     and leaves it at the end only if it is the bench's or the tests' own
//     and no other process holds the lock. It is joined before any of the
//     bench's containers start and left after they are gone, because a
//     swarm init or leave disturbs running containers' networking.
//   - Its footprint is the daemon and switchd inside the container, read in
//     the host's /proc: the daemon's host pid from ContainerInspect, switchd
//     as the daemon's child.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"

	"github.com/deployd/deployd/internal/config"
	"github.com/deployd/deployd/internal/lab"
	"github.com/deployd/deployd/pkg/controller"
)

const (
	// swarmDeploydImage is the local tag of the deployd image the swarm
	// strategy runs.
	swarmDeploydImage = "deployd-bench-deployd:swarm"
	// Paths and port inside deployd's container.
	swarmAPIPort     = "7400/tcp"
	swarmUpstreamDir = "/etc/nginx/deployd"
	swarmDataDir     = "/var/lib/deployd"
	swarmConfigPath  = "/etc/deployd/deployd.yml"
	// Joining waits while a test holds the swarm alone (draining its node).
	swarmJoinLimit    = 10 * time.Minute
	swarmStartLimit   = time.Minute
	swarmPushLimit    = 2 * time.Minute
	swarmHealthPoll   = 100 * time.Millisecond
	swarmLabel        = "deployd.bench"
	swarmNetPrefix    = "deployd-bench-"
	swarmLogTailLines = "80"
)

// swarmSetup is what the swarm strategy set up, in the order teardown
// undoes it backwards; each field is set as soon as its thing exists.
type swarmSetup struct {
	lease   *lab.SwarmLease
	reg     *lab.Registry
	refs    []string // local image references the pushes made
	repo    string   // the demo app's repository in the registry
	netName string
	netID   string
	volume  string
	hostDir string // bind-mounted as deployd's upstream dir: switchd's socket
	d       *swarmDeployd
}

// joinSwarm makes the engine a swarm manager under the shared lease.
func (w *world) joinSwarm(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, swarmJoinLimit)
	defer cancel()
	lease, err := lab.JoinSwarm(ctx, w.cli, false)
	if errors.Is(err, lab.ErrSwarmUnavailable) {
		return fmt.Errorf("%w: %w", errUnavailable, err)
	}
	if err != nil {
		return err
	}
	w.sm = &swarmSetup{lease: lease}
	return nil
}

// startRegistry starts the registry the swarm strategy's images are
// pushed to.
func (w *world) startRegistry(ctx context.Context) error {
	dir := filepath.Join(w.tmp, "registry")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("registry dir: %w", err)
	}
	reg, err := lab.StartRegistry(ctx, dir)
	if errors.Is(err, lab.ErrRegistryNotFound) {
		return fmt.Errorf("%w: %w", errUnavailable, err)
	}
	if err != nil {
		return err
	}
	w.sm.reg = reg
	return nil
}

// pushDemoImages pushes the demo app's tags to the registry as
// <registry>/<service>/demoapp:<tag>.
func (w *world) pushDemoImages(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, swarmPushLimit)
	defer cancel()
	w.sm.repo = w.sm.reg.Addr() + "/" + w.smSvc + "/demoapp"
	for tag := range imageArgs {
		_, _, refs, err := w.sm.reg.Push(ctx, w.cli, repository+":"+tag, w.smSvc+"/demoapp:"+tag)
		w.sm.refs = append(w.sm.refs, refs...)
		if err != nil {
			return err
		}
	}
	return nil
}

// startSwarmDeployd runs deployd in a container on a fresh overlay,
// deploys v1 through it and points the host nginx's upstream of the
// service at its switch.
func (w *world) startSwarmDeployd(ctx context.Context) error {
	sm := w.sm
	var err error
	cctx, cancel := context.WithTimeout(ctx, swarmStartLimit)
	defer cancel()
	if sm.netName, sm.netID, err = lab.CreateOverlay(cctx, w.cli, swarmNetPrefix, map[string]string{swarmLabel: w.smSvc}); err != nil {
		return err
	}
	v, err := w.cli.VolumeCreate(cctx, volume.CreateOptions{Name: w.smSvc + "-data", Labels: map[string]string{swarmLabel: w.smSvc}})
	if err != nil {
		return fmt.Errorf("create deployd's data volume: %w", err)
	}
	sm.volume = v.Name
	sm.hostDir = filepath.Join(w.tmp, "sm")
	if err := os.Mkdir(sm.hostDir, 0o755); err != nil {
		return fmt.Errorf("switch socket dir: %w", err)
	}
	// The image's user writes switchd's socket here; Mkdir's mode is
	// cut by the umask, Chmod's is not.
	if err := os.Chmod(sm.hostDir, 0o777); err != nil {
		return fmt.Errorf("switch socket dir: %w", err)
	}
	dir := filepath.Join(w.tmp, "deployd-swarm")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("deployd dir: %w", err)
	}
	cfgPath, err := writeSwarmConfig(dir, w.smSvc, sm.repo, sm.netName)
	if err != nil {
		return err
	}
	gid, err := dockerSocketGID(w.cli)
	if err != nil {
		return err
	}
	token, err := randomHex(24)
	if err != nil {
		return err
	}
	name := w.smSvc + "-deployd"
	created, err := w.cli.ContainerCreate(cctx,
		&container.Config{
			Image:        swarmDeploydImage,
			Cmd:          []string{"serve", "--config", swarmConfigPath},
			Env:          []string{tokenEnv + "=" + token},
			ExposedPorts: nat.PortSet{swarmAPIPort: {}},
			Labels:       map[string]string{swarmLabel: w.smSvc},
		},
		&container.HostConfig{
			Binds: []string{
				"/var/run/docker.sock:/var/run/docker.sock",
				cfgPath + ":" + swarmConfigPath + ":ro",
				sm.hostDir + ":" + swarmUpstreamDir,
				sm.volume + ":" + swarmDataDir,
			},
			GroupAdd:     []string{gid},
			PortBindings: nat.PortMap{swarmAPIPort: {{HostIP: "127.0.0.1"}}},
		},
		&network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{sm.netName: {}}},
		nil, name)
	if err != nil {
		return fmt.Errorf("create deployd's container: %w", err)
	}
	d := &swarmDeployd{apiClient: apiClient{svc: w.smSvc, token: token}, cli: w.cli, id: created.ID,
		hc: &http.Client{Transport: &http.Transport{Proxy: nil}}}
	d.do = d.httpDo
	sm.d = d
	if err := w.cli.ContainerStart(cctx, created.ID, container.StartOptions{}); err != nil {
		return fmt.Errorf("start deployd's container: %w", err)
	}
	if err := d.waitHealthy(cctx); err != nil {
		return fmt.Errorf("%w\ndeployd log:\n%s", err, d.failureLog(ctx))
	}
	id, err := d.deploy(ctx, "v1")
	if err == nil {
		_, err = d.waitSucceeded(ctx, id)
	}
	if err == nil {
		_, err = d.switchdPID(ctx, 0)
	}
	if err != nil {
		return fmt.Errorf("first deploy (runtime swarm): %w\ndeployd log:\n%s", err, d.failureLog(ctx))
	}
	// The upstream deployd renders in switch mode, with the socket's host
	// path.
	sock := filepath.Join(sm.hostDir, w.smSvc+".switch.sock")
	conf := fmt.Sprintf("upstream %s {\n    server unix:%s max_fails=0;\n    keepalive 16;\n}\n", w.smSvc, sock)
	if err := os.WriteFile(filepath.Join(w.ng.UpstreamDir, w.smSvc+".conf"), []byte(conf), 0o644); err != nil {
		return fmt.Errorf("write swarm upstream: %w", err)
	}
	if err := w.ng.Reload(ctx); err != nil {
		return err
	}
	return waitAnswers(ctx, w.serviceURL(w.smSvc), 5)
}

// writeSwarmConfig writes the containerised deployd's config: svc on
// runtime swarm on the overlay net, from repo; traffic.mode switch with
// nginx.mode static, the switch on a unix socket in the bind-mounted
// upstream dir. Health checks, drain and replicas are those of the other
// rows (lab.DaemonConfig).
func writeSwarmConfig(dir, svc, repo, net string) (string, error) {
	c := lab.DaemonConfig(swarmDataDir, &lab.Nginx{}, svc, repo,
		config.Token{Name: "bench", Role: config.RoleOperator, TokenEnv: tokenEnv})
	c.Listen = "0.0.0.0:" + strings.TrimSuffix(swarmAPIPort, "/tcp")
	c.Traffic.Mode = config.TrafficModeSwitch
	c.Nginx = config.Nginx{Mode: config.NginxModeStatic}
	s := c.Services[svc]
	s.Runtime = string(controller.RuntimeSwarm)
	s.Network = net
	s.Switch = config.ServiceSwitch{Listen: "unix:" + swarmUpstreamDir + "/" + svc + ".switch.sock"}
	c.Services[svc] = s
	path := filepath.Join(dir, "deployd.yml")
	if err := c.WriteFile(path); err != nil {
		return "", fmt.Errorf("deployd config: %w", err)
	}
	// WriteFile makes it 0600; the image's user must read it. It holds
	// no secret: the token comes from the environment.
	if err := os.Chmod(path, 0o644); err != nil {
		return "", fmt.Errorf("deployd config: %w", err)
	}
	return path, nil
}

// dockerSocketGID is the group of the engine's unix socket, which deployd's
// container joins to talk to the engine.
func dockerSocketGID(cli *client.Client) (string, error) {
	path := strings.TrimPrefix(cli.DaemonHost(), "unix://")
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return "", fmt.Errorf("docker socket %s (the swarm strategy needs a local engine): %w", path, err)
	}
	return strconv.FormatUint(uint64(st.Gid), 10), nil
}

// teardownSwarm removes what the swarm strategy made, last made first,
// each with its own deadline so that one failure does not skip the rest,
// and leaves the swarm if the bench was its last user.
func (w *world) teardownSwarm() {
	sm := w.sm
	step := func(what string, f func(ctx context.Context) error) {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if err := f(ctx); err != nil {
			w.log.WithError(err).Warn("cleanup: " + what)
		}
	}
	if sm.d != nil {
		// Its switchd goes with it; removing it first keeps it from
		// starting sets again.
		step("deployd's container", func(ctx context.Context) error {
			err := w.cli.ContainerRemove(ctx, sm.d.id, container.RemoveOptions{Force: true})
			if err != nil && !cerrdefs.IsNotFound(err) {
				return fmt.Errorf("remove deployd's container: %w", err)
			}
			return nil
		})
	}
	step("swarm services", func(ctx context.Context) error { return lab.RemoveSwarmServices(ctx, w.cli, w.smSvc) })
	if sm.netID != "" {
		step("overlay", func(ctx context.Context) error { return lab.RemoveNetwork(ctx, w.cli, sm.netID) })
	}
	if sm.volume != "" {
		step("volume", func(ctx context.Context) error {
			err := w.cli.VolumeRemove(ctx, sm.volume, true)
			if err != nil && !cerrdefs.IsNotFound(err) {
				return fmt.Errorf("remove volume %s: %w", sm.volume, err)
			}
			return nil
		})
	}
	if sm.reg != nil {
		step("registry", func(context.Context) error { return sm.reg.Stop() })
	}
	for _, ref := range sm.refs {
		step("image reference", func(ctx context.Context) error { return lab.RemoveImageRef(ctx, w.cli, ref) })
	}
	if err := sm.lease.Release(); err != nil {
		w.log.WithError(err).Warn("cleanup: release swarm lock")
	}
	step("leave swarm", func(ctx context.Context) error {
		left, err := lab.LeaveSwarmIfLast(ctx, w.cli)
		if left {
			w.log.Info("left the swarm: the bench was its last user")
		}
		return err
	})
}

// swarmDeployd is deployd in its container on the swarm's overlay.
type swarmDeployd struct {
	apiClient
	cli *client.Client
	id  string // the container's
	url string // the API's published address, set by waitHealthy
	hc  *http.Client
}

var _ deploydUnderTest = (*swarmDeployd)(nil)

func (d *swarmDeployd) client() *apiClient { return &d.apiClient }
func (d *swarmDeployd) hasSwitchd() bool   { return true }

// waitHealthy waits until the API's port is published and /healthz
// answers 200, or the container ends, or ctx ends.
func (d *swarmDeployd) waitHealthy(ctx context.Context) error {
	for {
		info, err := d.cli.ContainerInspect(ctx, d.id)
		if err != nil {
			return fmt.Errorf("inspect deployd's container: %w", err)
		}
		if info.State != nil && (info.State.Status == "exited" || info.State.Status == "dead") {
			return fmt.Errorf("deployd's container %s (exit code %d) at start", info.State.Status, info.State.ExitCode)
		}
		if d.url == "" && info.NetworkSettings != nil {
			if b := info.NetworkSettings.Ports[swarmAPIPort]; len(b) > 0 && b[0].HostPort != "" {
				d.url = "http://127.0.0.1:" + b[0].HostPort
			}
		}
		if d.url != "" {
			status, _, err := d.httpDo(ctx, http.MethodGet, "/healthz", nil, "")
			if err == nil && status == http.StatusOK {
				return nil
			}
		}
		if err := sleepCtx(ctx, swarmHealthPoll); err != nil {
			return fmt.Errorf("deployd's /healthz on %q did not answer 200: %w", d.url, err)
		}
	}
}

// httpDo sends one API request (lab.DoJSON).
func (d *swarmDeployd) httpDo(ctx context.Context, method, path string, body any, token string) (int, []byte, error) {
	return lab.DoJSON(ctx, d.hc, d.url, method, path, body, token)
}

// daemonPID is the host pid of the container's process, `deployd serve`.
func (d *swarmDeployd) daemonPID(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	info, err := d.cli.ContainerInspect(ctx, d.id)
	if err != nil {
		return 0, fmt.Errorf("inspect deployd's container: %w", err)
	}
	if info.State == nil || info.State.Pid == 0 {
		return 0, errors.New("deployd's container is not running")
	}
	return info.State.Pid, nil
}

// switchdPID waits until the daemon has a live switchd child other than
// not (0: any) and returns its host pid. The pid file switchd writes
// holds the container's pid namespace's number, so the host's /proc is
// searched for the daemon's child instead.
func (d *swarmDeployd) switchdPID(ctx context.Context, not int) (int, error) {
	deadline := time.Now().Add(switchdPIDLimit)
	for {
		parent, err := d.daemonPID(ctx)
		if err != nil {
			return 0, err
		}
		if pid := switchdChild(parent, not); pid != 0 {
			return pid, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no switchd child of deployd (host pid %d) other than pid %d after %s", parent, not, switchdPIDLimit)
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return 0, fmt.Errorf("wait for switchd: %w", err)
		}
	}
}

// switchdChild is the pid of a `deployd switchd` process whose parent is
// parent, other than not; 0 when there is none.
func switchdChild(parent, not int) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == not {
			continue
		}
		if ppid, err := parentPID(pid); err != nil || ppid != parent {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if args := strings.Split(string(b), "\x00"); err == nil && len(args) > 1 && args[1] == "switchd" {
			return pid
		}
	}
	return 0
}

// appTasks counts the service's running tasks, both colors.
func (d *swarmDeployd) appTasks(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	tasks, err := d.cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(
		filters.Arg("label", "deployd.service="+d.svc), filters.Arg("desired-state", "running"))})
	if err != nil {
		return 0, fmt.Errorf("list tasks of %s: %w", d.svc, err)
	}
	n := 0
	for _, t := range tasks {
		if t.Status.State == swarm.TaskStateRunning {
			n++
		}
	}
	return n, nil
}

// failureLog is the tail of the container's log, the token scrubbed.
func (d *swarmDeployd) failureLog(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), apiTimeout)
	defer cancel()
	rc, err := d.cli.ContainerLogs(ctx, d.id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: swarmLogTailLines})
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil {
		fmt.Fprintf(&out, "(%v)", err)
	}
	return strings.ReplaceAll(out.String(), d.token, "<token>")
}
