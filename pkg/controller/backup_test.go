package controller_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

const backupImage = "pgtools:16"

// withBackup configures a backup into volume deployd-backups keeping
// keep files, and a pre-deploy command.
func withBackup(keep int) func(*controller.ServiceSpec) {
	return func(s *controller.ServiceSpec) {
		s.PreDeploy = controller.PreDeploySpec{Command: []string{"manage", "migrate"}, Timeout: time.Second}
		s.Backup = &controller.BackupSpec{
			Image:   backupImage,
			Command: controller.DefaultBackupCommand(),
			Env:     map[string]string{"PGHOST": "db", "PGDATABASE": "app"},
			Volume:  "deployd-backups",
			Keep:    keep,
			Timeout: time.Second,
		}
	}
}

func newBackupHarness(t *testing.T, mutate ...func(*controller.ServiceSpec)) *harness {
	t.Helper()
	h := newHarness(t, append([]func(*controller.ServiceSpec){withBackup(5)}, mutate...)...)
	h.rt.set(func(rt *fakeRuntime) { rt.images[backupImage] = true })
	return h
}

// oneOffsNamed returns the one-off specs run whose name contains part.
func (h *harness) oneOffsNamed(part string) []controller.OneOffSpec {
	h.rt.mu.Lock()
	defer h.rt.mu.Unlock()
	var out []controller.OneOffSpec
	for _, o := range h.rt.oneOffs {
		if strings.Contains(o.Name, part) {
			out = append(out, o)
		}
	}
	return out
}

func (h *harness) backupFiles() []string {
	h.rt.mu.Lock()
	defer h.rt.mu.Unlock()
	var out []string
	for f := range h.rt.files {
		out = append(out, f)
	}
	slices.Sort(out)
	return out
}

func TestBackup_RunsBeforePreDeployOnTheServiceNetworkWithTheVolume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		envFile := filepath.Join(t.TempDir(), "backup.env")
		if err := os.WriteFile(envFile, []byte("PGUSER=app\nPGPASSWORD=s3cret-pw\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		h := newBackupHarness(t, func(s *controller.ServiceSpec) {
			s.Backup.EnvFile = envFile
			s.Limits.User = "1000:1000"
			s.Limits.Memory = 256 << 20
		})

		d := h.deployOK("v1")

		want := []string{"pull", "cleanup", "backup", "pre_deploy", "start"}
		if got := stepNames(d); len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
			t.Errorf("steps = %v, want them to begin with %v", got, want)
		}
		file := "web-" + d.ID + ".dump"
		s, _ := findStep(d, controller.StepBackup)
		if wantMsg := "backup " + file + ", 2.4 MiB, kept 1"; s.Status != controller.StepSucceeded || s.Message != wantMsg {
			t.Errorf("backup step = %s %q, want succeeded %q", s.Status, s.Message, wantMsg)
		}
		if s.Output != "ok\n" {
			t.Errorf("backup output = %q, want the command's %q", s.Output, "ok\n")
		}

		runs := h.oneOffsNamed("-backup-")
		if len(runs) != 1 {
			t.Fatalf("backup one-offs = %d, want 1", len(runs))
		}
		o := runs[0]
		wantEnv := []string{"PGDATABASE=app", "PGHOST=db", "PGPASSWORD=s3cret-pw", "PGUSER=app", "DEPLOYD_BACKUP_FILE=/backups/" + file}
		if o.Image != backupImage || o.Network != "deployd" || o.Service != svc || o.Deployment != d.ID ||
			!slices.Equal(o.Command, controller.DefaultBackupCommand()) || !slices.Equal(o.Env, wantEnv) ||
			!slices.Equal(o.Mounts, []controller.VolumeMount{{Volume: "deployd-backups", Target: "/backups"}}) {
			t.Errorf("backup one-off = %+v\nwant image %s on network deployd, volume deployd-backups at /backups, env %v",
				o, backupImage, wantEnv)
		}
		if o.Limits.User != "" || o.Limits.Memory != 256<<20 {
			t.Errorf("backup limits = %+v, want the service's without its user", o.Limits)
		}

		calls := h.rt.callLog()
		order := []string{"RunOneOff web-backup-", "FileSize web-backupcheck-", "RunOneOff web-backupprune-", "RunOneOff web-predeploy-", "StartContainer"}
		last := -1
		for _, prefix := range order {
			i := slices.IndexFunc(calls, func(c string) bool { return strings.HasPrefix(c, prefix) })
			if i <= last {
				t.Fatalf("call log = %v, want %v in that order", calls, order)
			}
			last = i
		}
		for _, e := range h.logs.AllEntries() {
			if line, _ := e.String(); strings.Contains(line, "s3cret-pw") {
				t.Errorf("a log entry holds the password: %s", line)
			}
		}
	})
}

