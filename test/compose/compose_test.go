package compose

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"gopkg.in/yaml.v3"

	"github.com/deployd/deployd/internal/testenv"
)

const (
	// Names fixed by docker-compose.yml and deploy/compose/deployd.yml.
	nginxContainer = "deployd-nginx"
	backendNetwork = "deployd-backend"
	service        = "web"
	// The demo app's repository, as deploy/compose/deployd.yml names it.
	appRepository = "deployd-demoapp"

	composeTimeout    = 5 * time.Minute
	deploymentTimeout = 2 * time.Minute
	requestTimeout    = 10 * time.Second
)

func TestComposeConfig_ShippedFileIsValidWithEnvExample(t *testing.T) {
	dc := requireTool(t, "docker-compose")
	root := repoRoot(t)
	// --env-file: the values of .env.example, not a developer's .env.
	run(t, root, nil, time.Minute, dc, "--env-file", filepath.Join(root, ".env.example"), "config", "-q")
	run(t, root, nil, time.Minute, dc, "--env-file", filepath.Join(root, ".env.example"),
		"-f", "docker-compose.yml", "-f", "deploy/compose/ci.override.yml", "config", "-q")
}

// stack is a running compose project and what the test needs to talk to it.
type stack struct {
	t          *testing.T
	httpURL    string // nginx's port 80, published on loopback
	httpsURL   string // nginx's port 443
	apiURL     string // where deployd's API answers through nginx: one of the two
	client     *http.Client
	adminToken string
	secret     string // the webhook secret
}

// TestComposeStack_DeploysThroughWebhookAndRollsBack is the compose stack
// as a user runs it, on locally built images: deployd drives the nginx
// container (nginx.mode docker) and the app's blue and green containers on
// the internal backend network; everything is reached through nginx.
func TestComposeStack_DeploysThroughWebhookAndRollsBack(t *testing.T) {
	if testing.Short() {
		t.Skip("builds three images and starts the compose stack; skipped with -short")
	}
	dc := requireTool(t, "docker-compose")
	requireTool(t, "docker")
	cli := testenv.Docker(t)
	requireAbsent(t, cli)

	buildDeploydImage(t)
	buildNginxImage(t)
	testenv.DemoImage(t, cli, appRepository+":v1", map[string]string{"APP_VERSION": "v1"})
	testenv.DemoImage(t, cli, appRepository+":v2", map[string]string{"APP_VERSION": "v2"})

	s := startStack(t, cli, dc)

	// Before the first deploy the upstream is deployd's placeholder.
	if status, _ := s.app(t); status != http.StatusBadGateway {
		t.Fatalf("app before the first deploy: status = %d, want %d (placeholder)", status, http.StatusBadGateway)
	}

	v1 := s.webhookDeploy(t, "v1")
	s.waitDeployment(t, v1, "succeeded")
	s.wantApp(t, "v1", "blue")

	v2 := s.webhookDeploy(t, "v2")
	s.waitDeployment(t, v2, "succeeded")
	s.wantApp(t, "v2", "green")

	status, body := s.api(t, http.MethodPost, "/api/v1/services/"+service+"/rollback", nil)
	if status != http.StatusAccepted {
		t.Fatalf("rollback: status = %d, want %d: %s", status, http.StatusAccepted, body)
	}
	var rb struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &rb); err != nil || rb.ID == "" {
		t.Fatalf("rollback answer %s: no deployment id (%v)", body, err)
	}
	s.waitDeployment(t, rb.ID, "succeeded")
	s.wantApp(t, "v1", "blue")
}

// requireAbsent fails when names the stack fixes are taken: the cleanup
// would otherwise tear down something that is not the test's.
func requireAbsent(t *testing.T, cli *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if _, err := cli.ContainerInspect(ctx, nginxContainer); err == nil {
		t.Fatalf("a container named %s exists already (another compose stack?); remove it first", nginxContainer)
	} else if !cerrdefs.IsNotFound(err) {
		t.Fatalf("inspect %s: %v", nginxContainer, err)
	}
	for _, n := range []string{backendNetwork, "deployd-frontend"} {
		if _, err := cli.NetworkInspect(ctx, n, network.InspectOptions{}); err == nil {
			t.Fatalf("network %s exists already (another compose stack?); remove it first", n)
		} else if !cerrdefs.IsNotFound(err) {
			t.Fatalf("inspect network %s: %v", n, err)
		}
	}
}

