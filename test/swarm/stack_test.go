package swarm

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/internal/testenv"
	"github.com/deployd/deployd/pkg/controller"
)

// stackName is the name deploy/swarm/deployd.yml expects (its services and
// networks are deployd_<name>).
const stackName = "deployd"

// The shipped stack, deployed with docker stack deploy: deployd on the
// manager as a Swarm service with its secrets and config, the edge
// switches and nginx as global services on the node labelled an edge.
// The stack file and nginx.conf are used as shipped; deployd.yml as
// shipped but for the app (its image in the test registry, the demo
// app's migrate, placement on this lone manager). One override: this
// kernel has no IPVS, so Swarm's virtual IPs do not answer and the
// services are reached by DNS round robin instead. Then deployd's task is
// killed: Swarm starts another, which carries on.
func TestSwarmStack_ShippedStackDeploysAndDeploydIsRescheduled(t *testing.T) {
	started := time.Now()
	cli := testenv.SwarmAlone(t) // fixed names: the stack's and its secrets'
	stackCLI := stackTool(t)
	root := repoRootDir(t)
	dir := t.TempDir()
	for _, f := range []string{"stack.yml", "nginx.conf"} {
		b, err := os.ReadFile(filepath.Join(root, "deploy/swarm", f))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, f), string(b), 0o644)
	}
	writeFile(t, filepath.Join(dir, "override.yml"), "version: \"3.8\"\nservices:\n"+
		"  deployd: {deploy: {endpoint_mode: dnsrr}}\n  edge: {deploy: {endpoint_mode: dnsrr}}\n", 0o644)

	reg := testenv.StartRegistry(t)
	repo := reg.Addr() + "/team/web"
	for _, v := range []string{"v1", "v2"} {
		local := testenv.DemoImage(t, cli, "deployd-swarm-demo:"+v, map[string]string{"APP_VERSION": v})
		reg.Push(t, cli, local, "team/web:"+v)
	}
	shipped, err := os.ReadFile(filepath.Join(root, "deploy/swarm/deployd.yml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer(
		"registry.example.com/team/web", repo,
		`["python3", "manage.py", "migrate", "--noinput"]`, `["migrate"]`,
		`"node.role == worker"`, `"node.role == manager"`,
	).Replace(string(shipped))
	writeFile(t, filepath.Join(dir, "deployd.yml"), cfg, 0o644)

	admin := randomHex(t)
	secrets := map[string]string{"deployd_admin_token": admin, "deployd_ci_token": randomHex(t),
		"deployd_webhook_secret": randomHex(t), "deployd_switch_token": randomHex(t)}
	for name, value := range secrets {
		createSecret(t, cli, name, value)
	}
	node := onlyNode(t, cli)
	setNodeLabel(t, cli, node, "deployd.edge", "true")
	t.Cleanup(func() { setNodeLabel(t, cli, node, "deployd.edge", "") })

	port := strconv.Itoa(testenv.FreePort(t))
	env := []string{"DEPLOYD_IMAGE=" + testenv.DeploydImage(t), "NGINX_IMAGE=" + testenv.NginxImage(t),
		"DOCKER_GID=" + dockerGID(t), "NGINX_HTTP_PORT=" + port}
	t.Cleanup(func() { removeStack(t, cli, stackCLI, env) })
	out, err := runCmd(dir, env, stackCLI, "stack", "deploy", "-c", "stack.yml", "-c", "override.yml", stackName)
	if err != nil {
		t.Fatalf("docker stack deploy: %v\n%s", err, out)
	}

	edge := &stack{t: t, cli: cli, svc: "web", token: admin, apiURL: "http://127.0.0.1:" + port,
		appURL: "http://127.0.0.1:" + port, http: &http.Client{Timeout: apiTimeout, Transport: hostTransport{"deployd.localhost"}}}
	app := &stack{t: t, appURL: "http://127.0.0.1:" + port, http: &http.Client{Timeout: apiTimeout, Transport: &http.Transport{Proxy: nil}}}
	edge.waitAPI()
	t.Logf("stack deployed and deployd answering through nginx in %s", time.Since(started).Round(time.Millisecond))

	for _, v := range []string{"v1", "v2"} {
		d := edge.deploy(v)
		if d.Status != controller.StatusSucceeded {
			t.Fatalf("deploy %s: %s (%s)", v, d.Status, d.Error)
		}
	}
	app.assertServes("v2", "green")

	// deployd's task dies (as its manager would): Swarm starts another.
	before, ok := runningDeploydTask(t, cli)
	if !ok {
		t.Fatal("deployd's task does not run")
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	info, err := cli.ContainerInspect(ctx, before.Status.ContainerStatus.ContainerID)
	if err != nil || info.State == nil || info.State.Pid == 0 {
		t.Fatalf("deployd's container: %v", err)
	}
	if err := syscall.Kill(info.State.Pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 deployd: %v", err)
	}
	killed := time.Now()
	deadline := killed.Add(2 * time.Minute)
	for {
		if now, ok := runningDeploydTask(t, cli); ok && now.ID != before.ID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Swarm started no new deployd task within two minutes")
		}
		time.Sleep(250 * time.Millisecond)
	}
	edge.waitAPI()
	t.Logf("deployd rescheduled by Swarm and answering %s after the kill", time.Since(killed).Round(time.Millisecond))
	app.assertServes("v2", "green")
	var svc api.Service
	status, b := edge.request(http.MethodGet, "/api/v1/services/web", nil)
	if status != http.StatusOK || json.Unmarshal(b, &svc) != nil || svc.ActiveColor != controller.Green || svc.StandbyColor != controller.Blue {
		t.Fatalf("service after the reschedule = %d %s, want green active, blue standby", status, b)
	}
	if rb := edge.deploy(""); rb.Status != controller.StatusSucceeded {
		t.Fatalf("rollback after the reschedule: %s (%s)", rb.Status, rb.Error)
	}
	app.assertServes("v1", "blue")
	t.Logf("whole test %s", time.Since(started).Round(time.Millisecond))
}

