// Package api serves deployd's REST API on fiber. It talks to the controller
// only, through the Controller interface, and owns nothing but HTTP concerns:
// authentication, request decoding, JSON shapes and the mapping from
// controller error codes to HTTP statuses.
package api

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/gofiber/fiber/v2"
	fiberrecover "github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/pkg/controller"
)

// Controller is what the API needs from the controller. Errors are
// *controller.Error values whose Code picks the HTTP status; any other error
// is reported as internal. A busy service is ECONFLICT with DeploymentID set.
type Controller interface {
	Services(ctx context.Context) ([]controller.ServiceView, error)
	// Service returns ENOTFOUND for an unknown service.
	Service(ctx context.Context, name string) (controller.ServiceView, error)
	// Deploy queues or starts a deployment and returns without waiting for
	// it to finish; ctx bounds only the call, not the deployment.
	Deploy(ctx context.Context, service string, req controller.DeployRequest) (controller.Deployment, error)
	// Rollback returns ECONFLICT when the service has no standby color.
	Rollback(ctx context.Context, service string, trigger controller.Trigger) (controller.Deployment, error)
	// Deployments lists the newest deployments first; an empty service means
	// all services.
	Deployments(ctx context.Context, service string, limit int) ([]controller.Deployment, error)
	// Deployment returns ENOTFOUND for an unknown id.
	Deployment(ctx context.Context, id string) (controller.Deployment, error)
}

// Options configures a Server. Controller and Logger are required.
type Options struct {
	Controller Controller
	// Tokens are the API's bearer tokens. Tokens with an empty secret are
	// ignored, so a missing secret in config can never mean "anyone".
	Tokens []Token
	Logger logrus.FieldLogger
}

const (
	readTimeout  = 15 * time.Second
	writeTimeout = 30 * time.Second
	idleTimeout  = 120 * time.Second
	bodyLimit    = 1 << 20
	// requestTimeout bounds the controller calls of one request; it is
	// shorter than writeTimeout so the error still reaches the client.
	requestTimeout = 25 * time.Second
)

// Server is deployd's HTTP API.
type Server struct {
	app  *fiber.App
	ctl  Controller
	log  logrus.FieldLogger
	auth *authenticator
}

// New builds the fiber app with every route registered. More routes (the
// status page) may be added to App() before Serve.
func New(o Options) *Server {
	s := &Server{
		ctl:  o.Controller,
		log:  o.Logger,
		auth: newAuthenticator(o.Tokens, o.Logger),
	}
	s.app = fiber.New(fiber.Config{
		DisableStartupMessage: true,
		ReadTimeout:           readTimeout,
		WriteTimeout:          writeTimeout,
		IdleTimeout:           idleTimeout,
		BodyLimit:             bodyLimit,
		// Values from c.Params and c.Get otherwise point into buffers fasthttp
		// reuses after the handler returns, and the controller may keep them.
		Immutable:    true,
		ErrorHandler: s.handleError,
	})

	// Order matters: the request id exists before anything logs, the access
	// log sees the final status (it runs the error handler itself), and
	// recover sits inside it so a panic is logged as a 500.
	s.app.Use(s.requestID, s.accessLog, fiberrecover.New(fiberrecover.Config{
		EnableStackTrace:  true,
		StackTraceHandler: s.logPanic,
	}), s.requestContext)

	s.routes()
	return s
}

func (s *Server) routes() {
	s.app.Get("/healthz", func(c *fiber.Ctx) error {
		return c.JSON(fiber.Map{"status": "ok"})
	})

	v1 := s.app.Group("/api/v1")
	v1.Get("/services", s.authorize(RoleViewer), s.listServices)
	v1.Get("/services/:name", s.authorize(RoleViewer), s.getService)
	v1.Post("/services/:name/deployments", s.authorize(RoleDeployer), s.deploy)
	v1.Post("/services/:name/rollback", s.authorize(RoleOperator), s.rollback)
	v1.Get("/deployments", s.authorize(RoleViewer), s.listDeployments)
	v1.Get("/deployments/:id", s.authorize(RoleViewer), s.getDeployment)
}

// App returns the fiber app, for app.Test and for mounting more handlers.
func (s *Server) App() *fiber.App { return s.app }

// Serve serves the API on ln until Shutdown; it blocks.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.app.Listener(ln); err != nil {
		return fmt.Errorf("serve api on %s: %w", ln.Addr(), err)
	}
	return nil
}

// Shutdown stops accepting connections and waits for in-flight requests to
// finish. When ctx ends first it returns ctx's error, leaving the remaining
// connections to be closed by their timeouts.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.app.ShutdownWithContext(ctx); err != nil {
		return fmt.Errorf("shut down api: %w", err)
	}
	return nil
}