// startStack brings the stack up under a unique project name, with TLS
// on a throwaway certificate and nginx published on free loopback ports,
// and tears it down at cleanup.
func startStack(t *testing.T, cli *client.Client, dc string) *stack {
	t.Helper()
	root := repoRoot(t)
	certs := t.TempDir()
	selfSignedCert(t, certs)
	httpPort, httpsPort := testenv.FreePort(t), testenv.FreePort(t)
	s := &stack{
		t:          t,
		httpURL:    "http://127.0.0.1:" + strconv.Itoa(httpPort),
		httpsURL:   "https://127.0.0.1:" + strconv.Itoa(httpsPort),
		adminToken: randomHex(t),
		secret:     randomHex(t),
	}
	s.apiURL = s.httpsURL
	s.client = trustingClient(t, filepath.Join(certs, "fullchain.pem"))
	env := []string{
		"DEPLOYD_ADMIN_TOKEN=" + s.adminToken,
		"DEPLOYD_CI_TOKEN=" + randomHex(t),
		"DEPLOYD_WEBHOOK_SECRET=" + s.secret,
		"DOCKER_GID=" + dockerSocketGID(t),
		"NGINX_SITE=tls",
		"TLS_CERT_DIR=" + certs,
		"NGINX_HTTP_PUBLISH=127.0.0.1:" + strconv.Itoa(httpPort),
		"NGINX_HTTPS_PUBLISH=127.0.0.1:" + strconv.Itoa(httpsPort),
	}
	s.up(t, cli, dc, root, []string{"-f", "docker-compose.yml", "-f", "deploy/compose/ci.override.yml"}, env)
	return s
}

// up starts the compose project of files (relative to root) with env, under
// a project name of its own, and waits for deployd's API. Its cleanups
// take everything down again, the app containers deployd started included.
func (s *stack) up(t *testing.T, cli *client.Client, dc, root string, files, env []string) {
	t.Helper()
	args := append(slices.Clone(files), "-p", "deploydci"+randomHex(t)[:8])
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := runErr(root, env, time.Minute, dc, append(args, "logs", "--no-color", "--tail", "200")...)
			t.Logf("docker-compose logs:\n%s", s.redact(out))
		}
		if out, err := runErr(root, env, composeTimeout, dc, append(args, "down", "-v", "--remove-orphans", "--timeout", "10")...); err != nil {
			t.Errorf("docker-compose down: %v\n%s", err, s.redact(out))
		}
	})
	// Registered after down, so it runs before it: the app's containers
	// hold the backend network, which down removes.
	t.Cleanup(func() { removeAppContainers(t, cli) })
	// Registered last, so it runs first: a running deployd would start the
	// active color again as soon as its containers are removed.
	t.Cleanup(func() {
		if out, err := runErr(root, env, composeTimeout, dc, append(args, "stop", "--timeout", "10", "deployd")...); err != nil {
			t.Errorf("docker-compose stop deployd: %v\n%s", err, s.redact(out))
		}
	})
	out, err := runErr(root, env, composeTimeout, dc, append(args, "up", "-d", "--no-build")...)
	if err != nil {
		t.Fatalf("docker-compose up: %v\n%s", err, s.redact(out))
	}
	s.waitDeployd(t)
}

// removeAppContainers removes the containers deployd started for the
// stack's service: those labelled with it on the stack's backend network,
// so a test elsewhere with a service of the same name keeps its own.
func removeAppContainers(t *testing.T, cli *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", "deployd.service="+service), filters.Arg("network", backendNetwork))})
	if err != nil {
		t.Errorf("list the stack's app containers: %v", err)
		return
	}
	for _, c := range list {
		err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err) {
			t.Errorf("remove %s: %v", strings.Join(c.Names, ","), err)
		}
	}
}

