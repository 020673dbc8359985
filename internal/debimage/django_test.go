package debimage

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/deployd/deployd/internal/testenv"
)

const (
	exampleDir = "../../examples/django"
	// testLabel marks the containers, networks and volumes one test
	// created (value: a unique name), so cleanup finds them all.
	testLabel = "deployd.test.django"
	// The first build on a machine runs debootstrap and downloads some
	// 300 MB of packages.
	imagesTimeout = 15 * time.Minute
	stepTimeout   = 90 * time.Second
	dbPassword    = "test-only-password"
)

// images builds the three base images and the example's versions, once per
// test process.
func images(t *testing.T, cli *client.Client) (Tags, map[string]string) {
	t.Helper()
	for _, tool := range []string{"debootstrap", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			if testenv.InCI() {
				t.Fatalf("%s is missing (CI=true, so this is a failure, not a skip): %v", tool, err)
			}
			t.Skipf("%s is missing (apt-get install %s); skipping (with CI=true this fails)", tool, tool)
		}
	}
	builtOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), imagesTimeout)
		defer cancel()
		log, _ := logtest.NewNullLogger()
		start := time.Now()
		built.tags, built.err = Build(ctx, cli, Options{}, log)
		if built.err != nil {
			return
		}
		built.examples = map[string]string{}
		for _, v := range ExampleVersions {
			tag, err := BuildExample(ctx, cli, built.tags.Django, exampleDir, v, log)
			if err != nil {
				built.err = err
				return
			}
			built.examples[v] = tag
		}
		// Once per process: the first build on a machine takes minutes,
		// later ones only inspect the tags.
		t.Logf("images %+v and %v ready in %s", built.tags, built.examples, time.Since(start).Round(time.Second))
	})
	if built.err != nil {
		t.Fatalf("build images: %v", built.err)
	}
	return built.tags, built.examples
}

var (
	builtOnce sync.Once
	built     struct {
		tags     Tags
		examples map[string]string
		err      error
	}
)

// djangoLab is one test's private network, database volume and containers.
type djangoLab struct {
	t     *testing.T
	cli   *client.Client
	name  string // unique; the label's value and the prefix of every name
	net   string
	tags  Tags
	pg    string // the postgres container's ID
	dbURL string
}

func newLab(t *testing.T) *djangoLab {
	t.Helper()
	cli := testenv.Docker(t)
	tags, _ := images(t, cli)
	l := &djangoLab{t: t, cli: cli, name: "deployd-dj-" + testenv.UniqueService(t), tags: tags}
	t.Cleanup(l.cleanup)
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	labels := map[string]string{testLabel: l.name}
	if _, err := cli.NetworkCreate(ctx, l.name, network.CreateOptions{Labels: labels}); err != nil {
		t.Fatalf("create network: %v", err)
	}
	l.net = l.name
	if _, err := cli.VolumeCreate(ctx, volume.CreateOptions{Name: l.name + "-pgdata", Labels: labels}); err != nil {
		t.Fatalf("create volume: %v", err)
	}
	l.dbURL = "postgres://notes:" + dbPassword + "@db:5432/notes"
	return l
}

// cleanup removes everything labelled with the lab's name, whatever state
// the test left it in.
func (l *djangoLab) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := filters.NewArgs(filters.Arg("label", testLabel+"="+l.name))
	cs, err := l.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		l.t.Errorf("list containers: %v", err)
	}
	for _, c := range cs {
		if err := l.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
			l.t.Errorf("remove container %s: %v", c.ID[:12], err)
		}
	}
	ns, err := l.cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		l.t.Errorf("list networks: %v", err)
	}
	for _, n := range ns {
		if err := l.cli.NetworkRemove(ctx, n.ID); err != nil && !cerrdefs.IsNotFound(err) {
			l.t.Errorf("remove network %s: %v", n.Name, err)
		}
	}
	vs, err := l.cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		l.t.Errorf("list volumes: %v", err)
	}
	for _, v := range vs.Volumes {
		if err := l.cli.VolumeRemove(ctx, v.Name, true); err != nil && !cerrdefs.IsNotFound(err) {
			l.t.Errorf("remove volume %s: %v", v.Name, err)
		}
	}
}

// create creates (without starting) a container on the lab's network.
func (l *djangoLab) create(ctx context.Context, name string, cfg *container.Config, host *container.HostConfig, aliases ...string) string {
	l.t.Helper()
	cfg.Labels = map[string]string{testLabel: l.name}
	resp, err := l.cli.ContainerCreate(ctx, cfg, host, &network.NetworkingConfig{
		EndpointsConfig: map[string]*network.EndpointSettings{l.net: {Aliases: aliases}},
	}, nil, l.name+"-"+name)
	if err != nil {
		l.t.Fatalf("create container %s: %v", name, err)
	}
	return resp.ID
}

