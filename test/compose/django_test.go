package compose

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"
	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/internal/debimage"
	"github.com/deployd/deployd/internal/testenv"
)

// djangoBackups is the backup volume examples/django/deployd.yml names.
const djangoBackups = "deployd-django-backups"

// The example's .env.example leaves the database password empty: the
// stack refuses to start until it is set, and is valid once it is.
func TestDjangoComposeConfig_IsValidWithEnvExampleOnceThePasswordIsSet(t *testing.T) {
	dc := requireTool(t, "docker-compose")
	dir := filepath.Join(repoRoot(t), "examples", "django")
	args := []string{"--env-file", filepath.Join(dir, ".env.example"), "config", "-q"}
	out, err := runErr(dir, nil, time.Minute, dc, args...)
	if err == nil || !strings.Contains(out, "set POSTGRES_PASSWORD in .env") {
		t.Fatalf("config without a password: %v, output %q; want a failure naming POSTGRES_PASSWORD", err, out)
	}
	run(t, dir, []string{"POSTGRES_PASSWORD=" + randomHex(t)}, time.Minute, dc, args...)
}

// TestDjangoComposeStack_BacksUpMigratesAndGuardsTheContractRollback runs
// examples/django as its README walkthrough does, on the images
// build-images makes: PostgreSQL, switchd, deployd and nginx from the
// example's compose file and deployd.yml, unchanged. Each deploy is backed
// up, migrated and checked through nginx; the rollback across v3's
// dropped column is refused. (test/e2e covers the rest on the same app:
// load, restores, the database going away, the page.)
func TestDjangoComposeStack_BacksUpMigratesAndGuardsTheContractRollback(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the Django example's compose stack; skipped with -short")
	}
	dc := requireTool(t, "docker-compose")
	requireTool(t, "docker")
	cli := testenv.Docker(t)
	requireAbsent(t, cli)
	started := time.Now()

	buildDeploydImage(t)
	buildNginxImage(t)
	examples := djangoImages(t, cli)
	// The backups volume deployd creates is not compose's: down leaves it.
	if _, err := cli.VolumeInspect(context.Background(), djangoBackups); err == nil {
		t.Fatalf("a volume named %s exists already (the example's stack?); remove it first", djangoBackups)
	}
	t.Cleanup(func() { removeVolume(t, cli, djangoBackups) })

	dir := filepath.Join(repoRoot(t), "examples", "django")
	httpPort := testenv.FreePort(t)
	s := &stack{t: t, httpURL: "http://127.0.0.1:" + strconv.Itoa(httpPort), adminToken: randomHex(t), secret: randomHex(t)}
	s.apiURL = s.httpURL
	s.client = &http.Client{Timeout: requestTimeout, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	password := randomHex(t)
	webEnv := filepath.Join(t.TempDir(), "web.env")
	// deployd reads it as uid 65532.
	mustWrite(t, webEnv, "DATABASE_URL=postgres://notes:"+password+"@db:5432/notes\nSECRET_KEY="+randomHex(t)+"\n", 0o644)
	s.up(t, cli, dc, dir, []string{"-f", "docker-compose.yml"}, []string{
		"POSTGRES_PASSWORD=" + password,
		"DEPLOYD_IMAGE=" + deploydCIImage,
		"NGINX_IMAGE=" + nginxCIImage,
		"DEPLOYD_ADMIN_TOKEN=" + s.adminToken,
		"DEPLOYD_CI_TOKEN=" + randomHex(t),
		"DEPLOYD_WEBHOOK_SECRET=" + s.secret,
		"DOCKER_GID=" + dockerSocketGID(t),
		"WEB_ENV_FILE=" + webEnv,
		"NGINX_SITE=http",
		"NGINX_HTTP_PUBLISH=127.0.0.1:" + strconv.Itoa(httpPort),
	})
	t.Logf("images built and stack up in %s", time.Since(started).Round(time.Millisecond))

	var ids []string
	for _, v := range debimage.ExampleVersions {
		id := s.apiDeploy(t, examples[v])
		s.waitDeployment(t, id, "succeeded")
		d := s.deployment(t, id)
		backup := d.step("backup")
		if !strings.HasPrefix(backup, "backup web-"+id+".dump, ") {
			t.Fatalf("%s: backup step %q, want one naming web-%s.dump", v, backup, id)
		}
		s.wantNotes(t, v)
		ids = append(ids, id)
		t.Logf("%s deployed (backup %q, migrations applied %v) at %s", v, backup, d.Schema.Applied, time.Since(started).Round(time.Millisecond))
		if v == "v2" {
			// 0002_add_nickname is an expand change: back to v1 and
			// forward to v2 again, both without a question.
			s.waitDeployment(t, s.rollback(t, false), "succeeded")
			s.wantNotes(t, "v1")
			s.waitDeployment(t, s.rollback(t, false), "succeeded")
			s.wantNotes(t, "v2")
			t.Logf("rolled back to v1 and to v2 again at %s", time.Since(started).Round(time.Millisecond))
		}
	}

	// v3 dropped a column v2 reads: the rollback waits for a confirmation.
	status, body := s.api(t, http.MethodPost, "/api/v1/services/"+service+"/rollback", nil)
	var refusal struct{ Code, Error string }
	if err := json.Unmarshal(body, &refusal); err != nil || status != http.StatusConflict || refusal.Code != "schema_change" ||
		!strings.Contains(refusal.Error, "0003_drop_legacy") {
		t.Fatalf("rollback across 0003_drop_legacy: status %d %s, want %d with code schema_change naming it", status, body, http.StatusConflict)
	}
	s.wantNotes(t, "v3")

	var want []string
	for _, id := range ids {
		want = append(want, "web-"+id+".dump")
	}
	if got := backupFiles(t, dir); !slices.Equal(got, want) {
		t.Fatalf("backups in %s = %v, want %v", djangoBackups, got, want)
	}

	// The README's way back: maintenance, the restore of the dump v3's
	// deploy took before its migration, the confirmed rollback.
	s.maintenance(t, true)
	run(t, dir, nil, 2*time.Minute, "docker", "run", "--rm", "-v", djangoBackups+":/backups", "--network", backendNetwork,
		"--env-file", webEnv, "deployd-postgres:latest",
		"sh", "-c", `pg_restore --clean --if-exists --dbname "$DATABASE_URL" /backups/web-`+ids[2]+`.dump`)
	s.waitDeployment(t, s.rollback(t, true), "succeeded")
	s.maintenance(t, false)
	s.wantNotes(t, "v2")
	t.Logf("restored v3's backup and rolled back to v2, confirmed, at %s", time.Since(started).Round(time.Millisecond))
	t.Logf("whole test %s", time.Since(started).Round(time.Millisecond))
}

