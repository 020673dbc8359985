package trafficswitch

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Switch's collectors. Counters and the latency histogram
// are client_golang vectors whose children each color and service keep
// (a request touches no label map); the gauges are read from the
// Switch's own counters at scrape time, so the request path pays nothing
// for them.
//
//	deployd_switch_requests_total{service,color}            requests forwarded (any answer)
//	deployd_switch_responses_5xx_total{service,color}       of them answered 5xx (replica's or the switch's 502/504)
//	deployd_switch_request_duration_seconds{service,color}  time to the end of the response (upgraded connections not observed)
//	deployd_switch_retries_total{service,color}             attempts retried on a replica
//	deployd_switch_proxy_errors_total{service,color,reason} forwards that failed: dial, timeout, upstream, upgrade, client_gone, aborted
//	deployd_switch_rejected_total{service,reason}           requests answered 503 without a forward: maintenance, hold_limit, hold_timeout, no_targets, shutdown; client_gone (left while held)
//	deployd_switch_in_flight_requests{service,color}        requests in flight (upgraded excluded)
//	deployd_switch_upgraded_connections{service,color}      upgraded (WebSocket) connections open
//	deployd_switch_held_requests{service}                   requests waiting for Resume
//	deployd_switch_paused{service}                          1 while paused
//	deployd_switch_maintenance{service}                     1 while in maintenance
type metrics struct {
	sw *Switch

	requests    *prometheus.CounterVec
	errors5xx   *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	retries     *prometheus.CounterVec
	proxyErrors *prometheus.CounterVec
	rejected    *prometheus.CounterVec

	inFlight, upgraded, held, paused, maint *prometheus.Desc
}

// colorMetrics are one color's children.
type colorMetrics struct {
	requests    prometheus.Counter
	errors5xx   prometheus.Counter
	latency     prometheus.Observer
	retries     prometheus.Counter
	proxyErrors [numReasons]prometheus.Counter
}

// serviceMetrics are one service's children.
type serviceMetrics struct {
	rejected [numRejections]prometheus.Counter
}

// latencyBuckets reach down to half a millisecond: the switch's own cost
// is judged in microseconds.
var latencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

func newMetrics(sw *Switch) *metrics {
	sc := []string{"service", "color"}
	return &metrics{
		sw: sw,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "deployd_switch_requests_total",
			Help: "Requests the traffic switch forwarded, by service and color.",
		}, sc),
		errors5xx: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "deployd_switch_responses_5xx_total",
			Help: "Forwarded requests answered with a 5xx status (the replica's, or the switch's 502/504).",
		}, sc),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "deployd_switch_request_duration_seconds",
			Help:    "Time from a request's arrival at the switch to the end of its response.",
			Buckets: latencyBuckets,
		}, sc),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "deployd_switch_retries_total",
			Help: "Failed forward attempts the switch tried again.",
		}, sc),
		proxyErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "deployd_switch_proxy_errors_total",
			Help: "Requests the switch could not forward or finish, by reason.",
		}, []string{"service", "color", "reason"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "deployd_switch_rejected_total",
			Help: "Requests the switch answered itself with a 503, by reason.",
		}, []string{"service", "reason"}),
		inFlight: prometheus.NewDesc("deployd_switch_in_flight_requests",
			"Requests in flight through the switch, upgraded connections excluded.", sc, nil),
		upgraded: prometheus.NewDesc("deployd_switch_upgraded_connections",
			"Upgraded (WebSocket) connections open through the switch.", sc, nil),
		held: prometheus.NewDesc("deployd_switch_held_requests",
			"Requests held while the service is paused.", []string{"service"}, nil),
		paused: prometheus.NewDesc("deployd_switch_paused",
			"1 while the service is paused.", []string{"service"}, nil),
		maint: prometheus.NewDesc("deployd_switch_maintenance",
			"1 while the service answers with its maintenance page.", []string{"service"}, nil),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.requests, m.errors5xx, m.latency, m.retries, m.proxyErrors, m.rejected, gauges{m}} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *metrics) color(service, color string) colorMetrics {
	cm := colorMetrics{
		requests:  m.requests.WithLabelValues(service, color),
		errors5xx: m.errors5xx.WithLabelValues(service, color),
		latency:   m.latency.WithLabelValues(service, color),
		retries:   m.retries.WithLabelValues(service, color),
	}
	for r := range numReasons {
		cm.proxyErrors[r] = m.proxyErrors.WithLabelValues(service, color, r.String())
	}
	return cm
}

func (m *metrics) service(service string) serviceMetrics {
	var sm serviceMetrics
	for r := range numRejections {
		sm.rejected[r] = m.rejected.WithLabelValues(service, r.String())
	}
	return sm
}

// gauges collects the gauges from the Switch's state at scrape time.
type gauges struct{ m *metrics }

func (g gauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{g.m.inFlight, g.m.upgraded, g.m.held, g.m.paused, g.m.maint} {
		ch <- d
	}
}

func (g gauges) Collect(ch chan<- prometheus.Metric) {
	sw := g.m.sw
	sw.mu.Lock()
	services := make([]*service, 0, len(sw.services))
	for _, s := range sw.services {
		services = append(services, s)
	}
	sw.mu.Unlock()
	for _, s := range services {
		held, paused, maint := 0.0, 0.0, 0.0
		if h := s.hold.Load(); h != nil {
			held, paused = float64(h.held.Load()), 1
		}
		if s.maint.Load() != nil {
			maint = 1
		}
		ch <- prometheus.MustNewConstMetric(g.m.held, prometheus.GaugeValue, held, s.name)
		ch <- prometheus.MustNewConstMetric(g.m.paused, prometheus.GaugeValue, paused, s.name)
		ch <- prometheus.MustNewConstMetric(g.m.maint, prometheus.GaugeValue, maint, s.name)
		s.mu.Lock()
		colors := make([]*colorState, 0, len(s.colors))
		for _, c := range s.colors {
			colors = append(colors, c)
		}
		s.mu.Unlock()
		for _, c := range colors {
			inFlight, upgraded := c.counts()
			ch <- prometheus.MustNewConstMetric(g.m.inFlight, prometheus.GaugeValue, float64(inFlight), s.name, c.name)
			ch <- prometheus.MustNewConstMetric(g.m.upgraded, prometheus.GaugeValue, float64(upgraded), s.name, c.name)
		}
	}
}
