package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/deployd/deployd/pkg/controller"
)

// maxTrafficBody bounds the bodies of pause and maintenance: a message is
// at most 1 KiB, escaped perhaps six times over.
const maxTrafficBody = 8 << 10

// pauseBody is the optional JSON body of POST .../pause: limits below the
// configured ones. max_hold is a Go duration ("10s").
type pauseBody struct {
	MaxHold *string `json:"max_hold"`
	MaxHeld *int    `json:"max_held"`
}

// maintenanceBody is the JSON body of POST .../maintenance.
type maintenanceBody struct {
	On      *bool  `json:"on"`
	Message string `json:"message"`
}

func (s *Server) pause(c *fiber.Ctx) error {
	name, err := serviceParam(c)
	if err != nil {
		return err
	}
	req, err := decodePauseBody(c.Body())
	if err != nil {
		return err
	}
	v, err := s.ctl.Pause(c.UserContext(), name, req)
	if err != nil {
		return err
	}
	return c.JSON(trafficOf(v))
}

func (s *Server) resume(c *fiber.Ctx) error {
	name, err := serviceParam(c)
	if err != nil {
		return err
	}
	v, err := s.ctl.Resume(c.UserContext(), name)
	if err != nil {
		return err
	}
	return c.JSON(trafficOf(v))
}

func (s *Server) maintenance(c *fiber.Ctx) error {
	name, err := serviceParam(c)
	if err != nil {
		return err
	}
	var body maintenanceBody
	if err := decodeStrict(c.Body(), &body, false); err != nil {
		return err
	}
	if body.On == nil {
		return controller.Errorf(controller.EINVALID, `on is required: true or false`)
	}
	// The trail says which way it went.
	if *body.On {
		c.Locals(localAction, "maintenance_on")
	} else {
		c.Locals(localAction, "maintenance_off")
	}
	v, err := s.ctl.Maintenance(c.UserContext(), name, *body.On, body.Message)
	if err != nil {
		return err
	}
	return c.JSON(trafficOf(v))
}

// decodePauseBody reads the optional limits; an explicit limit must be
// positive (the configured maximum is the controller's check).
func decodePauseBody(b []byte) (controller.PauseRequest, error) {
	var body pauseBody
	if err := decodeStrict(b, &body, true); err != nil {
		return controller.PauseRequest{}, err
	}
	var req controller.PauseRequest
	if body.MaxHold != nil {
		d, err := time.ParseDuration(*body.MaxHold)
		if err != nil || d <= 0 {
			return req, controller.Errorf(controller.EINVALID, "max_hold must be a positive duration such as \"10s\", got %q", *body.MaxHold)
		}
		req.MaxHold = d
	}
	if body.MaxHeld != nil {
		if *body.MaxHeld < 1 {
			return req, controller.Errorf(controller.EINVALID, "max_held must be at least 1, got %d", *body.MaxHeld)
		}
		req.MaxHeld = *body.MaxHeld
	}
	return req, nil
}

// decodeStrict parses one JSON object without unknown fields into v; an
// empty body is allowed only when optional. Failures are EINVALID.
func decodeStrict(b []byte, v any, optional bool) error {
	if len(b) > maxTrafficBody {
		return controller.Errorf(controller.EINVALID, "request body is larger than %d KiB", maxTrafficBody>>10)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		if optional {
			return nil
		}
		return controller.Errorf(controller.EINVALID, "request body is empty; want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalidJSON(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return controller.Errorf(controller.EINVALID, "request body must hold a single JSON object")
	}
	return nil
}