// rollback asks for a rollback, confirmed across a schema change or not,
// and returns its deployment's id.
func (s *stack) rollback(t *testing.T, confirm bool) string {
	t.Helper()
	var body []byte
	if confirm {
		body = []byte(`{"confirm_schema_change": true}`)
	}
	status, b := s.api(t, http.MethodPost, "/api/v1/services/"+service+"/rollback", body)
	var d struct{ ID string }
	if err := json.Unmarshal(b, &d); err != nil || status != http.StatusAccepted || d.ID == "" {
		t.Fatalf("rollback (confirmed %v): status %d %s, want %d with an id", confirm, status, b, http.StatusAccepted)
	}
	return d.ID
}

func (s *stack) maintenance(t *testing.T, on bool) {
	t.Helper()
	status, b := s.api(t, http.MethodPost, "/api/v1/services/"+service+"/maintenance", []byte(`{"on": `+strconv.FormatBool(on)+`}`))
	if status != http.StatusOK {
		t.Fatalf("maintenance %v: status %d %s, want %d", on, status, b, http.StatusOK)
	}
}

// djangoImages makes sure the reference images exist (scripts/ensure-deps.sh
// builds them before the tests; this only inspects them then), gives them
// the stable names the example's files use, and returns the example's tag
// per version: "v1-<hash>", the tag part a deploy names.
func djangoImages(t *testing.T, cli *client.Client) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	log := logrus.New()
	log.SetOutput(testWriter{t})
	tags, err := debimage.Build(ctx, cli, debimage.Options{}, log)
	if err != nil {
		t.Fatalf("reference images: %v", err)
	}
	// deployd.yml's backup.image.
	if _, err := debimage.Alias(ctx, cli, tags.Postgres); err != nil {
		t.Fatal(err)
	}
	examples := map[string]string{}
	for _, v := range debimage.ExampleVersions {
		tag, err := debimage.BuildExample(ctx, cli, tags.Django, filepath.Join(repoRoot(t), "examples", "django"), v, log)
		if err != nil {
			t.Fatalf("example %s: %v", v, err)
		}
		examples[v] = tag[strings.LastIndexByte(tag, ':')+1:]
	}
	return examples
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// apiDeploy asks for a deploy of tag with the admin token.
func (s *stack) apiDeploy(t *testing.T, tag string) string {
	t.Helper()
	status, body := s.api(t, http.MethodPost, "/api/v1/services/"+service+"/deployments", []byte(`{"image":"`+tag+`"}`))
	var d struct{ ID string }
	if err := json.Unmarshal(body, &d); err != nil || status != http.StatusAccepted || d.ID == "" {
		t.Fatalf("deploy %s: status %d %s, want %d with an id", tag, status, body, http.StatusAccepted)
	}
	return d.ID
}

