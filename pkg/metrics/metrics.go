// Package metrics records what the controller does as Prometheus metrics
// and serves them.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/deployd/deployd/pkg/controller"
)

// Metrics holds deployd's collectors in a registry of its own, so tests and
// several daemons in one process never collide. It is safe for concurrent
// use; its methods never block.
type Metrics struct {
	reg *prometheus.Registry

	deployments         *prometheus.CounterVec
	deploymentDuration  *prometheus.HistogramVec
	stepDuration        *prometheus.HistogramVec
	switchDuration      *prometheus.HistogramVec
	healthCheckFailures *prometheus.CounterVec
	activeColor         *prometheus.GaugeVec
	standbyAvailable    *prometheus.GaugeVec
	serviceHealthy      *prometheus.GaugeVec
	autoRollbacks       *prometheus.CounterVec
	repairs             *prometheus.CounterVec
	notificationFails   *prometheus.CounterVec
	switchdUp           prometheus.Gauge
	switchdRespawns     prometheus.Counter
	unaudited           *prometheus.CounterVec
	jobDuration         *prometheus.HistogramVec
}

var _ controller.Observer = (*Metrics)(nil)

// New returns Metrics with deployd's metrics and the Go and process
// collectors registered.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		deployments: counter("deployd_deployments_total",
			"Finished deployments by service, kind (deploy, rollback) and result (their final status).",
			"service", "kind", "result"),
		deploymentDuration: histogram("deployd_deployment_duration_seconds",
			"Time from a deployment's creation to its end.",
			// Deploys wait on image pulls, migrations and health checks:
			// seconds to tens of minutes.
			[]float64{1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800},
			"service", "kind"),
		stepDuration: histogram("deployd_step_duration_seconds",
			"Time each deployment step took.",
			[]float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
			"step"),
		switchDuration: histogram("deployd_switch_duration_seconds",
			"Time a traffic switch (upstream write, config test, reload, confirmation) took, by kind.",
			// A switch is an nginx reload: milliseconds, seconds when slow.
			[]float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
			"service", "kind"),
		healthCheckFailures: counter("deployd_health_check_failures_total",
			"Failed health probes of a service's replicas.", "service"),
		activeColor: gauge("deployd_active_color",
			"1 for the color that serves a service's traffic, 0 for the other.", "service", "color"),
		standbyAvailable: gauge("deployd_standby_available",
			"1 when a service has a warm standby color to roll back to.", "service"),
		serviceHealthy: gauge("deployd_service_healthy",
			"1 when the watchdog last found the service's active color healthy.", "service"),
		autoRollbacks: counter("deployd_auto_rollbacks_total",
			"Rollbacks deployd made by itself (watchdog or reconciler) that succeeded.", "service"),
		repairs: counter("deployd_reconciler_repairs_total",
			"Repairs the reconciler made, by kind.", "service", "kind"),
		notificationFails: counter("deployd_notification_failures_total",
			"Notifications a target did not get (refused after retries, or dropped).", "target"),
		switchdUp: prometheus.NewGauge(prometheus.GaugeOpts{Name: "deployd_switchd_up",
			Help: "1 while the traffic switch process (switch mode) answers the daemon, 0 when it does not."}),
		switchdRespawns: prometheus.NewCounter(prometheus.CounterOpts{Name: "deployd_switchd_restarts_total",
			Help: "Times the daemon started the traffic switch process again after it stopped answering."}),
		unaudited: counter("deployd_unaudited_requests_total",
			"Requests to audited routes refused before anyone was known to have sent them (no valid credentials, "+
				"bad webhook signature, rate limited): counted here instead of written to the audit trail.",
			"action", "status"),
		jobDuration: histogram("deployd_job_duration_seconds",
			"Time each run of a scheduled job (watchdog, reconcile, retention) took. A run longer than its "+
				"job's interval makes the next one be skipped.",
			// Dense up to the intervals operators set (1 s to minutes), so
			// that "every run ended within its interval" can be read off a
			// bucket when the interval is one of these bounds.
			[]float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 2.5, 5, 10, 15, 30, 60, 120, 300, 600},
			"job"),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.deployments, m.deploymentDuration, m.stepDuration, m.switchDuration,
		m.healthCheckFailures, m.activeColor, m.standbyAvailable, m.serviceHealthy,
		m.autoRollbacks, m.repairs, m.notificationFails, m.switchdUp, m.switchdRespawns, m.unaudited,
		m.jobDuration,
	)
	return m
}

