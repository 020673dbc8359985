package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/pkg/stdcopy"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/internal/config"
	"github.com/deployd/deployd/internal/debimage"
	"github.com/deployd/deployd/internal/testenv"
	"github.com/deployd/deployd/pkg/controller"
)

const (
	// djangoLabel marks the network and containers a Django test creates
	// beside the service's own (value: the service), so cleanup finds them.
	djangoLabel = "deployd.test.e2e-django"
	djangoRepo  = "deployd-django-example"
	// The images are cached by content hash; a first build on a machine
	// runs debootstrap.
	djangoImagesTimeout = 15 * time.Minute
	djangoStepTimeout   = 60 * time.Second
	djangoDeployTimeout = 4 * time.Minute
)

// djangoWorld is the database side of a Django test: a private network
// the service joins, PostgreSQL on it as "db", and the volume deployd
// keeps its backups in.
type djangoWorld struct {
	e        *env
	tags     debimage.Tags
	examples map[string]string // version -> image reference
	net      string
	pg       string // the database container's ID
	password string
	volume   string // the backups volume
}

func newDjangoWorld(t *testing.T, e *env) *djangoWorld {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), djangoImagesTimeout)
	defer cancel()
	log, _ := logtest.NewNullLogger()
	tags, err := debimage.Build(ctx, e.cli, debimage.Options{}, log)
	if err != nil {
		t.Fatalf("build images: %v", err)
	}
	w := &djangoWorld{e: e, tags: tags, examples: map[string]string{}, net: e.svc + "-net",
		password: randomSecret(t), volume: e.svc + "-backups"}
	for _, v := range debimage.ExampleVersions {
		ref, err := debimage.BuildExample(ctx, e.cli, tags.Django, "../../examples/django", v, log)
		if err != nil {
			t.Fatalf("build example %s: %v", v, err)
		}
		w.examples[v] = ref
	}
	t.Cleanup(w.cleanup)
	if _, err := e.cli.NetworkCreate(ctx, w.net, network.CreateOptions{Labels: w.labels()}); err != nil {
		t.Fatalf("create network: %v", err)
	}
	return w
}

func (w *djangoWorld) labels() map[string]string { return map[string]string{djangoLabel: w.e.svc} }

// cleanup removes, whatever state the test left, the service's containers
// (they hold the network), then everything labelled for the test, then
// the volumes deployd created.
func (w *djangoWorld) cleanup() {
	t, cli := w.e.t, w.e.cli
	testenv.RemoveServiceContainers(t, cli, w.e.svc)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := filters.NewArgs(filters.Arg("label", djangoLabel+"="+w.e.svc))
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		t.Errorf("list containers: %v", err)
	}
	for _, c := range cs {
		if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove container %s: %v", c.ID[:12], err)
		}
	}
	ns, err := cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		t.Errorf("list networks: %v", err)
	}
	for _, n := range ns {
		if err := cli.NetworkRemove(ctx, n.ID); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove network %s: %v", n.Name, err)
		}
	}
	removeVolumesOf(t, w.e)
}

// pgEnv is the libpq environment of the database's clients, without the
// password.
func (w *djangoWorld) pgEnv() map[string]string {
	return map[string]string{"PGHOST": "db", "PGUSER": "notes", "PGDATABASE": "notes"}
}