func TestBackup_SkippedWhenNotConfigured(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)

		d := h.deployOK("v1")

		s, ok := findStep(d, controller.StepBackup)
		if !ok || s.Status != controller.StepSkipped || s.Message != "no backup configured" {
			t.Errorf("backup step = %+v, want skipped with \"no backup configured\"", s)
		}
		if n := h.rt.countCalls("FileSize"); n != 0 || len(h.oneOffsNamed("backup")) != 0 {
			t.Errorf("backup one-offs %d, FileSize calls %d; want none", len(h.oneOffsNamed("backup")), n)
		}
	})
}

func TestBackup_KeepsTheNewestFiles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newBackupHarness(t, func(s *controller.ServiceSpec) { s.Backup.Keep = 2 })
		// Another service's files share the volume and are not counted.
		h.rt.set(func(rt *fakeRuntime) { rt.files["/backups/web-api-20200101T000000.000000Z-aaaaaa.dump"] = 9 })

		var ids []string
		var last controller.Deployment
		for _, image := range []string{"v1", "v2", "v3"} {
			last = h.deployOK(image)
			ids = append(ids, last.ID)
		}

		want := []string{"/backups/web-" + ids[1] + ".dump", "/backups/web-" + ids[2] + ".dump",
			"/backups/web-api-20200101T000000.000000Z-aaaaaa.dump"}
		if got := h.backupFiles(); !slices.Equal(got, want) {
			t.Errorf("files in the volume = %v, want %v", got, want)
		}
		if s, _ := findStep(last, controller.StepBackup); !strings.HasSuffix(s.Message, ", kept 2") {
			t.Errorf("backup message = %q, want it to end with \", kept 2\"", s.Message)
		}
		prunes := h.oneOffsNamed("-backupprune-")
		if len(prunes) != 3 {
			t.Fatalf("prune one-offs = %d, want one per deploy", len(prunes))
		}
		if p := prunes[2]; p.Command[0] != "sh" || !slices.Equal(p.Command[4:], []string{"/backups", "web", "2"}) ||
			!slices.Equal(p.Mounts, []controller.VolumeMount{{Volume: "deployd-backups", Target: "/backups"}}) {
			t.Errorf("prune one-off = %+v, want sh with /backups web 2 and the volume", p)
		}
	})
}

// Pruning is housekeeping: the backup is made and checked, so a prune
// that cannot run does not block the deploy, and the step says so.
func TestBackup_FailedPruneIsReportedNotFatal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newBackupHarness(t)
		h.rt.set(func(rt *fakeRuntime) {
			rt.oneOff = func(_ context.Context, spec controller.OneOffSpec) (controller.OneOffResult, error) {
				if strings.Contains(spec.Name, "-backupprune-") {
					return controller.OneOffResult{ExitCode: 127, Output: `exec: "sh": executable file not found`}, nil
				}
				return rt.backupOneOff(spec)
			}
		})

		d := h.deployOK("v1")

		s, _ := findStep(d, controller.StepBackup)
		if missing := containsAll(s.Message, "backup web-"+d.ID+".dump, 2.4 MiB", "old backups not pruned", "code 127"); s.Status != controller.StepSucceeded || len(missing) > 0 {
			t.Errorf("backup step = %s %q, missing %q", s.Status, s.Message, missing)
		}
	})
}

