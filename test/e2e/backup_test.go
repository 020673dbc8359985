package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"

	"github.com/deployd/deployd/internal/config"
	"github.com/deployd/deployd/pkg/controller"
)

// The demo image stands in for a pg_dump image (demoapp backup-fake); the
// env file, read at each deploy, makes the second dump empty. A real
// PostgreSQL dump is tested where a PostgreSQL image can be built.
func TestBackup_DemoImageBacksUpBeforeMigrationsAndAnEmptyDumpStopsTheDeploy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v1", "v2")
	t.Cleanup(func() { removeVolumesOf(t, e) })
	envFile := filepath.Join(e.dir, "backup.env")
	if err := os.WriteFile(envFile, []byte("BACKUP_FAKE_BYTES=5000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := defaultSvc()
	cfg.PreDeploy = []string{"migrate"}
	cfg.Backup = &config.Backup{
		Image: repository + ":v1", Command: []string{"backup-fake"}, EnvFile: envFile,
		Volume: e.svc + "-backups", Keep: 2, Timeout: time.Minute,
	}
	d, v1, upstream := activeV1(e, cfg)

	order := []string{controller.StepPull, controller.StepCleanup, controller.StepBackup, controller.StepPreDeploy, controller.StepStart}
	var names []string
	for _, s := range v1.Steps {
		names = append(names, s.Name)
	}
	if len(names) < len(order) || !slices.Equal(names[:len(order)], order) {
		t.Fatalf("steps = %s, want them to begin with %v", stepSummary(v1), order)
	}
	s := findStep(v1, controller.StepBackup)
	if want := "backup " + e.svc + "-" + v1.ID + ".dump, 4.9 KiB"; !strings.HasPrefix(s.Message, want) {
		t.Errorf("backup message = %q, want it to begin with %q", s.Message, want)
	}
	// The demo image has no sh: the backup stands, pruning says it could not run.
	if !strings.Contains(s.Message, "old backups not pruned") {
		t.Errorf("backup message = %q, want it to say the prune could not run in a shell-less image", s.Message)
	}
	if !strings.Contains(s.Output, "(fake) wrote 5000 bytes") {
		t.Errorf("backup output = %q, want the command's stderr", s.Output)
	}

	if err := os.WriteFile(envFile, []byte("BACKUP_FAKE_BYTES=0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dep := d.waitDeployment(d.deploy("v2").ID)
	if dep.Status != controller.StatusFailed || !strings.Contains(dep.Error, "is empty") {
		t.Fatalf("status = %s (%q), want failed on an empty backup", dep.Status, dep.Error)
	}
	if last := lastStep(dep); last.Name != controller.StepBackup || last.Status != controller.StepFailed {
		t.Fatalf("steps = %s, want backup last and failed: pre_deploy must not run", stepSummary(dep))
	}
	assertUntouched(e, v1, upstream, dep.ID)
}

// removeVolumesOf removes the volumes deployd created for e's service.
func removeVolumesOf(t *testing.T, e *env) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := e.cli.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "deployd.service="+e.svc))})
	if err != nil {
		t.Errorf("list volumes: %v", err)
		return
	}
	for _, v := range list.Volumes {
		if err := e.cli.VolumeRemove(ctx, v.Name, true); err != nil {
			t.Errorf("remove volume %s: %v", v.Name, err)
		}
	}
}