// startPostgres starts the database as "db" on the network and waits
// until it answers over TCP (the entrypoint's first-start server listens
// on its socket only).
func (w *djangoWorld) startPostgres(ctx context.Context) {
	t := w.e.t
	t.Helper()
	resp, err := w.e.cli.ContainerCreate(ctx, &container.Config{
		Image:  w.tags.Postgres,
		Env:    []string{"POSTGRES_USER=notes", "POSTGRES_PASSWORD=" + w.password, "POSTGRES_DB=notes"},
		Labels: w.labels(),
	}, &container.HostConfig{NetworkMode: container.NetworkMode(w.net)}, &network.NetworkingConfig{
		EndpointsConfig: map[string]*network.EndpointSettings{w.net: {Aliases: []string{"db"}}},
	}, nil, w.e.svc+"-db")
	if err != nil {
		t.Fatalf("create postgres: %v", err)
	}
	w.pg = resp.ID
	if err := w.e.cli.ContainerStart(ctx, w.pg, container.StartOptions{}); err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	deadline := time.Now().Add(djangoStepTimeout)
	for {
		code, out, err := w.exec(ctx, w.pg, "pg_isready", "-h", "127.0.0.1", "-U", "notes")
		if err == nil && code == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("postgres not ready after %s: exit %d, %v, %s", djangoStepTimeout, code, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (w *djangoWorld) exec(ctx context.Context, id string, cmd ...string) (int, string, error) {
	cli := w.e.cli
	ex, err := cli.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return -1, "", err
	}
	att, err := cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		return -1, "", err
	}
	defer att.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, att.Reader); err != nil {
		return -1, out.String(), err
	}
	st, err := cli.ContainerExecInspect(ctx, ex.ID)
	if err != nil {
		return -1, out.String(), err
	}
	return st.ExitCode, out.String(), nil
}

