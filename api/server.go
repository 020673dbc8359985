// Package api serves deployd's REST API on fiber. It talks to the controller
// only, through the Controller interface, and owns nothing but HTTP concerns:
// authentication, request decoding, JSON shapes and the mapping from
// controller error codes to HTTP statuses.
package api

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"
	fiberrecover "github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/internal/clientaddr"
	"github.com/deployd/deployd/internal/reqbody"
	"github.com/deployd/deployd/pkg/auth"
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
	Rollback(ctx context.Context, service string, req controller.RollbackRequest) (controller.Deployment, error)
	// Deployments lists the newest deployments first; an empty service means
	// all services.
	Deployments(ctx context.Context, service string, limit int) ([]controller.Deployment, error)
	// Deployment returns ENOTFOUND for an unknown id.
	Deployment(ctx context.Context, id string) (controller.Deployment, error)
	// Events returns deployment id's progress after seq, a channel closed
	// when more may be available, and whether the stream is complete.
	// ENOTFOUND for an unknown id.
	Events(ctx context.Context, id string, seq int) ([]controller.Event, <-chan struct{}, bool, error)
	// Cancel asks a running deployment to stop; ENOTFOUND for an unknown
	// id, ECONFLICT when it has ended or is already switching traffic.
	Cancel(ctx context.Context, id string) (controller.Deployment, error)
	// Feed returns the system feed's events after cursor, of one service
	// or ("") all, with the cursor to read on from and a channel closed
	// when more may be available. It does not block. ENOTFOUND for an
	// unknown service; an error wrapping controller.ErrFeedLost, with a
	// page starting at the newest event, when cursor cannot be resumed.
	Feed(cursor controller.FeedCursor, service string) (controller.FeedPage, error)
	// DeployDelivery is Deploy for a verified webhook delivery: a key seen
	// before returns its deployment with replayed set and starts nothing.
	// ENOTFOUND, EFORBIDDEN (image or ref not allowed) and ECONFLICT are
	// decided before anything is written.
	DeployDelivery(ctx context.Context, key, service string, req controller.DeployRequest) (d controller.Deployment, replayed bool, err error)
	// Ready returns nil when the store, the Docker engine and nginx answer,
	// else an error saying which does not; it must answer within ctx.
	Ready(ctx context.Context) error
	// RecordAudit appends one entry to the audit trail; one without an
	// actor (nobody known sent the request) is only counted.
	RecordAudit(ctx context.Context, e controller.AuditEntry) error
	// AuditBefore returns up to limit audit entries older than the entry
	// with ID before ("" for the newest), newest first; EINVALID for a
	// before that is not an entry ID.
	AuditBefore(ctx context.Context, before string, limit int) ([]controller.AuditEntry, error)
	// Pause holds the service's new requests within the configured limits
	// (req may ask for less). ENOTFOUND, EINVALID for limits above the
	// configured ones, ECONFLICT when already paused or in reload mode.
	Pause(ctx context.Context, service string, req controller.PauseRequest) (controller.TrafficView, error)
	// Resume releases the held requests. ENOTFOUND, ECONFLICT when not
	// paused or in reload mode.
	Resume(ctx context.Context, service string) (controller.TrafficView, error)
	// Maintenance turns the service's 503 page on or off. ENOTFOUND,
	// EINVALID for a bad message, ECONFLICT in reload mode.
	Maintenance(ctx context.Context, service string, on bool, message string) (controller.TrafficView, error)
}

// Pages are the status page's routes. The API declares what it needs of
// them so that it does not depend on the page's package.
type Pages interface {
	// Register adds the page's routes. They get the API's middleware
	// (request ids, access log, security headers) but no authentication:
	// the pages do their own, redirecting to their login.
	Register(r fiber.Router)
}