// dockerSocketGID is the group owning the Docker socket, which the deployd
// container gets as a supplementary group (group_add).
func dockerSocketGID(t *testing.T) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat("/var/run/docker.sock", &st); err != nil {
		t.Fatalf("docker socket's group: %v", err)
	}
	return strconv.FormatUint(uint64(st.Gid), 10)
}

func randomHex(t *testing.T) string {
	t.Helper()
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random: %v", err)
	}
	return hex.EncodeToString(b[:])
}

// trustingClient trusts only the test's certificate and never follows
// redirects, so the HTTP-to-HTTPS redirect can be checked.
func trustingClient(t *testing.T, certFile string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatalf("read certificate: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", certFile)
	}
	return &http.Client{
		Timeout: requestTimeout,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			DisableKeepAlives: true, // each check sees what nginx serves now
			Proxy:             nil,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// redact hides the stack's secrets from output shown on failure.
func (s *stack) redact(out string) string {
	return strings.NewReplacer(s.adminToken, "<admin token>", s.secret, "<webhook secret>").Replace(out)
}

// do sends a request through nginx to the given virtual host.
func (s *stack) do(t *testing.T, method, url, host string, body []byte, header map[string]string) (int, http.Header, []byte, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("request %s: %v", url, err)
	}
	req.Host = host
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, resp.Header, b, err
}

// api calls deployd's API through nginx with the admin token.
func (s *stack) api(t *testing.T, method, path string, body []byte) (int, []byte) {
	t.Helper()
	h := map[string]string{"Authorization": "Bearer " + s.adminToken}
	if body != nil {
		h["Content-Type"] = "application/json"
	}
	status, _, b, err := s.do(t, method, s.apiURL+path, "deployd.localhost", body, h)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return status, b
}

