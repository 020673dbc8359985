package controller_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

func TestParseSchemaState(t *testing.T) {
	tests := []struct {
		name   string
		output string
		want   []string
	}{
		{name: "empty", output: "", want: nil},
		{name: "django plan", output: "[X]  app.0001_initial\n[X]  notes.0002_add_title\n[ ]  notes.0003_drop_legacy\n",
			want: []string{"app.0001_initial", "notes.0002_add_title"}},
		{name: "lower-case x, CRLF, indented", output: " [x] a.0001_initial\r\n\t[X] b.0001_initial\r\n",
			want: []string{"a.0001_initial", "b.0001_initial"}},
		{name: "nothing applied yet", output: "[ ]  app.0001_initial\n[ ]  app.0002_more\n", want: nil},
		{name: "other lines beside a checklist are ignored",
			output: "Operations:\n[X]  app.0001_initial\nSystem check identified no issues\n",
			want:   []string{"app.0001_initial"}},
		{name: "plain list", output: "app.0001_initial\n\n  app.0002_more  \n", want: []string{"app.0001_initial", "app.0002_more"}},
		{name: "duplicates once", output: "[X] a\n[X] a\n[X] b\n", want: []string{"a", "b"}},
		{name: "empty checked name skipped", output: "[X]\n[X]   \n[X] a\n", want: []string{"a"}},
		{name: "no blank after the box", output: "[Y] a\n[X]b\n", want: []string{"b"}},
		{name: "not a checkbox", output: "[Y] a\n[]\n", want: []string{"[Y] a", "[]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := controller.ParseSchemaState(tt.output)
			if !slices.Equal(got.Applied, tt.want) {
				t.Errorf("applied = %q, want %q", got.Applied, tt.want)
			}
			if len(got.Version) != 12 {
				t.Errorf("version = %q, want 12 hex digits", got.Version)
			}
		})
	}
}

func TestParseSchemaState_VersionIgnoresOrder(t *testing.T) {
	a := controller.ParseSchemaState("[X] a\n[X] b\n")
	b := controller.ParseSchemaState("[X] b\n[ ] c\n[X] a\n")
	c := controller.ParseSchemaState("[X] a\n")
	if a.Version != b.Version {
		t.Errorf("versions of the same set = %q, %q, want equal", a.Version, b.Version)
	}
	if a.Version == c.Version {
		t.Errorf("versions of different sets are both %q", a.Version)
	}
}

func FuzzParseSchemaState(f *testing.F) {
	f.Add("[X]  app.0001_initial\n[ ]  app.0002_x\n")
	f.Add("a\nb\n")
	f.Add("[x]\r\n [X] \xff\n")
	f.Fuzz(func(t *testing.T, output string) {
		got := controller.ParseSchemaState(output)
		if len(got.Version) != 12 {
			t.Fatalf("version = %q, want 12 hex digits", got.Version)
		}
		seen := map[string]bool{}
		for _, name := range got.Applied {
			if name == "" || name != strings.TrimSpace(name) || strings.Contains(name, "\n") || seen[name] {
				t.Fatalf("applied = %q: empty, untrimmed, multi-line or repeated name %q", got.Applied, name)
			}
			seen[name] = true
		}
		if again := controller.ParseSchemaState(output); !reflect.DeepEqual(again, got) {
			t.Fatalf("parse is not deterministic: %+v then %+v", got, again)
		}
	})
}

// fakeDjango stands in for a Django app's migrations across images: each
// image knows its migrations, "migrate" applies them to the one shared
// database, "showmigrations" prints the plan as Django does.
type fakeDjango struct {
	mu         sync.Mutex
	migrations map[string][]string // by image
	applied    map[string]bool
	// failShow makes showmigrations exit 1 in these images, from their
	// nth run on (1-based).
	failShow map[string]int
	shows    map[string]int
}

var (
	migrateCmd = []string{"python3", "manage.py", "migrate"}
	showCmd    = []string{"python3", "manage.py", "showmigrations", "--plan"}
)

func newFakeDjango() *fakeDjango {
	v1 := []string{"app.0001_initial"}
	v2 := append(slices.Clone(v1), "notes.0002_add_title")
	v3 := append(slices.Clone(v2), "notes.0003_drop_legacy")
	return &fakeDjango{
		migrations: map[string][]string{"demoapp:v1": v1, "demoapp:v2": v2, "demoapp:v3": v3},
		applied:    map[string]bool{},
		failShow:   map[string]int{},
		shows:      map[string]int{},
	}
}

