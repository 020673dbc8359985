package api

import (
	"net/url"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/deployd/deployd/pkg/controller"
)

const (
	defaultListLimit = 50
	maxListLimit     = 500
)

func (s *Server) deploy(c *fiber.Ctx) error {
	name, err := serviceParam(c)
	if err != nil {
		return err
	}
	body, err := decodeDeployBody(c.Body())
	if err != nil {
		return err
	}
	// The actor is whoever the token is, whatever the body says; the
	// body's claim is kept beside it.
	d, err := s.ctl.Deploy(c.UserContext(), name, controller.DeployRequest{
		Image:   body.Image,
		Trigger: controller.Trigger{Source: "api", Actor: TokenName(c), OnBehalfOf: body.OnBehalfOf, Commit: body.Commit},
	})
	if err != nil {
		return err
	}
	return accepted(c, d)
}

// actionRollbackConfirmedSchema audits a rollback confirmed across a
// breaking schema change.
const actionRollbackConfirmedSchema = "rollback_confirmed_schema_change"

func (s *Server) rollback(c *fiber.Ctx) error {
	name, err := serviceParam(c)
	if err != nil {
		return err
	}
	body, err := decodeRollbackBody(c.Body())
	if err != nil {
		return err
	}
	d, err := s.ctl.Rollback(c.UserContext(), name, controller.RollbackRequest{
		Trigger:             controller.Trigger{Source: "api", Actor: TokenName(c)},
		ConfirmSchemaChange: body.ConfirmSchemaChange,
	})
	if err != nil {
		return err
	}
	if d.SchemaChange != nil && d.SchemaChange.Confirmed {
		// The trail says who took responsibility for the schema.
		c.Locals(localAction, actionRollbackConfirmedSchema)
	}
	return accepted(c, d)
}

// cancel asks a running deployment to stop; it ends as cancelled later.
func (s *Server) cancel(c *fiber.Ctx) error {
	d, err := s.ctl.Cancel(c.UserContext(), c.Params("id"))
	if err != nil {
		return err
	}
	return accepted(c, d)
}

// accepted answers a started (or cancelling) deployment: 202 and where to
// watch it.
func accepted(c *fiber.Ctx, d controller.Deployment) error {
	c.Locals(localDeploymentID, d.ID)
	c.Location("/api/v1/deployments/" + url.PathEscape(d.ID))
	return c.Status(fiber.StatusAccepted).JSON(deploymentOf(d))
}

func (s *Server) listDeployments(c *fiber.Ctx) error {
	service := c.Query("service")
	if service != "" && !controller.ValidServiceName(service) {
		return controller.Errorf(controller.EINVALID, "service %q is not a valid service name", service)
	}
	limit := defaultListLimit
	if raw := c.Query("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > maxListLimit {
			return controller.Errorf(controller.EINVALID, "limit must be an integer from 1 to %d, got %q", maxListLimit, raw)
		}
		limit = n
	}
	ds, err := s.ctl.Deployments(c.UserContext(), service, limit)
	if err != nil {
		return err
	}
	out := DeploymentList{Deployments: make([]Deployment, 0, len(ds))}
	for _, d := range ds {
		out.Deployments = append(out.Deployments, deploymentOf(d))
	}
	return c.JSON(out)
}

func (s *Server) getDeployment(c *fiber.Ctx) error {
	d, err := s.ctl.Deployment(c.UserContext(), c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(deploymentOf(d))
}