// waitDeployd waits until deployd answers through nginx (nginx starts only
// once deployd is healthy, but may need a moment to listen).
func (s *stack) waitDeployd(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		status, _, _, err := s.do(t, http.MethodGet, s.apiURL+"/healthz", "deployd.localhost", nil, nil)
		if err == nil && status == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("deployd /healthz through nginx: status %d, error %v after a minute", status, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// webhookDeploy posts a deploy of tag signed the way GitHub signs, and
// returns the deployment's id.
func (s *stack) webhookDeploy(t *testing.T, tag string) string {
	t.Helper()
	body, err := json.Marshal(map[string]string{
		"service": service, "image": tag, "commit": strings.Repeat("ab", 20),
		"actor": "ci", "ref": "refs/heads/main",
	})
	if err != nil {
		t.Fatalf("encode webhook body: %v", err)
	}
	// Signed as "<timestamp>.<body>": deployd refuses unstamped deliveries.
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, []byte(s.secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	status, _, b, err := s.do(t, http.MethodPost, s.apiURL+"/hooks/deploy", "deployd.localhost", body, map[string]string{
		"Content-Type":        "application/json",
		"X-Deployd-Timestamp": ts,
		"X-Hub-Signature-256": "sha256=" + hex.EncodeToString(mac.Sum(nil)),
		"X-GitHub-Delivery":   randomHex(t),
	})
	if err != nil {
		t.Fatalf("webhook deploy %s: %v", tag, err)
	}
	if status != http.StatusAccepted {
		t.Fatalf("webhook deploy %s: status = %d, want %d: %s", tag, status, http.StatusAccepted, b)
	}
	var resp struct {
		Deployment struct {
			ID string `json:"id"`
		} `json:"deployment"`
	}
	if err := json.Unmarshal(b, &resp); err != nil || resp.Deployment.ID == "" {
		t.Fatalf("webhook answer %s: no deployment id (%v)", b, err)
	}
	return resp.Deployment.ID
}

// waitDeployment polls a deployment until it ends and checks its status.
func (s *stack) waitDeployment(t *testing.T, id, want string) {
	t.Helper()
	deadline := time.Now().Add(deploymentTimeout)
	for {
		status, b := s.api(t, http.MethodGet, "/api/v1/deployments/"+id, nil)
		if status != http.StatusOK {
			t.Fatalf("deployment %s: status = %d, want %d: %s", id, status, http.StatusOK, b)
		}
		var d struct {
			Status string `json:"status"`
			Error  string `json:"error"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("deployment %s: %v: %s", id, err, b)
		}
		switch d.Status {
		case "queued", "running":
		case want:
			return
		default:
			t.Fatalf("deployment %s ended %s (error %q), want %s:\n%s", id, d.Status, d.Error, want, b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("deployment %s still %s after %s", id, d.Status, deploymentTimeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// app gets the app's root through nginx over HTTPS.
func (s *stack) app(t *testing.T) (int, []byte) {
	t.Helper()
	status, _, b, err := s.do(t, http.MethodGet, s.httpsURL+"/", "app.localhost", nil, nil)
	if err != nil {
		t.Fatalf("GET the app through nginx: %v", err)
	}
	return status, b
}

// wantApp checks that every answer through nginx comes from version and
// color (a few requests, so both replicas are asked), with the site's
// headers, and that plain HTTP redirects to HTTPS.
func (s *stack) wantApp(t *testing.T, version, color string) {
	t.Helper()
	for i := range 4 {
		status, h, b, err := s.do(t, http.MethodGet, s.httpsURL+"/", "app.localhost", nil, nil)
		if err != nil {
			t.Fatalf("GET the app through nginx (request %d): %v", i, err)
		}
		if status != http.StatusOK {
			t.Fatalf("app: status = %d, want %d: %s", status, http.StatusOK, b)
		}
		var got struct{ Version, Color string }
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("app answer %s: %v", b, err)
		}
		if got.Version != version || got.Color != color {
			t.Fatalf("app answered %s on %s, want %s on %s", got.Version, got.Color, version, color)
		}
		for _, name := range []string{"Strict-Transport-Security", "X-Frame-Options", "Content-Security-Policy"} {
			if h.Get(name) == "" {
				t.Errorf("app response through nginx lacks %s", name)
			}
		}
	}
	status, h, _, err := s.do(t, http.MethodGet, s.httpURL+"/x", "app.localhost", nil, nil)
	if err != nil {
		t.Fatalf("GET over plain HTTP: %v", err)
	}
	if want := "https://app.localhost/x"; status != http.StatusMovedPermanently || h.Get("Location") != want {
		t.Fatalf("plain HTTP: status %d, Location %q; want %d to %q", status, h.Get("Location"), http.StatusMovedPermanently, want)
	}
}

// deployd holds the Docker socket: whatever breaks into it must not also
// gain capabilities or setuid privileges inside its container.
func TestComposeFile_DeploydHasNoPrivileges(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Services map[string]struct {
			SecurityOpt []string `yaml:"security_opt"`
			CapDrop     []string `yaml:"cap_drop"`
			CapAdd      []string `yaml:"cap_add"`
			ReadOnly    bool     `yaml:"read_only"`
			Privileged  bool     `yaml:"privileged"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("parse docker-compose.yml: %v", err)
	}
	d, ok := f.Services["deployd"]
	if !ok {
		t.Fatal("docker-compose.yml has no deployd service")
	}
	if !slices.Contains(d.SecurityOpt, "no-new-privileges:true") {
		t.Errorf("deployd security_opt = %q, want no-new-privileges:true", d.SecurityOpt)
	}
	if !slices.Equal(d.CapDrop, []string{"ALL"}) || len(d.CapAdd) != 0 {
		t.Errorf("deployd cap_drop = %q, cap_add = %q; want [ALL] and none", d.CapDrop, d.CapAdd)
	}
	if !d.ReadOnly || d.Privileged {
		t.Errorf("deployd read_only = %v, privileged = %v; want true, false", d.ReadOnly, d.Privileged)
	}
}
