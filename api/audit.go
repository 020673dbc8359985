package api

import (
	"context"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/pkg/controller"
)

const (
	defaultAuditLimit = 100
	maxAuditLimit     = 1000
	// auditTimeout bounds writing one entry after the response is decided;
	// it does not depend on the request's own budget, which may be spent.
	auditTimeout = 5 * time.Second
	// maxTargetLen keeps a hostile path from bloating the trail.
	maxTargetLen = 256
)

// paramTarget names the audited target by a route parameter.
func paramTarget(name string) func(*fiber.Ctx) string {
	return func(c *fiber.Ctx) string { return c.Params(name) }
}

// audit records one audit entry per request on a state-changing route,
// after the handler and the middleware after it ran, refusals by a known
// token included. A request refused before anyone was known to send it
// goes to the controller without an actor, which counts it instead.
// target names what was acted on; nil means the handler sets localTarget.
// It writes error responses itself so that the entry has the final status.
func (s *Server) audit(action string, target func(*fiber.Ctx) string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		defer func() {
			if v := recover(); v != nil {
				// A panic is a 500 the recover middleware answers; record
				// it before passing it on.
				s.recordAudit(c, action, target, fiber.StatusInternalServerError, controller.EINTERNAL, "")
				panic(v)
			}
		}()
		err := c.Next()
		result, depID := "ok", ""
		if id, ok := c.Locals(localDeploymentID).(string); ok {
			depID = id
		}
		if err != nil {
			_, body := s.classify(c, err)
			result = body.Code
			if depID == "" {
				depID = body.DeploymentID
			}
			if herr := s.handleError(c, err); herr != nil {
				return herr
			}
		}
		status := c.Response().StatusCode()
		if err == nil && status >= fiber.StatusBadRequest {
			result = codeForStatus(status)
		}
		s.recordAudit(c, action, target, status, result, depID)
		return nil
	}
}

func (s *Server) recordAudit(c *fiber.Ctx, action string, target func(*fiber.Ctx) string, status int, result, depID string) {
	if a, ok := c.Locals(localAction).(string); ok && a != "" {
		action = a
	}
	e := controller.AuditEntry{
		Time:         s.now().UTC(),
		Actor:        auditActor(c),
		Action:       action,
		Address:      c.IP(),
		Result:       result,
		Status:       status,
		DeploymentID: depID,
		RequestID:    RequestID(c),
	}
	if target != nil {
		e.Target = target(c)
	} else if t, ok := c.Locals(localTarget).(string); ok {
		e.Target = t
	}
	if len(e.Target) > maxTargetLen {
		e.Target = e.Target[:maxTargetLen]
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.UserContext()), auditTimeout)
	defer cancel()
	if err := s.ctl.RecordAudit(ctx, e); err != nil {
		// The response is decided and maybe a deployment started; losing
		// the entry must at least be loud.
		s.log.WithFields(requestFields(c)).WithFields(logrus.Fields{
			"action": action, "actor": e.Actor, "result": result, "deployment": depID,
		}).WithError(err).Error("record audit entry")
	}
}

// auditActor is the token's name, else who the handler says acted (a
// verified webhook delivery, or whose session cookie a refused request
// carried), else "": nobody known.
func auditActor(c *fiber.Ctx) string {
	if n := TokenName(c); n != "" {
		return n
	}
	a, _ := c.Locals(localActor).(string)
	return a
}

// listAudit is GET /api/v1/audit: a page of entries, newest first, older
// than ?before= when given, and next, the before of the following page,
// when the page is full.
func (s *Server) listAudit(c *fiber.Ctx) error {
	limit := defaultAuditLimit
	if raw := c.Query("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > maxAuditLimit {
			return controller.Errorf(controller.EINVALID, "limit must be an integer from 1 to %d, got %q", maxAuditLimit, raw)
		}
		limit = n
	}
	es, err := s.ctl.AuditBefore(c.UserContext(), c.Query("before"), limit)
	if err != nil {
		return err
	}
	out := AuditList{Entries: make([]AuditEntry, 0, len(es))}
	for _, e := range es {
		out.Entries = append(out.Entries, auditEntryOf(e))
	}
	// A full page may have older entries behind it; the page after the
	// last one is empty and has no next.
	if len(es) == limit {
		out.Next = es[len(es)-1].ID
	}
	return c.JSON(out)
}
