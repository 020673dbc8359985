package api

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/singleflight"

	"github.com/deployd/deployd/pkg/auth"
)

// readyTimeout bounds one readiness check: a load balancer or orchestrator
// probing /readyz wants a prompt answer, and a dependency that takes longer
// than this to answer is not ready.
const readyTimeout = 5 * time.Second

// readyCacheFor is how long a readiness result is reused. The checks run
// `nginx -t` (a process, or a docker exec): without the cache a probe flood
// costs a process per request and starves the API of CPU.
const readyCacheFor = time.Second

// maxReadyReason bounds the reason /readyz shows a viewer.
const maxReadyReason = 300

// observeRoutes registers /readyz and, when a metrics handler is set,
// /metrics.
func (s *Server) observeRoutes(metrics http.Handler, public bool) {
	s.app.Get("/readyz", s.readyz)
	if metrics == nil {
		return
	}
	h := adaptor.HTTPHandler(metrics)
	if public {
		s.app.Get("/metrics", h)
		return
	}
	s.app.Get("/metrics", s.authorize(auth.RoleViewer), h)
}

// readyz answers 200 when the controller's dependencies (store, Docker,
// nginx) answer, else 503. Like /healthz it needs no token: probes carry
// none. Only a caller with a viewer token (or session) is told why it is
// unready: the reasons hold nginx's error text and file paths.
func (s *Server) readyz(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), readyTimeout)
	defer cancel()
	err := s.ready.check(ctx)
	if err == nil {
		return c.JSON(fiber.Map{"status": "ready"})
	}
	body := fiber.Map{"status": "unready"}
	if id, aerr := s.authenticate(c); aerr == nil && id.Role >= auth.RoleViewer {
		reason := err.Error()
		if len(reason) > maxReadyReason {
			reason = reason[:maxReadyReason] + "..."
		}
		body["error"] = reason
	}
	return c.Status(fiber.StatusServiceUnavailable).JSON(body)
}

// readiness runs the readiness checks for every caller of /readyz: at
// most one run at a time, shared by all who ask meanwhile
// (singleflight), and its result reused for ttl after it ends. Safe for
// concurrent use.
type readiness struct {
	run func(context.Context) error
	ttl time.Duration
	now func() time.Time
	log logrus.FieldLogger

	flight singleflight.Group

	mu     sync.Mutex
	done   bool // a run has ended
	at     time.Time
	result error
}

func newReadiness(run func(context.Context) error, ttl time.Duration, now func() time.Time, log logrus.FieldLogger) *readiness {
	return &readiness{run: run, ttl: ttl, now: now, log: log}
}

// cached returns the last result while it is fresh.
func (r *readiness) cached() (err error, fresh bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done && r.now().Sub(r.at) < r.ttl {
		return r.result, true
	}
	return nil, false
}

// check returns the readiness result, running the checks only when the
// last result is stale. A caller whose ctx ends first gets ctx's error;
// the run goes on, bounded by readyTimeout, for the callers still waiting.
func (r *readiness) check(ctx context.Context) error {
	if err, fresh := r.cached(); fresh {
		return err
	}
	ch := r.flight.DoChan("ready", func() (any, error) {
		// A run that ended while this caller waited for the flight is as
		// good as a new one.
		if err, fresh := r.cached(); fresh {
			return nil, err
		}
		// Not the first caller's context: the others share this run.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readyTimeout)
		defer cancel()
		err := r.run(rctx)
		r.record(err)
		return nil, err
	})
	select {
	case res := <-ch:
		return res.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// record keeps a run's result and logs when readiness changes, not on
// every run.
func (r *readiness) record(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	was, had := r.result, r.done
	r.done, r.at, r.result = true, r.now(), err
	switch {
	case err != nil && (!had || was == nil || was.Error() != err.Error()):
		r.log.WithError(err).Warn("not ready")
	case err == nil && had && was != nil:
		r.log.Info("ready again")
	}
}