// psqlTool runs cmd to the end in a one-off of the postgres image on the
// network, with the backups volume at /backups and the database's libpq
// environment, and fails the test unless it exits 0. It returns the
// output.
func (w *djangoWorld) psqlTool(ctx context.Context, name string, cmd ...string) string {
	t, cli := w.e.t, w.e.cli
	t.Helper()
	env := []string{"PGPASSWORD=" + w.password}
	for k, v := range w.pgEnv() {
		env = append(env, k+"="+v)
	}
	resp, err := cli.ContainerCreate(ctx, &container.Config{Image: w.tags.Postgres, Cmd: cmd, Env: env, Labels: w.labels()},
		&container.HostConfig{
			NetworkMode: container.NetworkMode(w.net),
			Mounts:      []mount.Mount{{Type: mount.TypeVolume, Source: w.volume, Target: controller.BackupDir}},
		}, nil, nil, w.e.svc+"-"+name)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	defer func() {
		if err := cli.ContainerRemove(context.WithoutCancel(ctx), resp.ID, container.RemoveOptions{Force: true}); err != nil {
			t.Errorf("remove %s: %v", name, err)
		}
	}()
	waitC, errC := cli.ContainerWait(ctx, resp.ID, container.WaitConditionNextExit)
	if err := cli.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	var code int64
	select {
	case r := <-waitC:
		code = r.StatusCode
	case err := <-errC:
		t.Fatalf("wait for %s: %v", name, err)
	}
	rc, err := cli.ContainerLogs(ctx, resp.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatalf("logs of %s: %v", name, err)
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil {
		t.Fatalf("logs of %s: %v", name, err)
	}
	if code != 0 {
		t.Fatalf("%s %q exited %d:\n%s", name, cmd, code, out.String())
	}
	return out.String()
}

// waitDjango polls a deployment until it reaches a final status. Each
// deploy runs four Python one-offs and a dump, which on a busy two-CPU
// machine take far longer than the demo app's: the suite's
// deploymentTimeout is too short for it.
func (d *daemon) waitDjango(id string) api.Deployment {
	d.e.t.Helper()
	deadline := time.Now().Add(djangoDeployTimeout)
	for {
		dep := d.deployment(id)
		if dep.Status.Done() {
			return dep
		}
		if time.Now().After(deadline) {
			d.e.t.Fatalf("deployment %s: not done after %s; now %s with steps %s", id, djangoDeployTimeout, dep.Status, stepSummary(dep))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mustDjango deploys image and fails the test unless it succeeds.
func (d *daemon) mustDjango(image string) api.Deployment {
	d.e.t.Helper()
	dep := d.waitDjango(d.deploy(image).ID)
	if dep.Status != controller.StatusSucceeded {
		d.e.t.Fatalf("deploy %s: status = %s (%s), want succeeded; steps %s", image, dep.Status, dep.Error, stepSummary(dep))
	}
	return dep
}

// djangoHealth is the example app's /health answer.
type djangoHealth struct {
	Status  string `json:"status"`
	Version string `json:"version"`
	Color   string `json:"color"`
	Reason  string `json:"reason"`
}

// health does GET /health through nginx.
func (e *env) djangoHealth(ctx context.Context) (int, djangoHealth, error) {
	status, body, err := testenv.Get(ctx, e.ng.URL+"/health")
	if err != nil {
		return 0, djangoHealth{}, err
	}
	var h djangoHealth
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		return status, h, fmt.Errorf("GET /health through nginx: %d %q: %w", status, body, err)
	}
	return status, h, nil
}

// waitDjangoHealth polls /health through nginx until it answers want
// (and, for 200, version), and returns the answer.
func (e *env) waitDjangoHealth(ctx context.Context, want int, version string) djangoHealth {
	e.t.Helper()
	deadline := time.Now().Add(djangoStepTimeout)
	for {
		status, h, err := e.djangoHealth(ctx)
		if err == nil && status == want && (want != http.StatusOK || h.Version == version) {
			return h
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("GET /health through nginx = %d %+v (%v) after %s, want %d version %q", status, h, err, djangoStepTimeout, want, version)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// assertDjangoServes checks /health through nginx, a few times in a row
// so that every replica is likely asked, says version on color.
func (e *env) assertDjangoServes(ctx context.Context, version, color string) {
	e.t.Helper()
	for range 4 {
		status, h, err := e.djangoHealth(ctx)
		if err != nil || status != http.StatusOK || h.Version != version || h.Color != color {
			e.t.Fatalf("GET /health through nginx = %d %+v (%v), want 200 from %s on %s", status, h, err, version, color)
		}
	}
}

// postNote writes a note through nginx and fails the test unless it is
// created.
func (e *env) postNote(ctx context.Context, title string) {
	e.t.Helper()
	if err := postNote(ctx, http.DefaultClient, e.ng.URL, title); err != nil {
		e.t.Fatal(err)
	}
}

func postNote(ctx context.Context, c *http.Client, base, title string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/notes", strings.NewReader(fmt.Sprintf(`{"title": %q}`, title)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("POST /notes: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("POST /notes = %d %s, want 201", resp.StatusCode, b)
	}
	return nil
}

// noteTitles lists the latest notes' titles (GET /notes through nginx).
func (e *env) noteTitles(ctx context.Context) []string {
	e.t.Helper()
	status, body, err := testenv.Get(ctx, e.ng.URL+"/notes")
	if err != nil || status != http.StatusOK {
		e.t.Fatalf("GET /notes through nginx = %d %q (%v), want 200", status, body, err)
	}
	var list struct {
		Notes []struct {
			Title string `json:"title"`
		} `json:"notes"`
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		e.t.Fatalf("GET /notes: %q: %v", body, err)
	}
	var titles []string
	for _, n := range list.Notes {
		titles = append(titles, n.Title)
	}
	return titles
}

// notesLoad is clients doing GET / and POST /notes through nginx until stop.
type notesLoad struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string // the first few failures
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

func startNotesLoad(base string, clients int) *notesLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &notesLoad{cancel: cancel}
	for i := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			c := &http.Client{Timeout: 10 * time.Second}
			// Paced, so that the deploy's own probes and migrations get
			// the machine's two CPUs too.
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				var err error
				if n%2 == 0 {
					err = getOK(ctx, c, base+"/")
				} else {
					err = postNote(ctx, c, base, fmt.Sprintf("load %d.%d", i, n))
				}
				switch {
				case ctx.Err() != nil:
					return
				case err != nil:
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errs) < 5 {
						l.errs = append(l.errs, err.Error())
					}
					l.mu.Unlock()
				default:
					l.ok.Add(1)
				}
			}
		}()
	}
	return l
}

func (l *notesLoad) stop() {
	l.cancel()
	l.wg.Wait()
}

func getOK(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s = %d, want 200", url, resp.StatusCode)
	}
	return nil
}

