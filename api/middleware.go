package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/sirupsen/logrus"
)

const headerRequestID = "X-Request-Id"

// RequestID returns the request's id, as sent back in X-Request-Id.
func RequestID(c *fiber.Ctx) string {
	id, _ := c.Locals(localRequestID).(string)
	return id
}

// requestID adopts the client's X-Request-Id when it looks like an id and
// makes one up otherwise, so a log line can never be forged through it.
func (s *Server) requestID(c *fiber.Ctx) error {
	id := c.Get(headerRequestID)
	if !validRequestID(id) {
		id = newRequestID()
	}
	c.Locals(localRequestID, id)
	c.Set(headerRequestID, id)
	return c.Next()
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [16]byte
	// crypto/rand.Read never returns an error (Go 1.24+).
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// requestFields are the log fields that identify a request. The
// Authorization header is deliberately not among them.
func requestFields(c *fiber.Ctx) logrus.Fields {
	f := logrus.Fields{
		"request_id": RequestID(c),
		"method":     c.Method(),
		"path":       c.Path(),
	}
	if n := TokenName(c); n != "" {
		f["token"] = n
	}
	return f
}

// accessLog writes one info line per request. It runs the error handler
// itself, as fiber's logger middleware does, so the line carries the status
// the client gets.
func (s *Server) accessLog(c *fiber.Ctx) error {
	start := time.Now()
	if err := c.Next(); err != nil {
		if herr := s.handleError(c, err); herr != nil {
			s.log.WithFields(requestFields(c)).WithError(herr).Error("write error response")
			c.Status(fiber.StatusInternalServerError)
		}
	}
	s.log.WithFields(requestFields(c)).WithFields(logrus.Fields{
		"status":   c.Response().StatusCode(),
		"duration": time.Since(start).String(),
	}).Info("request")
	return nil
}

func (s *Server) logPanic(c *fiber.Ctx, v any) {
	c.Locals(localPanicked, true)
	s.log.WithFields(requestFields(c)).WithField("stack", string(debug.Stack())).
		Error(fmt.Sprintf("panic in handler: %v", v))
}

// requestContext gives handlers a context that ends with the request's time
// budget. fasthttp's own request context is cancelled as soon as shutdown
// begins, which would abort the in-flight requests Shutdown waits for.
func (s *Server) requestContext(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), requestTimeout)
	defer cancel()
	c.SetUserContext(ctx)
	return c.Next()
}

// securityHeaders sets the headers every response carries; handleError sets
// them too for the requests fiber rejects before any middleware runs.
func (s *Server) securityHeaders(c *fiber.Ctx) error {
	setSecurityHeaders(c)
	return c.Next()
}

// contentSecurityPolicy allows nothing inline and nothing from elsewhere:
// whatever a deploy request put into an actor, commit, image or error text
// stays inert text on the status page even if escaping ever failed.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

func setSecurityHeaders(c *fiber.Ctx) {
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderXFrameOptions, "DENY")
	c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
	c.Set(fiber.HeaderContentSecurityPolicy, contentSecurityPolicy)
	if !hasPathPrefix(c.Path(), "/static") {
		// Deployments, audit entries, pages showing them and CSRF tokens
		// must not linger in shared or browser caches. Static assets hold
		// nothing private; their handler picks their caching.
		c.Set(fiber.HeaderCacheControl, "no-store")
	}
}

// hasPathPrefix reports whether p is prefix or lies below it ("/api/v1"
// but not "/apiary").
func hasPathPrefix(p, prefix string) bool {
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}