func (l *djangoLab) start(ctx context.Context, id string) {
	l.t.Helper()
	if err := l.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		l.t.Fatalf("start container %s: %v", id[:12], err)
	}
}

// startPostgres starts the database as "db" and waits until it answers on
// the network.
func (l *djangoLab) startPostgres(ctx context.Context) {
	l.t.Helper()
	l.pg = l.create(ctx, "postgres", &container.Config{
		Image: l.tags.Postgres,
		Env:   []string{"POSTGRES_USER=notes", "POSTGRES_PASSWORD=" + dbPassword, "POSTGRES_DB=notes"},
	}, &container.HostConfig{
		Mounts: []mount.Mount{{Type: mount.TypeVolume, Source: l.name + "-pgdata", Target: "/var/lib/postgresql/data"}},
	}, "db")
	l.start(ctx, l.pg)
	l.waitPostgres(ctx)
}

// waitPostgres polls pg_isready over TCP inside the container: the
// entrypoint's first-start server listens on its socket only, so TCP
// answering means the real server is up.
func (l *djangoLab) waitPostgres(ctx context.Context) {
	l.t.Helper()
	deadline := time.Now().Add(stepTimeout)
	for {
		code, out, err := l.exec(ctx, l.pg, "pg_isready", "-h", "127.0.0.1", "-U", "notes")
		if err == nil && code == 0 {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("postgres not ready after %s: exit %d, %v, %s\nlogs:\n%s", stepTimeout, code, err, out, l.logs(l.pg))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (l *djangoLab) exec(ctx context.Context, id string, cmd ...string) (int, string, error) {
	ex, err := l.cli.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return -1, "", err
	}
	att, err := l.cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		return -1, "", err
	}
	defer att.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, att.Reader); err != nil {
		return -1, out.String(), err
	}
	st, err := l.cli.ContainerExecInspect(ctx, ex.ID)
	if err != nil {
		return -1, out.String(), err
	}
	return st.ExitCode, out.String(), nil
}

func (l *djangoLab) appEnv() []string {
	return []string{"DATABASE_URL=" + l.dbURL, "SECRET_KEY=test-only-secret-key", "DEPLOYD_COLOR=blue"}
}

// oneOff runs cmd in image to the end, as deployd's pre_deploy does, and
// returns its exit code and output.
func (l *djangoLab) oneOff(ctx context.Context, name, image string, cmd ...string) (int64, string) {
	l.t.Helper()
	id := l.create(ctx, name, &container.Config{Image: image, Cmd: cmd, Env: l.appEnv()}, &container.HostConfig{})
	waitC, errC := l.cli.ContainerWait(ctx, id, container.WaitConditionNextExit)
	l.start(ctx, id)
	select {
	case w := <-waitC:
		return w.StatusCode, l.logs(id)
	case err := <-errC:
		l.t.Fatalf("wait for %s: %v", name, err)
	}
	return 0, ""
}

func (l *djangoLab) logs(id string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rc, err := l.cli.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return fmt.Sprintf("(logs: %v)", err)
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil {
		return fmt.Sprintf("%s(logs: %v)", out.String(), err)
	}
	return out.String()
}

// startApp starts image with port 8000 published on a free loopback port
// and returns its base URL.
func (l *djangoLab) startApp(ctx context.Context, name, image string) (id, url string) {
	l.t.Helper()
	port := testenv.FreePort(l.t)
	id = l.create(ctx, name, &container.Config{
		Image:        image,
		Env:          l.appEnv(),
		ExposedPorts: nat.PortSet{"8000/tcp": {}},
	}, &container.HostConfig{
		PortBindings: nat.PortMap{"8000/tcp": {{HostIP: "127.0.0.1", HostPort: fmt.Sprint(port)}}},
	})
	l.start(ctx, id)
	return id, fmt.Sprintf("http://127.0.0.1:%d", port)
}

// waitStatus polls url until it answers want, and returns the body.
func (l *djangoLab) waitStatus(ctx context.Context, url string, want int, appID string) string {
	l.t.Helper()
	deadline := time.Now().Add(stepTimeout)
	var got int
	var body string
	var err error
	for time.Now().Before(deadline) {
		got, body, err = testenv.Get(ctx, url)
		if err == nil && got == want {
			return body
		}
		time.Sleep(250 * time.Millisecond)
	}
	l.t.Fatalf("GET %s = %d %q (%v) for %s, want %d\napp logs:\n%s", url, got, body, err, stepTimeout, want, l.logs(appID))
	return ""
}