func (db *fakeDjango) run(_ context.Context, spec controller.OneOffSpec) (controller.OneOffResult, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	switch {
	case slices.Equal(spec.Command, migrateCmd):
		var out strings.Builder
		for _, m := range db.migrations[spec.Image] {
			if !db.applied[m] {
				db.applied[m] = true
				fmt.Fprintf(&out, "  Applying %s... OK\n", m)
			}
		}
		return controller.OneOffResult{Output: out.String()}, nil
	case slices.Equal(spec.Command, showCmd):
		db.shows[spec.Image]++
		if n := db.failShow[spec.Image]; n > 0 && db.shows[spec.Image] >= n {
			return controller.OneOffResult{ExitCode: 1, Output: "django.db.utils.OperationalError: no such table\n"}, nil
		}
		var out strings.Builder
		for _, m := range db.migrations[spec.Image] {
			mark := " "
			if db.applied[m] {
				mark = "X"
			}
			fmt.Fprintf(&out, "[%s]  %s\n", mark, m)
		}
		return controller.OneOffResult{Output: out.String()}, nil
	}
	return controller.OneOffResult{ExitCode: 127, Output: "unknown command\n"}, nil
}

// expandOnly is the compatible pattern of these tests: notes.0002_add_title
// matches it, notes.0003_drop_legacy does not.
const expandOnly = `^[a-z_]+\.\d{4}_add_`

// newSchemaHarness is a harness whose service migrates in pre_deploy and
// reads its schema with showmigrations, against a fakeDjango.
func newSchemaHarness(t *testing.T, mutate ...func(*controller.ServiceSpec)) (*harness, *fakeDjango) {
	t.Helper()
	h := newHarness(t, append([]func(*controller.ServiceSpec){func(s *controller.ServiceSpec) {
		s.PreDeploy = controller.PreDeploySpec{Command: migrateCmd, Timeout: time.Second}
		s.Schema = controller.SchemaSpec{Command: showCmd, Timeout: time.Second, Compatible: expandOnly}
	}}, mutate...)...)
	db := newFakeDjango()
	h.rt.set(func(rt *fakeRuntime) { rt.oneOff = db.run })
	return h, db
}

func TestDeploy_RecordsSchemaAndWhatPreDeployMigrated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := newSchemaHarness(t)
		v1 := h.deployOK("v1")
		wantSteps := []string{controller.StepPull, controller.StepCleanup, controller.StepBackup, controller.StepSchemaBefore,
			controller.StepPreDeploy, controller.StepSchemaAfter, controller.StepStart}
		if got := stepNames(v1); !slices.Equal(got[:len(wantSteps)], wantSteps) {
			t.Errorf("steps = %v, want them to begin with %v", got, wantSteps)
		}
		if v1.Schema == nil || !slices.Equal(v1.Schema.Applied, []string{"app.0001_initial"}) ||
			!slices.Equal(v1.Schema.Migrated, []string{"app.0001_initial"}) {
			t.Fatalf("v1 schema = %+v, want app.0001_initial applied and migrated", v1.Schema)
		}
		v2 := h.deployOK("v2")
		if want := []string{"app.0001_initial", "notes.0002_add_title"}; v2.Schema == nil || !slices.Equal(v2.Schema.Applied, want) ||
			!slices.Equal(v2.Schema.Migrated, []string{"notes.0002_add_title"}) {
			t.Fatalf("v2 schema = %+v, want %v applied, notes.0002_add_title migrated", v2.Schema, want)
		}
		if v2.Schema.Version == v1.Schema.Version {
			t.Errorf("v1 and v2 share schema version %q", v1.Schema.Version)
		}
		s, _ := findStep(v2, controller.StepSchemaAfter)
		if !strings.Contains(s.Message, "applied notes.0002_add_title") || !strings.Contains(s.Output, "[X]  notes.0002_add_title") {
			t.Errorf("schema_after step = %q with output %q, want the migration named", s.Message, s.Output)
		}
		// What the store keeps is what a rollback judges by.
		if stored := h.stored(v2.ID); !reflect.DeepEqual(stored.Schema, v2.Schema) {
			t.Errorf("stored schema = %+v, want %+v", stored.Schema, v2.Schema)
		}
		if v := h.view(); v.RollbackSchema == nil || v.RollbackSchema.Breaking {
			t.Errorf("view rollback schema = %+v, want a compatible change", v.RollbackSchema)
		}
	})
}