// hostTransport sends every request with Host set to host: nginx routes
// deployd's API by name.
type hostTransport struct{ host string }

func (h hostTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Host = h.host
	return (&http.Transport{Proxy: nil}).RoundTrip(r)
}

func stackTool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("docker")
	if err != nil {
		t.Fatalf("the docker CLI is needed for docker stack deploy: %v", err)
	}
	return p
}

func repoRootDir(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

func runCmd(dir string, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func createSecret(t *testing.T, cli interface {
	SecretCreate(context.Context, swarm.SecretSpec) (swarm.SecretCreateResponse, error)
	SecretRemove(context.Context, string) error
}, name, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	resp, err := cli.SecretCreate(ctx, swarm.SecretSpec{Annotations: swarm.Annotations{Name: name,
		Labels: map[string]string{"deployd.test": "stack"}}, Data: []byte(value)})
	if err != nil {
		t.Fatalf("create secret %s (left by another run? docker secret rm %s): %v", name, name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
		defer cancel()
		if err := cli.SecretRemove(ctx, resp.ID); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove secret %s: %v", name, err)
		}
	})
}

func onlyNode(t *testing.T, cli interface {
	NodeList(context.Context, swarm.NodeListOptions) ([]swarm.Node, error)
}) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	nodes, err := cli.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil || len(nodes) != 1 {
		t.Fatalf("NodeList = %d nodes, %v; want the one", len(nodes), err)
	}
	return nodes[0].ID
}

// setNodeLabel sets a node label, or removes it when value is "".
func setNodeLabel(t *testing.T, cli interface {
	NodeInspectWithRaw(context.Context, string) (swarm.Node, []byte, error)
	NodeUpdate(context.Context, string, swarm.Version, swarm.NodeSpec) error
}, node, key, value string) {
	t.Helper()
	for try := 0; ; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
		n, _, err := cli.NodeInspectWithRaw(ctx, node)
		if err == nil {
			if n.Spec.Labels == nil {
				n.Spec.Labels = map[string]string{}
			}
			if value == "" {
				delete(n.Spec.Labels, key)
			} else {
				n.Spec.Labels[key] = value
			}
			err = cli.NodeUpdate(ctx, node, n.Version, n.Spec)
		}
		cancel()
		if err == nil {
			return
		}
		if try == 20 {
			t.Errorf("label node %s %s=%q: %v", node, key, value, err)
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// runningDeploydTask is the stack's deployd task that runs, if one does.
func runningDeploydTask(t *testing.T, cli *client.Client) (swarm.Task, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	svc, _, err := cli.ServiceInspectWithRaw(ctx, stackName+"_deployd", swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatalf("deployd's service: %v", err)
	}
	tasks, err := cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", svc.ID))})
	if err != nil {
		t.Fatalf("deployd's tasks: %v", err)
	}
	for _, task := range tasks {
		if task.DesiredState == swarm.TaskStateRunning && task.Status.State == swarm.TaskStateRunning {
			return task, true
		}
	}
	return swarm.Task{}, false
}

// removeStack removes the stack, then the app's sets deployd left (it is
// gone, so nothing starts them again) and the stack's data volume.
func removeStack(t *testing.T, cli *client.Client, docker string, env []string) {
	t.Helper()
	if t.Failed() {
		if out, err := runCmd("", env, docker, "service", "logs", "--tail", "60", stackName+"_deployd"); err == nil {
			t.Logf("deployd's log (tail):\n%s", out)
		}
	}
	// deployd first, so that nothing starts the app's sets again, then
	// the sets, which hold the stack's network, then the stack.
	if out, err := runCmd("", env, docker, "service", "rm", stackName+"_deployd"); err != nil {
		t.Errorf("remove deployd's service: %v\n%s", err, out)
	}
	testenv.RemoveSwarmServices(t, cli, "web")
	if out, err := runCmd("", env, docker, "stack", "rm", stackName); err != nil {
		t.Errorf("docker stack rm: %v\n%s", err, out)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := runCmd("", env, docker, "service", "ls", "-q", "--filter", "label=com.docker.stack.namespace="+stackName)
		if err == nil && strings.TrimSpace(out) == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the stack's services are still there: %s (%v)", out, err)
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	for deadline := time.Now().Add(time.Minute); ; {
		out, err := runCmd("", env, docker, "volume", "rm", stackName+"_deployd-data")
		if err == nil || strings.Contains(out, "no such volume") {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("remove the stack's volume: %v\n%s", err, out)
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
}