type deploymentRecord struct {
	Steps []struct {
		Name, Status, Message string
	}
	Schema struct {
		Applied []string `json:"applied"`
	}
}

func (d deploymentRecord) step(name string) string {
	for _, s := range d.Steps {
		if s.Name == name {
			return s.Message
		}
	}
	return ""
}

func (s *stack) deployment(t *testing.T, id string) deploymentRecord {
	t.Helper()
	status, body := s.api(t, http.MethodGet, "/api/v1/deployments/"+id, nil)
	var d deploymentRecord
	if err := json.Unmarshal(body, &d); err != nil || status != http.StatusOK {
		t.Fatalf("deployment %s: status %d %s (%v)", id, status, body, err)
	}
	return d
}

// wantNotes adds a note through nginx and reads the notes back, both from
// version: the app is up on PostgreSQL behind the example's nginx.
func (s *stack) wantNotes(t *testing.T, version string) {
	t.Helper()
	status, _, body, err := s.do(t, http.MethodPost, s.httpURL+"/notes", "app.localhost", []byte(`{"title":"written by `+version+`"}`),
		map[string]string{"Content-Type": "application/json"})
	if err != nil || status != http.StatusCreated {
		t.Fatalf("POST /notes on %s: status %d %s (%v), want %d", version, status, body, err, http.StatusCreated)
	}
	status, _, body, err = s.do(t, http.MethodGet, s.httpURL+"/notes", "app.localhost", nil, nil)
	var got struct {
		Version string
		Notes   []struct{ Title string }
	}
	if err != nil || status != http.StatusOK || json.Unmarshal(body, &got) != nil {
		t.Fatalf("GET /notes on %s: status %d %s (%v)", version, status, body, err)
	}
	if got.Version != version || len(got.Notes) == 0 || got.Notes[0].Title != "written by "+version {
		t.Fatalf("GET /notes = %s, want version %s with its note first", body, version)
	}
}

// backupFiles lists the backup volume with the PostgreSQL image the
// backups were made with: by name, which is by deployment id, so oldest
// first.
func backupFiles(t *testing.T, dir string) []string {
	t.Helper()
	out := run(t, dir, nil, time.Minute, "docker", "run", "--rm", "--network", "none", "-v", djangoBackups+":/backups:ro",
		"--entrypoint", "ls", "deployd-postgres:latest", "-1", "/backups")
	return strings.Fields(out)
}

func removeVolume(t *testing.T, cli *client.Client, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cli.VolumeInspect(ctx, name); err != nil {
		return
	}
	if err := cli.VolumeRemove(ctx, name, true); err != nil {
		t.Errorf("remove volume %s: %v", name, err)
	}
}