func TestDeploy_WithoutSchemaCommandRecordsNoSchemaSteps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		d := h.deployOK("v1")
		for _, name := range []string{controller.StepSchemaBefore, controller.StepSchemaAfter} {
			if _, ok := findStep(d, name); ok {
				t.Errorf("steps = %v, want no %s", stepNames(d), name)
			}
		}
		if d.Schema != nil {
			t.Errorf("schema = %+v, want nil", d.Schema)
		}
	})
}

func TestDeploy_FailingSchemaCommandLeavesActiveColor(t *testing.T) {
	tests := []struct {
		name string
		// failFrom is the run of v2's showmigrations that fails first.
		failFrom   int
		failedStep string
		wantMigrat bool
	}{
		{name: "before pre_deploy", failFrom: 1, failedStep: controller.StepSchemaBefore},
		{name: "after pre_deploy", failFrom: 2, failedStep: controller.StepSchemaAfter, wantMigrat: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h, db := newSchemaHarness(t)
				h.deployOK("v1")
				before := h.snapshot()
				db.mu.Lock()
				db.failShow["demoapp:v2"] = tt.failFrom
				db.mu.Unlock()

				d := h.deploy("v2")

				if d.Status != controller.StatusFailed {
					t.Fatalf("status = %s, want failed", d.Status)
				}
				if last := d.Steps[len(d.Steps)-1]; last.Name != tt.failedStep || last.Status != controller.StepFailed {
					t.Fatalf("steps = %v, want %s last and failed", stepStatuses(d), tt.failedStep)
				}
				for _, want := range []string{tt.failedStep, `"python3 manage.py showmigrations --plan"`, "exited with code 1"} {
					if !strings.Contains(d.Error, want) {
						t.Errorf("error = %q, want it to contain %q", d.Error, want)
					}
				}
				if s, _ := findStep(d, tt.failedStep); !strings.Contains(s.Output, "OperationalError") {
					t.Errorf("%s output = %q, want the command's output", tt.failedStep, s.Output)
				}
				if _, ran := findStep(d, controller.StepPreDeploy); ran != tt.wantMigrat {
					t.Errorf("pre_deploy ran = %v, want %v", ran, tt.wantMigrat)
				}
				if after := h.snapshot(); !reflect.DeepEqual(after, before) {
					t.Errorf("after the failed deploy:\n%+v\nwant as before:\n%+v", after, before)
				}
			})
		})
	}
}

func TestRollback_RefusedAcrossBreakingSchemaChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := newSchemaHarness(t)
		h.deployOK("v2")
		h.deployOK("v3")
		before := h.snapshot()
		nDeployments := h.deploymentCount()

		_, err := h.c.Rollback(h.ctx(), svc, controller.RollbackRequest{Trigger: controller.Trigger{Source: "test"}})

		wantCode(t, err, controller.ESCHEMACHANGE)
		want := "web's active demoapp:v3 applied notes.0003_drop_legacy; the standby demoapp:v2 ran against the old schema " +
			"and may fail. Roll back with confirm_schema_change to do it anyway."
		if got := controller.ErrorMessage(err); got != want {
			t.Errorf("message = %q, want %q", got, want)
		}
		if n := h.deploymentCount(); n != nDeployments {
			t.Errorf("deployments = %d, want %d: a refused rollback records nothing", n, nDeployments)
		}
		if after := h.snapshot(); !reflect.DeepEqual(after, before) {
			t.Errorf("a refused rollback changed the service:\n%+v\nwant\n%+v", after, before)
		}
		v := h.view()
		if ch := v.RollbackSchema; ch == nil || !ch.Breaking || !slices.Equal(ch.Migrations, []string{"notes.0003_drop_legacy"}) || ch.Message != want {
			t.Errorf("view rollback schema = %+v, want the breaking change", ch)
		}
	})
}

