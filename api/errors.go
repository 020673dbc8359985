package api

import (
	"errors"
	"fmt"

	"github.com/gofiber/fiber/v2"

	"github.com/deployd/deployd/pkg/controller"
)

// The API's own codes: a known path asked with the wrong method, and a
// client refused for too many failed webhook signatures. Every other code
// is the controller's.
const (
	codeMethodNotAllowed = "method_not_allowed"
	codeRateLimited      = "rate_limited"
)

// codeStatus is the one map from error code to HTTP status.
var codeStatus = map[string]int{
	controller.EINVALID:      fiber.StatusBadRequest,
	controller.EUNAUTHORIZED: fiber.StatusUnauthorized,
	controller.EFORBIDDEN:    fiber.StatusForbidden,
	controller.ENOTFOUND:     fiber.StatusNotFound,
	codeMethodNotAllowed:     fiber.StatusMethodNotAllowed,
	controller.ECONFLICT:     fiber.StatusConflict,
	controller.ESCHEMACHANGE: fiber.StatusConflict,
	codeRateLimited:          fiber.StatusTooManyRequests,
	controller.EUNAVAILABLE:  fiber.StatusServiceUnavailable,
	controller.EINTERNAL:     fiber.StatusInternalServerError,
}

// StatusOf returns the HTTP status for err's code, so that pages served
// beside the API answer with the same statuses.
func StatusOf(err error) int {
	if status, ok := codeStatus[controller.ErrorCode(err)]; ok {
		return status
	}
	return fiber.StatusInternalServerError
}

// errorBody is the JSON of every error response.
type errorBody struct {
	Error        string `json:"error"`
	Code         string `json:"code"`
	DeploymentID string `json:"deployment_id,omitempty"`
}

// handleError is fiber's ErrorHandler: it turns any error a handler returns
// into the API's error JSON.
func (s *Server) handleError(c *fiber.Ctx, err error) error {
	if RequestID(c) == "" {
		// Fiber calls this directly, past the middleware, for requests it
		// rejects while reading them (oversized bodies, timeouts).
		id := newRequestID()
		c.Locals(localRequestID, id)
		c.Set(headerRequestID, id)
		setSecurityHeaders(c)
	}
	status, body := s.classify(c, err)
	if status == fiber.StatusUnauthorized {
		c.Set(fiber.HeaderWWWAuthenticate, authScheme(c))
	}
	if status >= fiber.StatusInternalServerError {
		s.log.WithFields(requestFields(c)).WithError(err).Error("request failed")
	}
	return c.Status(status).JSON(body)
}

func (s *Server) classify(c *fiber.Ctx, err error) (int, errorBody) {
	if panicked, _ := c.Locals(localPanicked).(bool); panicked {
		// A panic value may itself be a *controller.Error; it is still a bug.
		return fiber.StatusInternalServerError, errorBody{Error: "internal error", Code: controller.EINTERNAL}
	}

	var fe *fiber.Error
	if errors.As(err, &fe) {
		// Fiber's own errors: no route, wrong method, oversized body, timeouts.
		code := codeForStatus(fe.Code)
		msg := fe.Message
		switch fe.Code {
		case fiber.StatusNotFound:
			msg = fmt.Sprintf("no route for %s %s", c.Method(), c.Path())
		case fiber.StatusMethodNotAllowed:
			msg = fmt.Sprintf("method %s not allowed on %s", c.Method(), c.Path())
		}
		if code == controller.EINTERNAL {
			msg = "internal error"
		}
		return fe.Code, errorBody{Error: msg, Code: code}
	}

	code := controller.ErrorCode(err)
	status, ok := codeStatus[code]
	if !ok {
		// A code this API does not know is a bug in the controller.
		code, status = controller.EINTERNAL, fiber.StatusInternalServerError
	}
	body := errorBody{Error: controller.ErrorMessage(err), Code: code}
	if code == controller.EINTERNAL {
		body.Error = "internal error"
	}
	var ce *controller.Error
	if code == controller.ECONFLICT && errors.As(err, &ce) {
		body.DeploymentID = ce.DeploymentID
	}
	return status, body
}

// codeForStatus names the code of a status fiber chose itself.
func codeForStatus(status int) string {
	for code, st := range codeStatus {
		if st == status {
			return code
		}
	}
	if status >= fiber.StatusInternalServerError {
		return controller.EINTERNAL
	}
	return controller.EINVALID
}