func TestDjangoExample_HealthFollowsTheDatabase(t *testing.T) {
	l := newLab(t)
	_, examples := images(t, l.cli)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	l.startPostgres(ctx)
	if code, out := l.oneOff(ctx, "migrate-v1", examples["v1"], "python3", "manage.py", "migrate", "--noinput"); code != 0 {
		t.Fatalf("v1 migrate exit = %d, want 0\n%s", code, out)
	}
	app, url := l.startApp(ctx, "v1", examples["v1"])

	body := l.waitStatus(ctx, url+"/health", http.StatusOK, app)
	if !strings.Contains(body, `"version": "v1"`) {
		t.Fatalf("health body = %s, want version v1", body)
	}
	resp, err := http.Post(url+"/notes", "application/json", strings.NewReader(`{"title": "first", "body": "written by the test"}`))
	if err != nil {
		t.Fatalf("POST /notes: %v", err)
	}
	created, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /notes = %d %s, want %d", resp.StatusCode, created, http.StatusCreated)
	}
	status, page, err := testenv.Get(ctx, url+"/")
	if err != nil || status != http.StatusOK || !strings.Contains(page, "first") || !strings.Contains(page, ">v1<") || !strings.Contains(page, ">blue<") {
		t.Fatalf("GET / = %d (%v), want 200 listing the note with version v1 and color blue:\n%s", status, err, page)
	}
	status, _, err = testenv.Get(ctx, url+"/static/notes/style.css")
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET the collected stylesheet = %d (%v), want 200", status, err)
	}

	if err := l.cli.ContainerStop(ctx, l.pg, container.StopOptions{}); err != nil {
		t.Fatalf("stop postgres: %v", err)
	}
	body = l.waitStatus(ctx, url+"/health", http.StatusServiceUnavailable, app)
	if !strings.Contains(body, "OperationalError") {
		t.Fatalf("health body with the database away = %s, want an OperationalError reason", body)
	}

	l.start(ctx, l.pg)
	l.waitPostgres(ctx)
	l.waitStatus(ctx, url+"/health", http.StatusOK, app)
}

func TestDjangoExample_ExpandKeepsTheOldVersionHealthyContractDoesNot(t *testing.T) {
	l := newLab(t)
	_, examples := images(t, l.cli)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	l.startPostgres(ctx)
	if code, out := l.oneOff(ctx, "migrate-v1", examples["v1"], "python3", "manage.py", "migrate", "--noinput"); code != 0 {
		t.Fatalf("v1 migrate exit = %d, want 0\n%s", code, out)
	}
	app, url := l.startApp(ctx, "v1", examples["v1"])
	l.waitStatus(ctx, url+"/health", http.StatusOK, app)

	// v2's plan names its migration as showmigrations prints it.
	code, plan := l.oneOff(ctx, "plan-v2", examples["v2"], "python3", "manage.py", "showmigrations", "--plan")
	if code != 0 || !strings.Contains(plan, "[X]  notes.0001_initial") || !strings.Contains(plan, "[ ]  notes.0002_add_nickname") {
		t.Fatalf("v2 showmigrations --plan exit %d:\n%s\nwant 0001 applied and 0002_add_nickname pending", code, plan)
	}
	if code, out := l.oneOff(ctx, "migrate-v2", examples["v2"], "python3", "manage.py", "migrate", "--noinput"); code != 0 {
		t.Fatalf("v2 migrate exit = %d, want 0\n%s", code, out)
	}
	l.waitStatus(ctx, url+"/health", http.StatusOK, app)

	if code, out := l.oneOff(ctx, "migrate-v3", examples["v3"], "python3", "manage.py", "migrate", "--noinput"); code != 0 {
		t.Fatalf("v3 migrate exit = %d, want 0\n%s", code, out)
	}
	body := l.waitStatus(ctx, url+"/health", http.StatusServiceUnavailable, app)
	if !strings.Contains(body, "legacy_flag") {
		t.Fatalf("v1's health on v3's schema = %s, want the dropped column named", body)
	}
}

func TestDjangoExample_MigrationsMatchTheModels(t *testing.T) {
	l := newLab(t)
	_, examples := images(t, l.cli)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, v := range ExampleVersions {
		// No database: makemigrations only warns that it cannot check
		// the history.
		code, out := l.oneOff(ctx, "makemigrations-"+v, examples[v], "python3", "manage.py", "makemigrations", "--check", "--dry-run", "notes")
		if code != 0 || !strings.Contains(out, "No changes detected") {
			t.Errorf("%s: makemigrations --check exit %d, want 0 and no changes:\n%s", v, code, out)
		}
	}
}