func TestRollback_ConfirmedCrossesBreakingSchemaChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := newSchemaHarness(t)
		h.deployOK("v2")
		h.deployOK("v3")

		d, err := h.c.Rollback(h.ctx(), svc, controller.RollbackRequest{
			Trigger: controller.Trigger{Source: "api", Actor: "alice"}, ConfirmSchemaChange: true,
		})
		if err != nil {
			t.Fatalf("Rollback: %v", err)
		}
		d = h.wait(d.ID)
		synctest.Wait()

		if d.Status != controller.StatusSucceeded {
			t.Fatalf("status = %s (%q), want succeeded", d.Status, d.Error)
		}
		if st := h.store.service(svc); st.ActiveImage != "demoapp:v2" {
			t.Errorf("active image = %s, want demoapp:v2", st.ActiveImage)
		}
		if ch := d.SchemaChange; ch == nil || !ch.Breaking || !ch.Confirmed || !slices.Equal(ch.Migrations, []string{"notes.0003_drop_legacy"}) {
			t.Errorf("rollback's schema change = %+v, want the breaking change, confirmed", ch)
		}
		notes := h.notes.ofKind(controller.NotifyRolledBack)
		if len(notes) != 1 || !strings.Contains(notes[0].Message, "across a breaking schema change, confirmed by alice (notes.0003_drop_legacy)") {
			t.Errorf("rolled-back notifications = %+v, want one saying the schema change was confirmed", notes)
		}
	})
}

func TestRollback_CompatibleMigrationsNeedNoConfirmation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := newSchemaHarness(t)
		h.deployOK("v1")
		h.deployOK("v2")

		d := h.rollback()

		if d.Status != controller.StatusSucceeded {
			t.Fatalf("status = %s (%q), want succeeded", d.Status, d.Error)
		}
		if ch := d.SchemaChange; ch == nil || ch.Breaking || ch.Confirmed || !slices.Equal(ch.Migrations, []string{"notes.0002_add_title"}) {
			t.Errorf("rollback's schema change = %+v, want notes.0002_add_title, compatible", ch)
		}
		wantRolledBack(t, h)
		// Back on v1, the standby v2 has everything v1 applied.
		if v := h.view(); v.RollbackSchema != nil {
			t.Errorf("view rollback schema after the rollback = %+v, want nil", v.RollbackSchema)
		}
	})
}

func TestRollback_WithoutCompatiblePatternEveryMigrationBreaks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := newSchemaHarness(t, func(s *controller.ServiceSpec) { s.Schema.Compatible = "" })
		h.deployOK("v1")
		h.deployOK("v2")
		_, err := h.c.Rollback(h.ctx(), svc, controller.RollbackRequest{})
		wantCode(t, err, controller.ESCHEMACHANGE)
	})
}

func TestAutoRollback_NeverCrossesBreakingSchemaChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := newSchemaHarness(t, func(s *controller.ServiceSpec) { s.AutoRollback = true })
		h.deployOK("v2")
		h.deployOK("v3")
		h.failColor(controller.Green)

		h.watchRounds(testWatch.UnhealthyThreshold + 2)
		h.reconcileQuiet()
		synctest.Wait()

		if rbs := h.rollbacks(); len(rbs) != 0 {
			t.Fatalf("rollbacks = %d, want none across the breaking schema change", len(rbs))
		}
		notes := h.notes.ofKind(controller.NotifyServiceUnhealthy)
		want := "; no automatic rollback: the standby demoapp:v2 ran against the old schema (notes.0003_drop_legacy applied since)"
		if len(notes) != 1 || !strings.HasSuffix(notes[0].Message, want) {
			t.Fatalf("unhealthy notifications = %+v, want one ending %q", notes, want)
		}
		if st := h.store.service(svc); st.ActiveColor != controller.Green || st.ActiveImage != "demoapp:v3" {
			t.Errorf("active = %s %s, want green demoapp:v3 untouched", st.ActiveColor, st.ActiveImage)
		}
	})
}

func TestAutoRollback_CrossesCompatibleSchemaChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := newSchemaHarness(t, func(s *controller.ServiceSpec) { s.AutoRollback = true })
		h.deployOK("v1")
		h.deployOK("v2")
		h.killColor(controller.Green)

		h.watchRounds(testWatch.UnhealthyThreshold)

		wantOneAutoRollback(t, h, "watchdog")
		if rb := h.rollbacks()[0]; rb.SchemaChange == nil || rb.SchemaChange.Breaking {
			t.Errorf("rollback's schema change = %+v, want the compatible one", rb.SchemaChange)
		}
	})
}
