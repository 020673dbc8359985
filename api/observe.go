package api

import (
	"context"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"

	"github.com/deployd/deployd/pkg/auth"
)

// readyTimeout bounds one readiness check: a load balancer or orchestrator
// probing /readyz wants a prompt answer, and a dependency that takes longer
// than this to answer is not ready.
const readyTimeout = 5 * time.Second

// maxReadyReason bounds the reason /readyz shows, which anyone who can reach
// the port may read.
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
// nginx) answer, else 503 with the first reason. Like /healthz it needs no
// token: probes carry none.
func (s *Server) readyz(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), readyTimeout)
	defer cancel()
	if err := s.ctl.Ready(ctx); err != nil {
		reason := err.Error()
		if len(reason) > maxReadyReason {
			reason = reason[:maxReadyReason] + "..."
		}
		s.log.WithFields(requestFields(c)).WithError(err).Warn("not ready")
		return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"status": "unready", "error": reason})
	}
	return c.JSON(fiber.Map{"status": "ready"})
}
