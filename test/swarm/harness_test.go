// Package swarm runs deployd's blue-green deploys on a real single-node
// Docker Swarm: the local engine made a swarm manager for the tests (left
// again by the last test process out, see testenv.Swarm), images pushed to
// a private registry on loopback and pinned by digest, deployd and nginx in
// containers attached to the app's overlay network, as on a manager node.
package swarm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.SwarmMain(m)) }

const (
	apiTimeout        = 10 * time.Second
	deploymentTimeout = 2 * time.Minute
	// The stack's deployd runs its watchdog and reconciler on these
	// intervals (writeConfig).
	watchInterval     = time.Second
	reconcileInterval = 5 * time.Second
)

// stack is deployd, its switch and nginx on one swarm manager, driving
// service svc on the overlay network net.
type stack struct {
	t        *testing.T
	cli      *client.Client
	svc      string
	net      string
	repo     string // the service's repository in the test registry
	reg      *testenv.Registry
	digests  map[string]string
	token    string
	apiURL   string // deployd's API, published on loopback
	appURL   string // nginx, published on loopback
	deployd  string // deployd's container
	cfgPath  string
	http     *http.Client
	uniqueID string
	opts     stackOptions
	// services are the configured services' names with
	// stackOptions.services; nil otherwise (the one service is svc).
	services []string
	// switchdToken is the edge switches' control token, with
	// stackOptions.edges; never logged.
	switchdToken string
	edgeService  string
}

// stackOptions vary the stack newStackWith starts.
type stackOptions struct {
	// edges, when above 0, runs the switch as that many replicas of a
	// Swarm service of its own on the overlay (traffic.switchd.edges):
	// nginx reaches them through the service's virtual IP and deployd
	// drives each over its TCP control API; deployd runs none.
	edges int
	// alone holds the test swarm exclusively (testenv.SwarmAlone), for a
	// test that disturbs every task on it.
	alone bool
	// services, when above 0, configures that many services instead of
	// the one named stack.svc: stack.services, all of the same demo
	// image, each with the harness's health settings. nginx routes
	// /<service>/ to each (stack.serviceURL).
	services int
	// replicas per service; 0 is the harness's 2.
	replicas int
	// startTimeout is every service's health.start_timeout, which bounds
	// its start step too; "" is the harness's 20s.
	startTimeout string
}

// newStack starts the registry, pushes the demo app's versions, and runs
// deployd (spawning its switch) and nginx in containers on a fresh overlay.
// extra is appended to the service's config block.
func newStack(t *testing.T, extra string) *stack {
	t.Helper()
	return newStackWith(t, extra, stackOptions{})
}

// newStackWith is newStack with opts.
func newStackWith(t *testing.T, extra string, opts stackOptions) *stack {
	t.Helper()
	join := testenv.Swarm
	if opts.alone {
		join = testenv.SwarmAlone
	}
	cli := join(t)
	s := &stack{t: t, cli: cli, svc: testenv.UniqueService(t), digests: map[string]string{}, token: randomHex(t),
		http: &http.Client{Timeout: apiTimeout, Transport: &http.Transport{Proxy: nil}}, opts: opts}
	s.uniqueID = s.svc
	for i := range opts.services {
		s.services = append(s.services, fmt.Sprintf("%s-%03d", s.svc, i))
	}
	s.net = testenv.OverlayNetwork(t, cli)
	// Runs after deployd's container is gone (cleanups run last first), so
	// nothing starts the sets again; before the overlay, which they hold.
	t.Cleanup(func() {
		testenv.RemoveSwarmServices(t, cli, s.svc)
		// At once: each waits for its tasks to end, which Swarm does in
		// parallel.
		var wg sync.WaitGroup
		for _, name := range s.services {
			wg.Go(func() { testenv.RemoveSwarmServices(t, cli, name) })
		}
		wg.Wait()
	})

	reg := testenv.StartRegistry(t)
	s.reg = reg
	s.repo = reg.Addr() + "/" + s.svc + "/demoapp"
	for tag, args := range map[string]map[string]string{
		"v1":        {"APP_VERSION": "v1"},
		"v2":        {"APP_VERSION": "v2"},
		"v3-broken": {"APP_VERSION": "v3", "HEALTH_MODE": "failing"},
	} {
		local := testenv.DemoImage(t, cli, "deployd-swarm-demo:"+tag, args)
		_, s.digests[tag] = reg.Push(t, cli, local, s.svc+"/demoapp:"+tag)
	}
	deploydImage := testenv.DeploydImage(t)
	nginxImage := testenv.NginxImage(t)

	dir := t.TempDir()
	upstreams := s.volume("upstreams")
	data := s.volume("data")
	s.cfgPath = filepath.Join(dir, "deployd.yml")
	env := []string{"DEPLOYD_TOKEN=" + s.token}
	if opts.edges > 0 {
		s.switchdToken, s.edgeService = randomHex(t), s.svc+"-edge"
		env = append(env, edgeTokenEnv+"="+s.switchdToken)
	}
	s.writeConfig(extra)
	if opts.edges > 0 {
		// Before deployd, which waits for them, and nginx, which
		// resolves their service's name.
		s.startEdges(reg, deploydImage, opts.edges)
	}
	gid := dockerGID(t)

	s.deployd = s.svc + "-deployd"
	s.run(container.Config{
		Image: deploydImage, Cmd: []string{"serve", "--config", "/etc/deployd/deployd.yml"},
		Env:          env,
		ExposedPorts: nat.PortSet{"7400/tcp": {}},
		Labels:       map[string]string{"deployd.test": s.svc},
	}, container.HostConfig{
		Binds: []string{"/var/run/docker.sock:/var/run/docker.sock", s.cfgPath + ":/etc/deployd/deployd.yml:ro",
			upstreams + ":/etc/nginx/deployd", data + ":/var/lib/deployd"},
		GroupAdd:      []string{gid},
		PortBindings:  nat.PortMap{"7400/tcp": {{HostIP: "127.0.0.1"}}},
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
	}, s.deployd)
	s.apiURL = "http://" + s.published(s.deployd, "7400/tcp")
	s.waitAPI()

	site := filepath.Join(dir, "nginx.conf")
	locations := "    location / {\n      proxy_pass http://" + s.svc + ";\n" +
		"      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }\n"
	if len(s.services) > 0 {
		locations = ""
		for _, name := range s.services {
			// The trailing slashes strip the prefix: the app sees /.
			locations += "    location /" + name + "/ {\n      proxy_pass http://" + name + "/;\n" +
				"      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }\n"
		}
	}
	writeFile(t, site, "user nginx;\nworker_processes 2;\npid /run/nginx.pid;\nerror_log /dev/stderr warn;\nevents {}\n"+
		"http {\n  access_log off;\n  include /etc/nginx/deployd/*.conf;\n"+
		"  server {\n    listen 80;\n"+locations+"  }\n}\n", 0o644)
	s.run(container.Config{
		Image: nginxImage, ExposedPorts: nat.PortSet{"80/tcp": {}}, Labels: map[string]string{"deployd.test": s.svc},
	}, container.HostConfig{
		Binds:        []string{site + ":/etc/nginx/nginx.conf:ro", upstreams + ":/etc/nginx/deployd:ro"},
		PortBindings: nat.PortMap{"80/tcp": {{HostIP: "127.0.0.1"}}},
	}, s.svc+"-nginx")
	s.appURL = "http://" + s.published(s.svc+"-nginx", "80/tcp")
	return s
}