// InitServices creates the per-service counters at zero, so that rate and
// increase queries (and alerts on them) see a series before the first
// event rather than none.
func (m *Metrics) InitServices(services []string) {
	for _, s := range services {
		m.healthCheckFailures.WithLabelValues(s)
		m.autoRollbacks.WithLabelValues(s)
	}
}

// InitTargets does what InitServices does for notification targets.
func (m *Metrics) InitTargets(targets []string) {
	for _, t := range targets {
		m.notificationFails.WithLabelValues(t)
	}
}

// DeploymentFinished counts d by its final status and records its duration
// and its finished steps' durations. A successful rollback the watchdog
// started also counts as an automatic rollback.
func (m *Metrics) DeploymentFinished(d controller.Deployment) {
	kind := string(d.Kind)
	m.deployments.WithLabelValues(d.Service, kind, d.Status.String()).Inc()
	if d.FinishedAt != nil && !d.CreatedAt.IsZero() {
		m.deploymentDuration.WithLabelValues(d.Service, kind).Observe(seconds(d.FinishedAt.Sub(d.CreatedAt)))
	}
	for _, s := range d.Steps {
		if s.FinishedAt == nil || s.Status == controller.StepSkipped || s.StartedAt.IsZero() {
			continue
		}
		m.stepDuration.WithLabelValues(s.Name).Observe(seconds(s.FinishedAt.Sub(s.StartedAt)))
	}
	if d.Kind == controller.KindRollback && d.Trigger.Automatic() && d.Status == controller.StatusSucceeded {
		m.autoRollbacks.WithLabelValues(d.Service).Inc()
	}
}

// Switched records a traffic switch's duration.
func (m *Metrics) Switched(service string, kind controller.Kind, took time.Duration) {
	m.switchDuration.WithLabelValues(service, string(kind)).Observe(seconds(took))
}

// HealthCheckFailed counts one failed probe.
func (m *Metrics) HealthCheckFailed(service string) {
	m.healthCheckFailures.WithLabelValues(service).Inc()
}

// ServiceState publishes a service's active color (both colors' series, so
// the old one drops to 0), standby availability and health.
func (m *Metrics) ServiceState(service string, active controller.Color, standbyAvailable, healthy bool) {
	for _, c := range []controller.Color{controller.Blue, controller.Green} {
		m.activeColor.WithLabelValues(service, string(c)).Set(boolValue(c == active))
	}
	m.standbyAvailable.WithLabelValues(service).Set(boolValue(standbyAvailable))
	m.serviceHealthy.WithLabelValues(service).Set(boolValue(healthy))
}

// Repaired counts one reconciler repair.
func (m *Metrics) Repaired(service, kind string) {
	m.repairs.WithLabelValues(service, kind).Inc()
}

// Unaudited counts a refused request that the audit trail does not record.
func (m *Metrics) Unaudited(action string, status int) {
	m.unaudited.WithLabelValues(action, strconv.Itoa(status)).Inc()
}

// NotificationFailed counts a notification target did not get; it fits
// notify.New's onFailure.
func (m *Metrics) NotificationFailed(target string) {
	m.notificationFails.WithLabelValues(target).Inc()
}

// SwitchdUp records whether the traffic switch process answers.
func (m *Metrics) SwitchdUp(up bool) { m.switchdUp.Set(boolValue(up)) }

// SwitchdRespawned counts one restart of the traffic switch process.
func (m *Metrics) SwitchdRespawned() { m.switchdRespawns.Inc() }

// JobRan records how long one run of a scheduled job took.
func (m *Metrics) JobRan(job string, took time.Duration) {
	m.jobDuration.WithLabelValues(job).Observe(seconds(took))
}

// Handler serves the registry in the Prometheus exposition format, and
// with it what extra gathers (the traffic switch process's metrics). When
// one of extra fails the rest is still served; the failure is logged to
// the registry's error counter.
func (m *Metrics) Handler(extra ...prometheus.Gatherer) http.Handler {
	g := append(prometheus.Gatherers{m.reg}, extra...)
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{Registry: m.reg, ErrorHandling: promhttp.ContinueOnError})
}

// Registry is the registry behind Handler, for tests and extra collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

func counter(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

func gauge(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
}

func histogram(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
}

func seconds(d time.Duration) float64 {
	if d < 0 {
		return 0
	}
	return d.Seconds()
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