// The example's v2 adds a column (expand), v3 drops one v2 reads
// (contract). deployd migrates and backs up PostgreSQL before each deploy,
// rolls back over the expand change freely and refuses the contract one
// without confirmation. Restoring the dump taken before v3's migration
// brings that schema and the notes of that moment back, and the confirmed
// rollback to v2 then succeeds.
func TestDjango_MigrationsBackupsRestoreAndSchemaGuardedRollbacks(t *testing.T) {
	started := time.Now()
	phase := started
	logPhase := func(name string) {
		t.Logf("phase %-28s %6s", name, time.Since(phase).Round(time.Millisecond))
		phase = time.Now()
	}
	defer func() { t.Logf("whole test %s", time.Since(started).Round(time.Millisecond)) }()

	e := newEnv(t)
	w := newDjangoWorld(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	w.startPostgres(ctx)

	appEnv := filepath.Join(e.dir, "web.env")
	backupEnv := filepath.Join(e.dir, "backup.env")
	for path, body := range map[string]string{
		appEnv:    fmt.Sprintf("DATABASE_URL=postgres://notes:%s@db:5432/notes\nSECRET_KEY=%s\n", w.password, randomSecret(t)),
		backupEnv: "PGPASSWORD=" + w.password + "\n",
	} {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := defaultSvc()
	cfg.Image, cfg.Network, cfg.EnvFile = djangoRepo, w.net, appEnv
	// The machine may be busy: Django starts in seconds, one-offs of
	// Python take several, and a probe may wait on a worker.
	cfg.StartTimeout, cfg.HealthTimeout = 60*time.Second, 5*time.Second
	cfg.PreDeploy = []string{"python3", "manage.py", "migrate", "--noinput"}
	cfg.Backup = &config.Backup{Image: w.tags.Postgres, Command: controller.DefaultBackupCommand(),
		Env: w.pgEnv(), EnvFile: backupEnv, Volume: w.volume, Keep: 5, Timeout: time.Minute}
	cfg.Schema = &config.Schema{Command: []string{"python3", "manage.py", "showmigrations", "--plan"},
		Timeout: 30 * time.Second, Compatible: `^[a-z_]+\.\d{4}_add_`}
	// The watchdog may roll back on its own: it must not when the database
	// is what failed.
	rcv, notifyURL := startReceiver(t)
	e.notifyURL = notifyURL
	cfg.Notify, cfg.AutoRollback = true, true
	cfg.WatchInterval, cfg.UnhealthyThreshold = 500*time.Millisecond, 2
	d := e.startDaemon("main", e.writeConfig("deployd.yml", cfg))
	logPhase("setup (images, db, daemon)")

	// v1: backed up (an empty database still dumps), migrated, serving.
	v1 := d.mustDjango(w.examples["v1"])
	if s := findStep(v1, controller.StepBackup); s == nil || !strings.HasPrefix(s.Message, "backup "+e.svc+"-"+v1.ID+".dump, ") {
		t.Fatalf("v1 steps = %s, want a backup step naming %s-%s.dump", stepSummary(v1), e.svc, v1.ID)
	}
	e.assertDjangoServes(ctx, "v1", string(v1.ToColor))
	logPhase("deploy v1")

	// v2 under load: not one request fails.
	ld := startNotesLoad(e.ng.URL, 2)
	v2 := d.waitDjango(d.deploy(w.examples["v2"]).ID)
	ld.stop()
	if v2.Status != controller.StatusSucceeded {
		t.Fatalf("deploy v2: %s (%s), steps %s", v2.Status, v2.Error, stepSummary(v2))
	}
	if ld.failed.Load() != 0 || ld.ok.Load() < 10 {
		t.Fatalf("load during the v2 deploy: %d ok, %d failed %v; want no failure and at least 10 answers", ld.ok.Load(), ld.failed.Load(), ld.errs)
	}
	t.Logf("v2 deployed under load: %d requests, none failed", ld.ok.Load())
	e.assertDjangoServes(ctx, "v2", string(v2.ToColor))
	logPhase("deploy v2 under load")

	// Back to v1 across notes.0002_add_nickname, which matches compatible.
	if ch := d.service().RollbackSchemaChange; ch == nil || ch.Breaking || !slices.Equal(ch.Migrations, []string{"notes.0002_add_nickname"}) {
		t.Fatalf("rollback_schema_change on v2 = %+v, want notes.0002_add_nickname, compatible", ch)
	}
	rb := d.waitDjango(d.rollback().ID)
	if rb.Status != controller.StatusSucceeded {
		t.Fatalf("rollback to v1: %s (%s), steps %s", rb.Status, rb.Error, stepSummary(rb))
	}
	e.assertDjangoServes(ctx, "v1", string(v1.ToColor))
	logPhase("rollback v2 -> v1")

	v2b := d.mustDjango(w.examples["v2"])
	kept := "before v3 " + randomSecret(t)[:8]
	e.postNote(ctx, kept)
	v3 := d.mustDjango(w.examples["v3"])
	e.assertDjangoServes(ctx, "v3", string(v3.ToColor))
	lost := "after v3 " + randomSecret(t)[:8]
	e.postNote(ctx, lost)
	logPhase("deploy v2, v3")

	// Across notes.0003_drop_legacy: refused, nothing moves.
	status, b := d.request(http.MethodPost, "/api/v1/services/"+e.svc+"/rollback", nil, e.token)
	if refusal := decode[apiError](t, b); status != http.StatusConflict || refusal.Code != controller.ESCHEMACHANGE {
		t.Fatalf("rollback from v3 without confirmation = %d %s, want 409 code %s", status, b, controller.ESCHEMACHANGE)
	}
	e.assertDjangoServes(ctx, "v3", string(v3.ToColor))
	warning := decode[apiError](t, b).Error
	if !strings.Contains(warning, "applied notes.0003_drop_legacy") {
		t.Fatalf("refusal %q does not name notes.0003_drop_legacy", warning)
	}

	// The status page says so on the card and in the rollback dialog,
	// whose yes button waits for the acknowledgement.
	br := newBrowser(t)
	br.login(d, e.token)
	rollbackButton := fmt.Sprintf(`button.rollback[data-service="%s"]`, e.svc)
	if got := br.text(card(e.svc, ".rollback-schema")); got != "Breaking schema change: "+warning {
		t.Errorf(".rollback-schema = %q, want %q", got, "Breaking schema change: "+warning)
	}
	openDialog := func() {
		br.click("click Rollback", rollbackButton)
		br.do("wait for the dialog", chromedp.WaitVisible(chromedp.CSS("#confirm-dialog")))
		if got := br.text("#confirm-schema"); got != warning {
			t.Errorf("#confirm-schema = %q, want %q", got, warning)
		}
		if !eval[bool](br, `document.getElementById('confirm-yes').disabled`) {
			t.Fatalf("#confirm-yes is enabled before the acknowledgement")
		}
	}
	openDialog()
	br.screenshot("schema-warning")
	br.do("cancel", chromedp.Click(chromedp.CSS("#confirm-no")), chromedp.WaitNotVisible(chromedp.CSS("#confirm-dialog")))
	e.assertDjangoServes(ctx, "v3", string(v3.ToColor))
	logPhase("rollback v3 -> v2 refused")

	// Every migrating deploy left its dump; rollbacks none.
	var want []string
	for _, dep := range []string{v1.ID, v2.ID, v2b.ID, v3.ID} {
		want = append(want, e.svc+"-"+dep+".dump")
	}
	sort.Strings(want)
	files := strings.Fields(w.psqlTool(ctx, "ls", "ls", controller.BackupDir))
	if !slices.Equal(files, want) {
		t.Fatalf("backups = %v, want %v", files, want)
	}
	newest := controller.BackupDir + "/" + want[len(want)-1]

	// Restore for real: the notes table dropped, the app fails its probe;
	// the dump taken before v3's migration restored, it answers again
	// with the notes of that moment.
	w.psqlTool(ctx, "drop", "psql", "-v", "ON_ERROR_STOP=1", "-c", "DROP TABLE notes_note")
	if h := e.waitDjangoHealth(ctx, http.StatusServiceUnavailable, ""); !strings.Contains(h.Reason, "notes_note") {
		t.Fatalf("health without the table = %+v, want the table named", h)
	}
	w.psqlTool(ctx, "restore", "pg_restore", "--clean", "--if-exists", "--exit-on-error", "--dbname=notes", newest)
	e.waitDjangoHealth(ctx, http.StatusOK, "v3")
	titles := e.noteTitles(ctx)
	if !slices.Contains(titles, kept) || slices.Contains(titles, lost) {
		t.Fatalf("notes after the restore = %q, want %q back and %q (written after the dump) gone", titles, kept, lost)
	}
	logPhase("backups listed, restored")

	// Confirmed, the rollback succeeds now that the schema is again the
	// one v2 ran against. (On v3's schema its probe would fail: v2 selects
	// the dropped column, and the rollback would end failed after the
	// start timeout, v3 still serving.)
	// Confirmed in the page's dialog.
	openDialog()
	br.do("tick the acknowledgement", chromedp.Click(chromedp.CSS("#confirm-ack")))
	br.waitTrue("#confirm-yes enabled", `!document.getElementById('confirm-yes').disabled`, pageTimeout)
	br.screenshot("schema-warning-acknowledged")
	br.do("confirm", chromedp.Click(chromedp.CSS("#confirm-yes")), chromedp.WaitNotVisible(chromedp.CSS("#confirm-dialog")))
	br.waitTrue("the rollback's flash", `!!document.querySelector('#flash .flash-msg.ok[data-deployment]')`, pageTimeout)
	rb = d.waitDjango(eval[string](br, `document.querySelector('#flash .flash-msg.ok[data-deployment]').dataset.deployment`))
	if rb.Status != controller.StatusSucceeded || rb.SchemaChange == nil || !rb.SchemaChange.Confirmed || !rb.SchemaChange.Breaking {
		t.Fatalf("confirmed rollback: %s (%s), schema_change %+v, steps %s", rb.Status, rb.Error, rb.SchemaChange, stepSummary(rb))
	}
	e.assertDjangoServes(ctx, "v2", string(v2b.ToColor))
	logPhase("rollback v3 -> v2 confirmed")

	// The database away: /health through nginx says so within seconds,
	// the watchdog reports the service unhealthy and rolls nothing back,
	// since the standby fails its probe too: not a code fault.
	if err := e.cli.ContainerStop(ctx, w.pg, container.StopOptions{}); err != nil {
		t.Fatalf("stop postgres: %v", err)
	}
	stopped := time.Now()
	e.waitDjangoHealth(ctx, http.StatusServiceUnavailable, "")
	elapsedUnder(t, "/health turning 503 after the database stopped", time.Since(stopped), 10*time.Second)
	// The episode's report names the active color and image first:
	// "<service> (green, <v2's image>): ...".
	active := fmt.Sprintf("%s (%s, %s)", e.svc, v2b.ToColor, w.examples["v2"])
	var report string
	eventually(t, djangoStepTimeout, "a service_unhealthy notification for v2 without a rollback", func() error {
		for _, n := range rcv.ofKind(controller.NotifyServiceUnhealthy) {
			if strings.HasPrefix(n.note.Message, active) && n.note.Time.After(stopped) {
				report = n.note.Message
				return nil
			}
		}
		return fmt.Errorf("%d service_unhealthy notifications, none since the stop about %s", len(rcv.ofKind(controller.NotifyServiceUnhealthy)), active)
	})
	if !strings.Contains(report, "no automatic rollback") {
		t.Fatalf("service_unhealthy with the database down = %q, want it to say why there is no automatic rollback", report)
	}
	t.Logf("watchdog %s after the stop: %s", time.Since(stopped).Round(time.Millisecond), report)
	logPhase("database stopped")

	// A few more watchdog rounds: still no rollback. Then the database
	// back, and v2 serves again with nobody touching deployd.
	time.Sleep(4 * cfg.WatchInterval)
	if last := d.service().Deployment; last == nil || last.ID != rb.ID {
		t.Fatalf("last deployment with the database down = %+v, want still the confirmed rollback %s", last, rb.ID)
	}
	for _, n := range rcv.ofKind(controller.NotifyRolledBack) {
		if n.note.Actor != "e2e" {
			t.Fatalf("rolled_back by %s: %s; want only the test's own rollbacks", n.note.Actor, n.note.Message)
		}
	}
	if err := e.cli.ContainerStart(ctx, w.pg, container.StartOptions{}); err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	e.waitDjangoHealth(ctx, http.StatusOK, "v2")
	e.assertDjangoServes(ctx, "v2", string(v2b.ToColor))
	logPhase("database back")
}