// A backup that fails in any way fails the deploy before a migration
// runs, and leaves the active color and its traffic as they were.
func TestBackup_FailureStopsTheDeployBeforeMigrations(t *testing.T) {
	tests := []struct {
		name string
		// run is the backup command's outcome.
		run        func(ctx context.Context, rt *fakeRuntime, spec controller.OneOffSpec) (controller.OneOffResult, error)
		wantErr    []string
		wantOutput string
		// wantFileGone says the partial file was removed.
		wantFileGone bool
	}{
		{
			name: "command exits non-zero",
			run: func(_ context.Context, rt *fakeRuntime, spec controller.OneOffSpec) (controller.OneOffResult, error) {
				_, _ = rt.backupOneOff(spec) // a partial dump
				return controller.OneOffResult{ExitCode: 1, Output: "pg_dump: error: connection to server failed\n"}, nil
			},
			wantErr:      []string{"backup", "exited with code 1"},
			wantOutput:   "pg_dump: error: connection to server failed\n",
			wantFileGone: true,
		},
		{
			name: "command times out",
			run: func(ctx context.Context, _ *fakeRuntime, _ controller.OneOffSpec) (controller.OneOffResult, error) {
				<-ctx.Done()
				return controller.OneOffResult{}, ctx.Err()
			},
			wantErr: []string{"backup", "timed out after 1s"},
		},
		{
			name: "file is empty",
			run: func(_ context.Context, rt *fakeRuntime, spec controller.OneOffSpec) (controller.OneOffResult, error) {
				rt.set(func(rt *fakeRuntime) { rt.backupSize = 0 })
				return rt.backupOneOff(spec)
			},
			wantErr:      []string{"backup", "is empty"},
			wantFileGone: true,
		},
		{
			name: "no file written",
			run: func(context.Context, *fakeRuntime, controller.OneOffSpec) (controller.OneOffResult, error) {
				return controller.OneOffResult{Output: "nothing to do\n"}, nil
			},
			wantErr: []string{"backup", "wrote no /backups/web-"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newBackupHarness(t)
				h.deployOK("v1")
				h.deployOK("v2") // blue is now the standby
				before := h.snapshot()
				migrations := len(h.oneOffsNamed("-predeploy-"))
				h.rt.set(func(rt *fakeRuntime) {
					rt.oneOff = func(ctx context.Context, spec controller.OneOffSpec) (controller.OneOffResult, error) {
						if strings.Contains(spec.Name, "-backup-") {
							return tt.run(ctx, rt, spec)
						}
						return rt.backupOneOff(spec)
					}
				})

				d := h.deploy("v3")

				if d.Status != controller.StatusFailed {
					t.Fatalf("status = %s (error %q), want failed", d.Status, d.Error)
				}
				if missing := containsAll(d.Error, tt.wantErr...); len(missing) > 0 {
					t.Errorf("error = %q, want it to contain %q", d.Error, missing)
				}
				if got, want := failedSteps(d), []string{controller.StepBackup}; !slices.Equal(got, want) {
					t.Errorf("failed steps = %v, want %v", got, want)
				}
				if _, ran := findStep(d, controller.StepPreDeploy); ran || len(h.oneOffsNamed("-predeploy-")) != migrations {
					t.Errorf("pre_deploy ran after a failed backup (steps %v)", stepStatuses(d))
				}
				if s := diff(h.snapshot(), before); s != "" {
					t.Errorf("active color, its containers or the upstream changed:%s", s)
				}
				if s, _ := findStep(d, controller.StepBackup); tt.wantOutput != "" && s.Output != tt.wantOutput {
					t.Errorf("backup output = %q, want %q", s.Output, tt.wantOutput)
				}
				file := "/backups/web-" + d.ID + ".dump"
				if tt.wantFileGone && slices.Contains(h.backupFiles(), file) {
					t.Errorf("the failed backup's file %s is still in the volume", file)
				}
			})
		})
	}
}

// The backup's env file is read at each deploy, like the service's: a
// broken one fails the deploy before anything is touched, and its values
// are never echoed.
func TestBackup_BadEnvFileFailsBeforeAnythingRunsWithoutEchoingSecrets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		envFile := filepath.Join(t.TempDir(), "backup.env")
		if err := os.WriteFile(envFile, []byte("PGPASSWORD=s3cret-one\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		h := newBackupHarness(t, func(s *controller.ServiceSpec) { s.Backup.EnvFile = envFile })
		h.deployOK("v1")
		before := h.snapshot()
		runs := len(h.oneOffsNamed(""))
		if err := os.WriteFile(envFile, []byte("PGPASSWORD=s3cret-one\nPG PASSWORD s3cret-two\n"), 0o600); err != nil {
			t.Fatal(err)
		}

		d := h.deploy("v2")

		if d.Status != controller.StatusFailed {
			t.Fatalf("status = %s, want failed", d.Status)
		}
		if missing := containsAll(d.Error, "backup", "env file", "line 2"); len(missing) > 0 {
			t.Errorf("error = %q, want it to contain %q", d.Error, missing)
		}
		if len(d.Steps) != 0 || len(h.oneOffsNamed("")) != runs {
			t.Errorf("steps %v ran, %d one-offs; want none", stepStatuses(d), len(h.oneOffsNamed(""))-runs)
		}
		if strings.Contains(d.Error, "s3cret") {
			t.Errorf("error = %q, want no value from the env file in it", d.Error)
		}
		for _, e := range h.logs.AllEntries() {
			if line, _ := e.String(); strings.Contains(line, "s3cret") {
				t.Errorf("log line %q contains a value from the env file", line)
			}
		}
		if s := diff(h.snapshot(), before); s != "" {
			t.Errorf("active color, its containers or the upstream changed:%s", s)
		}
	})
}