// writeConfig writes deployd's config: the service on runtime swarm,
// nginx reloaded through the Docker API, switchd spawned by deployd in its
// container and reached by nginx on a unix socket in the shared volume.
func (s *stack) writeConfig(extra string) {
	traffic := "traffic:\n  mode: switch\n"
	if s.opts.edges > 0 {
		traffic, extra = s.edgesConfig(), s.edgesSwitchConfig()+extra
	}
	replicas := s.opts.replicas
	if replicas == 0 {
		replicas = 2
	}
	startTimeout := s.opts.startTimeout
	if startTimeout == "" {
		startTimeout = "20s"
	}
	names := s.services
	if names == nil {
		names = []string{s.svc}
	}
	var services strings.Builder
	for _, name := range names {
		fmt.Fprintf(&services, `  %[1]s:
    image: %[2]s
    runtime: swarm
    network: %[3]s
    replicas: %[5]d
    port: 8000
    pull: always
    health: {path: /health, interval: 250ms, timeout: 2s, healthy_threshold: 2, start_timeout: %[6]s}
    drain: 1s
%[4]s`, name, s.repo, s.net, extra, replicas, startTimeout)
	}
	writeFile(s.t, s.cfgPath, fmt.Sprintf(`listen: 0.0.0.0:7400
data_dir: /var/lib/deployd
auth:
  tokens:
    - {name: e2e, role: operator, token_env: DEPLOYD_TOKEN}
%[2]snginx:
  mode: docker
  container: %[1]s-nginx
  upstream_dir: /etc/nginx/deployd
watch: {interval: %[3]s, unhealthy_threshold: 3}
reconcile: {interval: %[4]s}
services:
%[5]s`, s.svc, traffic, watchInterval, reconcileInterval, services.String()), 0o644)
}

func (s *stack) volume(name string) string {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	v, err := s.cli.VolumeCreate(ctx, volume.CreateOptions{Name: s.svc + "-" + name, Labels: map[string]string{"deployd.test": s.svc}})
	if err != nil {
		t.Fatalf("create volume %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.cli.VolumeRemove(ctx, v.Name, true); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove volume %s: %v", v.Name, err)
		}
	})
	return v.Name
}

// run starts a container on the overlay and removes it at cleanup (before
// the overlay and the volumes, registered earlier).
func (s *stack) run(cfg container.Config, host container.HostConfig, name string) {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	created, err := s.cli.ContainerCreate(ctx, &cfg, &host, &network.NetworkingConfig{
		EndpointsConfig: map[string]*network.EndpointSettings{s.net: {}}}, nil, name)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			s.logs(name)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.cli.ContainerRemove(ctx, created.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove %s: %v", name, err)
		}
	})
	if err := s.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
}

