package metrics

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/deployd/deployd/pkg/controller"
)

func at(sec int) time.Time { return time.Date(2026, 1, 1, 0, 0, sec, 0, time.UTC) }

func ptr(t time.Time) *time.Time { return &t }

// oneObservation is the exposition of a step's duration histogram that
// holds one observation of secs, bucket by bucket.
func oneObservation(step string, secs float64) string {
	var b strings.Builder
	for _, le := range []string{"0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "120", "300", "600", "+Inf"} {
		bound, _ := strconv.ParseFloat(le, 64) // "+Inf" parses as +Inf
		n := 0
		if secs <= bound {
			n = 1
		}
		fmt.Fprintf(&b, "deployd_step_duration_seconds_bucket{step=%q,le=%q} %d\n", step, le, n)
	}
	fmt.Fprintf(&b, "deployd_step_duration_seconds_sum{step=%q} %g\n", step, secs)
	fmt.Fprintf(&b, "deployd_step_duration_seconds_count{step=%q} 1\n", step)
	return b.String()
}

func TestDeploymentFinished_CountsByResultAndObservesDurations(t *testing.T) {
	m := New()
	m.DeploymentFinished(controller.Deployment{
		Service: "web", Kind: controller.KindDeploy, Status: controller.StatusSucceeded,
		CreatedAt: at(0), FinishedAt: ptr(at(42)),
		Steps: []controller.Step{
			{Name: controller.StepStart, Status: controller.StepSucceeded, StartedAt: at(1), FinishedAt: ptr(at(3))},
			{Name: controller.StepHealth, Status: controller.StepSucceeded, StartedAt: at(3), FinishedAt: ptr(at(10))},
			{Name: controller.StepPreDeploy, Status: controller.StepSkipped, StartedAt: at(1), FinishedAt: ptr(at(1))},
			{Name: controller.StepSwitch, Status: controller.StepRunning, StartedAt: at(10)},
		},
	})
	m.DeploymentFinished(controller.Deployment{
		Service: "web", Kind: controller.KindDeploy, Status: controller.StatusFailed,
		CreatedAt: at(0), FinishedAt: ptr(at(5)),
	})

	if got := testutil.ToFloat64(m.deployments.WithLabelValues("web", "deploy", "succeeded")); got != 1 {
		t.Fatalf("succeeded deploys = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.deployments.WithLabelValues("web", "deploy", "failed")); got != 1 {
		t.Fatalf("failed deploys = %v, want 1", got)
	}
	if got := testutil.CollectAndCount(m.deploymentDuration); got != 1 {
		t.Fatalf("deployment duration series = %d, want 1", got)
	}
	// start and health observed; the skipped and the unfinished step not.
	if got := testutil.CollectAndCount(m.stepDuration); got != 2 {
		t.Fatalf("step duration series = %d, want 2 (start, health)", got)
	}
	want := "# HELP deployd_step_duration_seconds Time each deployment step took.\n" +
		"# TYPE deployd_step_duration_seconds histogram\n" +
		oneObservation("health", 7) + oneObservation("start", 2)
	if err := testutil.CollectAndCompare(m.stepDuration, strings.NewReader(want)); err != nil {
		t.Fatalf("step durations: %v", err)
	}
}

func TestDeploymentFinished_AutoRollbackOnlyForSuccessfulAutomaticRollbacks(t *testing.T) {
	tests := []struct {
		name   string
		kind   controller.Kind
		source string
		status controller.Status
		want   float64
	}{
		{"watchdog rollback succeeded", controller.KindRollback, "watchdog", controller.StatusSucceeded, 1},
		{"reconciler rollback succeeded", controller.KindRollback, "reconciler", controller.StatusSucceeded, 1},
		{"watchdog rollback failed", controller.KindRollback, "watchdog", controller.StatusFailed, 0},
		{"operator rollback", controller.KindRollback, "api", controller.StatusSucceeded, 0},
		{"watchdog deploy", controller.KindDeploy, "watchdog", controller.StatusSucceeded, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New()
			m.DeploymentFinished(controller.Deployment{
				Service: "web", Kind: tt.kind, Status: tt.status, Trigger: controller.Trigger{Source: tt.source},
			})
			if got := testutil.ToFloat64(m.autoRollbacks.WithLabelValues("web")); got != tt.want {
				t.Fatalf("auto rollbacks = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestServiceState_ActiveColorIsOneAndTheOtherZero(t *testing.T) {
	m := New()
	m.ServiceState("web", controller.Blue, true, true)
	m.ServiceState("web", controller.Green, false, false)
	checks := []struct {
		name string
		got  float64
		want float64
	}{
		{"active green", testutil.ToFloat64(m.activeColor.WithLabelValues("web", "green")), 1},
		{"active blue", testutil.ToFloat64(m.activeColor.WithLabelValues("web", "blue")), 0},
		{"standby", testutil.ToFloat64(m.standbyAvailable.WithLabelValues("web")), 0},
		{"healthy", testutil.ToFloat64(m.serviceHealthy.WithLabelValues("web")), 0},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	m.ServiceState("api", controller.NoColor, false, true)
	if got := testutil.ToFloat64(m.activeColor.WithLabelValues("api", "blue")) + testutil.ToFloat64(m.activeColor.WithLabelValues("api", "green")); got != 0 {
		t.Fatalf("a service with no active color has active colors summing to %v, want 0", got)
	}
}

func TestCounters(t *testing.T) {
	m := New()
	m.HealthCheckFailed("web")
	m.HealthCheckFailed("web")
	m.Repaired("web", "upstream")
	m.NotificationFailed("slack")
	m.Switched("web", controller.KindRollback, 30*time.Millisecond)

	if got := testutil.ToFloat64(m.healthCheckFailures.WithLabelValues("web")); got != 2 {
		t.Errorf("health check failures = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.repairs.WithLabelValues("web", "upstream")); got != 1 {
		t.Errorf("repairs = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.notificationFails.WithLabelValues("slack")); got != 1 {
		t.Errorf("notification failures = %v, want 1", got)
	}
	if got := testutil.CollectAndCount(m.switchDuration, "deployd_switch_duration_seconds"); got != 1 {
		t.Errorf("switch duration series = %d, want 1", got)
	}
}

// A run as long as its interval falls in the interval's bucket, one a
// moment longer in the next: "every run ended within its interval" reads
// off the le bucket of the interval.
func TestJobRan_IntervalLengthRunsFallInTheIntervalsBucket(t *testing.T) {
	m := New()
	m.JobRan("watchdog", time.Second)
	m.JobRan("watchdog", 1100*time.Millisecond)
	m.JobRan("reconcile", 5*time.Second)
	want := `
# HELP deployd_job_duration_seconds Time each run of a scheduled job (watchdog, reconcile, retention) took. A run longer than its job's interval makes the next one be skipped.
# TYPE deployd_job_duration_seconds histogram
`
	for _, job := range []struct {
		name string
		runs []float64
	}{{"reconcile", []float64{5}}, {"watchdog", []float64{1, 1.1}}} {
		sum := 0.0
		for _, le := range []string{"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2", "2.5", "5", "10", "15", "30", "60", "120", "300", "600", "+Inf"} {
			bound, _ := strconv.ParseFloat(le, 64) // "+Inf" parses as +Inf
			n := 0
			for _, r := range job.runs {
				if r <= bound {
					n++
				}
			}
			want += fmt.Sprintf("deployd_job_duration_seconds_bucket{job=%q,le=%q} %d\n", job.name, le, n)
		}
		for _, r := range job.runs {
			sum += r
		}
		want += fmt.Sprintf("deployd_job_duration_seconds_sum{job=%q} %g\n", job.name, sum)
		want += fmt.Sprintf("deployd_job_duration_seconds_count{job=%q} %d\n", job.name, len(job.runs))
	}
	if err := testutil.CollectAndCompare(m.jobDuration, strings.NewReader(want), "deployd_job_duration_seconds"); err != nil {
		t.Fatal(err)
	}
}

func TestInitServices_ExposesZeroCountersBeforeAnyEvent(t *testing.T) {
	m := New()
	m.InitServices([]string{"web", "api"})
	m.InitTargets([]string{"slack"})
	if got := testutil.CollectAndCount(m.autoRollbacks); got != 2 {
		t.Fatalf("auto rollback series = %d, want 2", got)
	}
	if got := testutil.CollectAndCount(m.notificationFails); got != 1 {
		t.Fatalf("notification failure series = %d, want 1", got)
	}
}

func TestHandler_ServesEveryDeploydMetricAndTheRuntimeCollectors(t *testing.T) {
	m := New()
	m.DeploymentFinished(controller.Deployment{Service: "web", Kind: controller.KindDeploy, Status: controller.StatusSucceeded,
		CreatedAt: at(0), FinishedAt: ptr(at(1)), Steps: []controller.Step{{Name: "start", Status: controller.StepSucceeded, StartedAt: at(0), FinishedAt: ptr(at(1))}}})
	m.Switched("web", controller.KindDeploy, time.Millisecond)
	m.HealthCheckFailed("web")
	m.ServiceState("web", controller.Blue, true, true)
	m.Repaired("web", "upstream")
	m.NotificationFailed("hook")
	m.JobRan("watchdog", 40*time.Millisecond)
	m.InitServices([]string{"web"})

	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200", resp.StatusCode)
	}
	body := string(b)
	for _, name := range []string{
		"deployd_deployments_total", "deployd_deployment_duration_seconds_bucket", "deployd_step_duration_seconds_bucket",
		"deployd_switch_duration_seconds_bucket", "deployd_health_check_failures_total", "deployd_active_color",
		"deployd_standby_available", "deployd_service_healthy", "deployd_auto_rollbacks_total",
		"deployd_reconciler_repairs_total", "deployd_notification_failures_total",
		"deployd_job_duration_seconds_bucket", "go_goroutines", "process_start_time_seconds",
	} {
		if !strings.Contains(body, "\n"+name) {
			t.Errorf("exposition lacks %s", name)
		}
	}
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatalf("lint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}