// Options configures a Server. Controller and Logger are required.
type Options struct {
	Controller Controller
	// Tokens are the API's bearer tokens. Tokens with an empty secret are
	// ignored, so a missing secret in config can never mean "anyone".
	Tokens []auth.Token
	// Sessions, when set, lets a session cookie (auth.CookieName) stand in
	// for a bearer token: the status page's logins. Requests that change
	// state must then also carry the session's CSRF token and come from
	// our own origin. Nil: bearer tokens only.
	Sessions *auth.Sessions
	// Pages, when set, registers the status page's routes after the API's.
	Pages Pages
	// WebhookSecret is the HMAC key of POST /hooks/deploy. Without one the
	// webhook answers 404: it is never open. A token whose secret equals
	// it is ignored, so the webhook secret can never act as a token.
	WebhookSecret []byte
	// Metrics, when set, is served at GET /metrics (Prometheus format) to
	// viewer tokens, or to anyone when MetricsPublic is set.
	Metrics       http.Handler
	MetricsPublic bool
	// TrustedProxies are the peers (nginx) whose X-Forwarded-For names the
	// client. Empty: every request is from its TCP peer.
	TrustedProxies clientaddr.Proxies
	// WebhookAllowUnstamped accepts webhook deliveries without
	// X-Deployd-Timestamp, signed over the body alone.
	WebhookAllowUnstamped bool
	// MaxStreams and MaxStreamsPerToken cap the open event streams, in
	// all and per token; past either a new stream gets 429. Zero means
	// 256 and 16.
	MaxStreams         int
	MaxStreamsPerToken int
	// FeedHeartbeat is how often GET /api/v1/events sends a heartbeat
	// event; zero means 5s.
	FeedHeartbeat time.Duration
	Logger        logrus.FieldLogger
}

// fasthttp's ReadTimeout bounds reading a whole request, headers and body
// together, so a slow client cannot hold a connection by trickling either.
// WriteTimeout is set once per response; event streams extend it themselves
// before each write (see events.go).
const (
	readTimeout  = 15 * time.Second
	writeTimeout = 30 * time.Second
	idleTimeout  = 120 * time.Second
	// maxAPIBody bounds the body of every authenticated POST. Bodies are
	// streamed: fasthttp reads at most 8 KiB of one before the handlers
	// run, and a route reads the rest, up to its own limit, only once it
	// has authenticated the caller (reqbody).
	maxAPIBody = 64 << 10
	// requestTimeout bounds the controller calls of one request; it is
	// shorter than writeTimeout so the error still reaches the client.
	requestTimeout = 25 * time.Second
)

// Server is deployd's HTTP API.
type Server struct {
	app  *fiber.App
	ctl  Controller
	log  logrus.FieldLogger
	auth *auth.Authenticator
	// sessions is nil when no page logs anyone in.
	sessions *auth.Sessions

	webhookSecret []byte
	// allowUnstamped accepts webhook deliveries without a timestamp.
	allowUnstamped bool
	// replays remembers the signatures of accepted webhook deliveries.
	replays *replayCache
	// proxies are the peers whose X-Forwarded-For is believed.
	proxies clientaddr.Proxies
	// ready shares and caches the readiness checks between callers.
	ready *readiness
	// failures counts failed webhook signatures per client address.
	failures *auth.Limiter
	// now is the clock of webhook timestamps and the failure limiter.
	now func() time.Time
	// heartbeat is how often an idle deployment stream sends a comment.
	heartbeat time.Duration
	// feedHeartbeat is how often the system stream sends a heartbeat.
	feedHeartbeat time.Duration
	// slots counts the open event streams against their caps.
	slots *streamSlots

	// streams ends with the server: Shutdown cancels it so that event
	// streams, which never finish on their own, let Shutdown complete.
	streams    context.Context
	stopStream context.CancelFunc
}

