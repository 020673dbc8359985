package api

import (
	"github.com/gofiber/fiber/v2"

	"github.com/deployd/deployd/pkg/controller"
)

func (s *Server) listServices(c *fiber.Ctx) error {
	views, err := s.ctl.Services(c.UserContext())
	if err != nil {
		return err
	}
	out := make([]controller.ServiceView, 0, len(views))
	for _, v := range views {
		out = append(out, presentService(v))
	}
	return c.JSON(fiber.Map{"services": out})
}

func (s *Server) getService(c *fiber.Ctx) error {
	name, err := serviceParam(c)
	if err != nil {
		return err
	}
	v, err := s.ctl.Service(c.UserContext(), name)
	if err != nil {
		return err
	}
	return c.JSON(presentService(v))
}

// serviceParam returns the :name parameter. A name that breaks the service
// name grammar cannot exist, so it is not found without asking.
func serviceParam(c *fiber.Ctx) (string, error) {
	name := c.Params("name")
	if !controller.ValidServiceName(name) {
		return "", controller.Errorf(controller.ENOTFOUND, "no service %q", name)
	}
	return name, nil
}

// presentService fills the gaps a client should not have to handle: both
// colors are always present and lists are [] rather than null. It copies
// rather than changing the controller's values.
func presentService(v controller.ServiceView) controller.ServiceView {
	colors := make(map[controller.Color]controller.ColorView, 2)
	for _, col := range []controller.Color{controller.Blue, controller.Green} {
		cv := v.Colors[col]
		if cv.Containers == nil {
			cv.Containers = []controller.Container{}
		}
		colors[col] = cv
	}
	v.Colors = colors
	if v.ActiveDeployment != nil {
		d := presentDeployment(*v.ActiveDeployment)
		v.ActiveDeployment = &d
	}
	if v.Deployment != nil {
		d := presentDeployment(*v.Deployment)
		v.Deployment = &d
	}
	return v
}

func presentDeployment(d controller.Deployment) controller.Deployment {
	if d.Steps == nil {
		d.Steps = []controller.Step{}
	}
	return d
}
