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
	out := ServiceList{Services: make([]Service, 0, len(views))}
	for _, v := range views {
		out.Services = append(out.Services, serviceOf(v))
	}
	return c.JSON(out)
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
	return c.JSON(serviceOf(v))
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