// New builds the fiber app with every route registered. More routes (the
// status page) may be added to App() before Serve.
func New(o Options) *Server {
	s := &Server{
		ctl:            o.Controller,
		log:            o.Logger,
		auth:           auth.NewAuthenticator(apiTokens(o.Tokens, o.WebhookSecret, o.Logger), o.Logger),
		sessions:       o.Sessions,
		webhookSecret:  append([]byte(nil), o.WebhookSecret...),
		allowUnstamped: o.WebhookAllowUnstamped,
		proxies:        o.TrustedProxies,
		now:            time.Now,
		heartbeat:      heartbeatInterval,
		feedHeartbeat:  o.FeedHeartbeat,
		slots:          newStreamSlots(o.MaxStreams, o.MaxStreamsPerToken),
	}
	if s.feedHeartbeat <= 0 {
		s.feedHeartbeat = feedHeartbeatInterval
	}
	// Through s.now, so that tests moving the server's clock move the
	// limiter's too.
	s.failures = auth.NewLimiter(maxSignatureFailures, failureWindow, maxTrackedClients, func() time.Time { return s.now() })
	s.replays = newReplayCache(maxReplayEntries)
	s.ready = newReadiness(o.Controller.Ready, readyCacheFor, func() time.Time { return s.now() }, o.Logger)
	// The server's own lifetime, owned by Shutdown; nothing a caller passes
	// in outlives a request, and streams must outlive their handler.
	s.streams, s.stopStream = context.WithCancel(context.Background())
	s.app = fiber.New(fiber.Config{
		DisableStartupMessage: true,
		ReadTimeout:           readTimeout,
		WriteTimeout:          writeTimeout,
		IdleTimeout:           idleTimeout,
		// Nothing of a body is held before a route has authenticated its
		// caller: fasthttp would otherwise reserve the announced
		// Content-Length as soon as the headers arrive, and read multipart
		// forms (no route takes one) in full.
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		// With streamed bodies fasthttp refuses nothing by this limit; it
		// only picks how the first 8 KiB are read. Under it they are read
		// by the declared length, never past it into a pipelined request
		// (fasthttp 1.51 reads past it for bodies over the limit). The
		// routes' own limits are reqbody's.
		BodyLimit: math.MaxInt,
		// Values from c.Params and c.Get otherwise point into buffers fasthttp
		// reuses after the handler returns, and the controller may keep them.
		Immutable:    true,
		ErrorHandler: s.handleError,
	})

	// Order matters: the client's address is known before anything reads
	// it, the request id exists before anything logs, the access
	// log sees the final status (it runs the error handler itself), and
	// recover sits inside it so a panic is logged as a 500.
	// CloseUnread is outermost so that it sees every request's end, the
	// ones refused before their body was read above all.
	s.app.Use(reqbody.CloseUnread, s.clientAddress, s.securityHeaders, s.requestID, s.accessLog, fiberrecover.New(fiberrecover.Config{
		EnableStackTrace:  true,
		StackTraceHandler: s.logPanic,
	}), s.requestContext)

	s.routes()
	s.observeRoutes(o.Metrics, o.MetricsPublic)
	if o.Pages != nil {
		// After the API's routes, so that a page's pattern can never
		// shadow one of them.
		o.Pages.Register(s.app)
	}
	return s
}

func (s *Server) routes() {
	s.app.Get("/healthz", func(c *fiber.Ctx) error {
		return c.JSON(fiber.Map{"status": "ok"})
	})

	v1 := s.app.Group("/api/v1")
	v1.Get("/services", s.authorize(auth.RoleViewer), s.listServices)
	v1.Get("/services/:name", s.authorize(auth.RoleViewer), s.getService)
	// Mutating routes are audited; audit runs first so that it records
	// refusals by authorize too. Their bodies are read only after
	// authorize (body), so an anonymous caller costs no body memory.
	body := reqbody.Middleware(maxAPIBody)
	v1.Post("/services/:name/deployments", s.audit("deploy", paramTarget("name")), s.authorize(auth.RoleDeployer), body, s.deploy)
	v1.Post("/services/:name/rollback", s.audit("rollback", paramTarget("name")), s.authorize(auth.RoleOperator), body, s.rollback)
	v1.Post("/services/:name/pause", s.audit("pause", paramTarget("name")), s.authorize(auth.RoleOperator), body, s.pause)
	v1.Post("/services/:name/resume", s.audit("resume", paramTarget("name")), s.authorize(auth.RoleOperator), body, s.resume)
	v1.Post("/services/:name/maintenance", s.audit("maintenance", paramTarget("name")), s.authorize(auth.RoleOperator), body, s.maintenance)
	v1.Get("/deployments", s.authorize(auth.RoleViewer), s.listDeployments)
	v1.Get("/deployments/:id", s.authorize(auth.RoleViewer), s.getDeployment)
	v1.Get("/deployments/:id/events", s.authorize(auth.RoleViewer), s.deploymentEvents)
	v1.Post("/deployments/:id/cancel", s.audit("cancel", paramTarget("id")), s.authorize(auth.RoleOperator), body, s.cancel)
	v1.Get("/events", s.authorize(auth.RoleViewer), s.systemEvents)
	v1.Get("/audit", s.authorize(auth.RoleViewer), s.listAudit)
	v1.Get("/openapi.yaml", s.authorize(auth.RoleViewer), s.openAPI)

	s.app.Post("/hooks/deploy", s.audit("webhook_deploy", nil), s.webhook)
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

// Shutdown ends the event streams, stops accepting connections and waits
// for in-flight requests to finish. When ctx ends first it returns ctx's error, leaving the remaining
// connections to be closed by their timeouts.
func (s *Server) Shutdown(ctx context.Context) error {
	// Event streams first: fasthttp waits for every open response, and a
	// stream only ends when told to.
	s.stopStream()
	if err := s.app.ShutdownWithContext(ctx); err != nil {
		return fmt.Errorf("shut down api: %w", err)
	}
	return nil
}
