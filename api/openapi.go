package api

import (
	_ "embed"

	"github.com/gofiber/fiber/v2"
)

//go:embed openapi.yaml
var openAPISpec []byte

// OpenAPI returns the API's OpenAPI 3 document (YAML). A test keeps its
// paths and the registered routes in step.
func OpenAPI() []byte { return append([]byte(nil), openAPISpec...) }

func (s *Server) openAPI(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, "application/yaml")
	return c.Send(openAPISpec)
}