// logs prints a container's log tail into the test log.
func (s *stack) logs(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	rc, err := s.cli.ContainerLogs(ctx, name, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: "80"})
	if err != nil {
		s.t.Logf("logs of %s: %v", name, err)
		return
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	s.t.Logf("%s log (tail):\n%s", name, s.redact(string(b)))
}

// redact hides the stack's tokens in text bound for the test log.
func (s *stack) redact(text string) string {
	text = strings.ReplaceAll(text, s.token, "<token>")
	if s.switchdToken != "" {
		text = strings.ReplaceAll(text, s.switchdToken, "<switchd token>")
	}
	return text
}

// published is the loopback address a container's port is published on.
func (s *stack) published(name, port string) string {
	t := s.t
	t.Helper()
	deadline := time.Now().Add(apiTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
		info, err := s.cli.ContainerInspect(ctx, name)
		cancel()
		if err == nil && info.NetworkSettings != nil {
			if b := info.NetworkSettings.Ports[nat.Port(port)]; len(b) > 0 && b[0].HostPort != "" {
				return "127.0.0.1:" + b[0].HostPort
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: port %s not published (%v)", name, port, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *stack) waitAPI() {
	t := s.t
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := s.http.Get(s.apiURL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			s.logs(s.deployd)
			t.Fatalf("deployd's /healthz did not answer 200 within a minute: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// request calls deployd's API with the operator token.
func (s *stack) request(method, path string, body any) (int, []byte) {
	t := s.t
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.apiURL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// deploy asks for a deploy of tag (or a rollback with tag "") and waits
// for its end.
func (s *stack) deploy(tag string) api.Deployment {
	t := s.t
	t.Helper()
	path, body := "/api/v1/services/"+s.svc+"/deployments", any(map[string]string{"image": tag})
	if tag == "" {
		path, body = "/api/v1/services/"+s.svc+"/rollback", nil
	}
	status, b := s.request(http.MethodPost, path, body)
	if status != http.StatusAccepted {
		t.Fatalf("POST %s = %d %s, want 202", path, status, b)
	}
	var d api.Deployment
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return s.wait(d.ID)
}

func (s *stack) wait(id string) api.Deployment {
	t := s.t
	t.Helper()
	deadline := time.Now().Add(deploymentTimeout)
	for {
		status, b := s.request(http.MethodGet, "/api/v1/deployments/"+id, nil)
		var d api.Deployment
		if status == http.StatusOK {
			if err := json.Unmarshal(b, &d); err != nil {
				t.Fatal(err)
			}
			if d.FinishedAt != nil {
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("deployment %s not finished after %s: %d %s", id, deploymentTimeout, status, b)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (s *stack) service() api.Service {
	t := s.t
	t.Helper()
	status, b := s.request(http.MethodGet, "/api/v1/services/"+s.svc, nil)
	if status != http.StatusOK {
		t.Fatalf("GET service = %d %s", status, b)
	}
	var v api.Service
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// appVersion asks the app through nginx which version and color answer.
func (s *stack) appVersion() (version, color string, err error) {
	return s.appVersionAt(s.appURL + "/")
}

// appVersionAt asks the app at URL u which version and color answer.
func (s *stack) appVersionAt(u string) (version, color string, err error) {
	resp, err := s.http.Get(u)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("GET %s = %d %s", u, resp.StatusCode, b)
	}
	var got struct{ Version, Color string }
	if err := json.Unmarshal(b, &got); err != nil {
		return "", "", fmt.Errorf("GET %s = %s: %w", u, b, err)
	}
	return got.Version, got.Color, nil
}

// assertServes checks a few answers through nginx, so both replicas are
// likely asked.
func (s *stack) assertServes(version, color string) {
	s.t.Helper()
	for range 4 {
		v, c, err := s.appVersion()
		if err != nil || v != version || c != color {
			s.t.Fatalf("app through nginx = %s on %s (%v), want %s on %s", v, c, err, version, color)
		}
	}
}

// load sends requests through nginx from n clients until stop is called,
// and returns how many were sent and how many failed, with the first
// failures.
func (s *stack) load(n int) (stop func() (sent, failed int64, first []string)) {
	var sent, failed atomic.Int64
	var mu sync.Mutex
	var firsts []string
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: apiTimeout, Transport: &http.Transport{Proxy: nil}}
			for {
				select {
				case <-done:
					return
				default:
				}
				sent.Add(1)
				resp, err := c.Post(s.appURL+"/", "application/json", strings.NewReader(`{"n":1}`))
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode >= 500 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if len(firsts) < 5 {
						firsts = append(firsts, err.Error())
					}
					mu.Unlock()
				}
			}
		}()
	}
	return func() (int64, int64, []string) {
		close(done)
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return sent.Load(), failed.Load(), firsts
	}
}

func dockerGID(t *testing.T) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat("/var/run/docker.sock", &st); err != nil {
		t.Fatalf("docker socket: %v", err)
	}
	return strconv.FormatUint(uint64(st.Gid), 10)
}

func writeFile(t *testing.T, path, body string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
}

func randomHex(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/dev/urandom")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 24)
	if _, err := io.ReadFull(f, b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}
