// Package web serves deployd's status page: server-rendered html/template
// pages, a small script and a style sheet, all embedded in the binary. It
// holds no business logic: it reads through a small Controller interface,
// and the page's buttons call the REST API with the session cookie, so the
// API's role checks, CSRF checks and audit apply to them as to any client.
package web

import (
	"bytes"
	"context"
	"crypto/subtle"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"mime"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/pkg/auth"
	"github.com/deployd/deployd/pkg/controller"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// Controller is what the pages read. Errors are *controller.Error values
// whose code picks the page's status; anything else is internal.
type Controller interface {
	Services(ctx context.Context) ([]controller.ServiceView, error)
	// Service returns ENOTFOUND for an unknown service.
	Service(ctx context.Context, name string) (controller.ServiceView, error)
	// Deployments lists the newest first; an empty service means all.
	Deployments(ctx context.Context, service string, limit int) ([]controller.Deployment, error)
	// Deployment returns ENOTFOUND for an unknown id.
	Deployment(ctx context.Context, id string) (controller.Deployment, error)
	// Audit returns the newest entries first.
	Audit(ctx context.Context, limit int) ([]controller.AuditEntry, error)
	// RecordAudit appends one entry to the audit trail: logins and logouts.
	RecordAudit(ctx context.Context, e controller.AuditEntry) error
	// Feed with the zero cursor says where the system feed stands (Next).
	Feed(cursor controller.FeedCursor, service string) (controller.FeedPage, error)
}

// Options configures the pages. Every field but SecureCookies and Now is
// required.
type Options struct {
	Controller Controller
	// StatusOf maps an error to the HTTP status its code stands for, so
	// that pages answer with the API's statuses (api.StatusOf).
	StatusOf     func(error) int
	Auth         *auth.Authenticator
	Sessions     *auth.Sessions
	LoginLimiter *auth.Limiter
	// LoginSuccesses counts successful logins per token name: past its
	// limit a valid token is refused with 429, so no token can mint
	// sessions (each a synced write) at will.
	LoginSuccesses *auth.Limiter
	// SecureCookies marks the session cookie Secure even on plain HTTP
	// requests, for a TLS-terminating proxy in front; requests that came
	// over TLS get it anyway.
	SecureCookies bool
	Logger        logrus.FieldLogger
	// Now is the clock of relative times; time.Now when nil.
	Now func() time.Time
}

const (
	historyLimit = 20
	auditLimit   = 20
	// staticMaxAge is short: assets change with the binary, and a stale
	// script for a few minutes after an upgrade is the worst case.
	staticMaxAge = 300
	// pageTimeout bounds the controller calls of one page.
	pageTimeout = 10 * time.Second
	// maxFormBody bounds the login and logout forms, read before anyone
	// is authenticated: a token and a CSRF token fit many times over.
	maxFormBody = 4 << 10
)

// Pages serves the status page. Safe for concurrent use.
type Pages struct {
	ctl      Controller
	statusOf func(error) int
	auth     *auth.Authenticator
	sessions *auth.Sessions
	limiter  *auth.Limiter
	logins   *auth.Limiter
	secure   bool
	log      logrus.FieldLogger
	now      func() time.Time

	// pages maps a page name (login, dashboard, deployment, error) to its
	// template set; each holds the layout and the partials too.
	pages map[string]*template.Template
}

// New parses the embedded templates; it panics if they do not parse,
// which a test of this package would already have caught.
func New(o Options) *Pages {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	pages, err := parsePages()
	if err != nil {
		panic(err)
	}
	return &Pages{
		ctl:      o.Controller,
		statusOf: o.StatusOf,
		auth:     o.Auth,
		sessions: o.Sessions,
		limiter:  o.LoginLimiter,
		logins:   o.LoginSuccesses,
		secure:   o.SecureCookies,
		log:      o.Logger,
		now:      now,
		pages:    pages,
	}
}

func parsePages() (map[string]*template.Template, error) {
	base, err := template.New("base").Funcs(templateFuncs).ParseFS(templateFiles,
		"templates/layout.html", "templates/service.html", "templates/history.html")
	if err != nil {
		return nil, fmt.Errorf("parse layout and partials: %w", err)
	}
	out := map[string]*template.Template{}
	for _, name := range []string{"login", "dashboard", "deployment", "error"} {
		t, err := base.Clone()
		if err != nil {
			return nil, fmt.Errorf("clone layout for %s: %w", name, err)
		}
		if _, err := t.ParseFS(templateFiles, "templates/"+name+".html"); err != nil {
			return nil, fmt.Errorf("parse %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

var templateFuncs = template.FuncMap{
	"ago":         relTime,
	"uptime":      uptime,
	"rfc3339":     rfc3339,
	"exact":       exact,
	"clockUTC":    clockUTC,
	"shortCommit": shortCommit,
	"colorKey":    colorKey,
	"colorLabel":  colorLabel,
	"stepView":    newStepView,
	"clockExact":  clockExact,
	"when":        newWhenView,
	"imageRef":    imageRef,
}

// Register mounts the pages on r: GET /, /login, /deployments/:id, the
// partials and /static/*; POST /login and /logout.
func (p *Pages) Register(r fiber.Router) {
	r.Get("/", p.dashboard)
	r.Get("/login", p.loginPage)
	r.Post("/login", p.login)
	r.Post("/logout", p.logout)
	r.Get("/deployments/:id", p.deploymentPage)
	r.Get("/partials/services/:name", p.servicePartial)
	r.Get("/partials/history", p.historyPartial)
	r.Get("/static/*", p.static)
}

// page is what the layout and every page template receive.
type page struct {
	Title    string
	Signed   bool
	Identity auth.Identity
	Role     string
	CSRF     string
	Now      time.Time

	Error      string
	SessionTTL string
	// EventsAfter is the system feed's position when the page's data was
	// read: the script's stream starts after it, so that nothing that
	// happened between the render and the stream is missed.
	EventsAfter string

	Services   []cardView
	History    historyView
	Audit      []controller.AuditEntry
	Deployment *deploymentView
}

func (p *Pages) newPage(title string, s *auth.Session) page {
	pg := page{Title: title, Now: p.now()}
	if s != nil {
		pg.Signed = true
		pg.Identity = s.Identity
		pg.Role = s.Role.String()
		pg.CSRF = s.CSRF
	}
	return pg
}

// feedPosition is where the system feed stands now, in its wire form.
func (p *Pages) feedPosition() string {
	page, err := p.ctl.Feed(controller.FeedCursor{}, "")
	if err != nil {
		// The script then starts live and reads everything afresh.
		p.log.WithError(err).Warn("read the event feed's position")
		return ""
	}
	return page.Next.String()
}

// session returns the request's valid session, if any.
func (p *Pages) session(c *fiber.Ctx) (auth.Session, bool) {
	id := c.Cookies(auth.CookieName)
	if id == "" {
		return auth.Session{}, false
	}
	// The cookie's bytes belong to fasthttp; the store may keep the key.
	return p.sessions.Get(strings.Clone(id))
}

func (p *Pages) dashboard(c *fiber.Ctx) error {
	s, ok := p.session(c)
	if !ok {
		return seeOther(c, "/login")
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), pageTimeout)
	defer cancel()
	pg := p.newPage("Status", &s)
	pg.EventsAfter = p.feedPosition()
	views, err := p.ctl.Services(ctx)
	if err != nil {
		return p.fail(c, &s, fmt.Errorf("list services: %w", err))
	}
	for _, v := range views {
		pg.Services = append(pg.Services, newCardView(v, s.Role, pg.Now))
	}
	if pg.History, err = p.history(ctx, s.Role, pg.Now); err != nil {
		return p.fail(c, &s, err)
	}
	if pg.Audit, err = p.ctl.Audit(ctx, auditLimit); err != nil {
		return p.fail(c, &s, fmt.Errorf("read audit trail: %w", err))
	}
	return p.render(c, fiber.StatusOK, "dashboard", pg)
}

func (p *Pages) history(ctx context.Context, role auth.Role, now time.Time) (historyView, error) {
	ds, err := p.ctl.Deployments(ctx, "", historyLimit)
	if err != nil {
		return historyView{}, fmt.Errorf("list deployments: %w", err)
	}
	return newHistoryView(ds, role, now), nil
}

func (p *Pages) deploymentPage(c *fiber.Ctx) error {
	s, ok := p.session(c)
	if !ok {
		return seeOther(c, "/login")
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), pageTimeout)
	defer cancel()
	after := p.feedPosition()
	d, err := p.ctl.Deployment(ctx, strings.Clone(c.Params("id")))
	if err != nil {
		return p.fail(c, &s, fmt.Errorf("read deployment: %w", err))
	}
	repo := ""
	// The service may have left the config since; then there is just no link.
	if v, err := p.ctl.Service(ctx, d.Service); err == nil {
		repo = v.RepositoryURL
	}
	pg := p.newPage(fmt.Sprintf("%s of %s", d.Kind, d.Service), &s)
	pg.EventsAfter = after
	dv := newDeploymentView(d, repo, s.Role, pg.Now)
	pg.Deployment = &dv
	return p.render(c, fiber.StatusOK, "deployment", pg)
}

// servicePartial answers one card, for the script to swap in. Without a
// session it answers a bare 401: the script sends the browser to /login.
func (p *Pages) servicePartial(c *fiber.Ctx) error {
	s, ok := p.session(c)
	if !ok {
		return p.partialUnauthorized(c)
	}
	name := c.Params("name")
	if !controller.ValidServiceName(name) {
		return p.partialError(c, controller.Errorf(controller.ENOTFOUND, "no service %q", name))
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), pageTimeout)
	defer cancel()
	v, err := p.ctl.Service(ctx, strings.Clone(name))
	if err != nil {
		return p.partialError(c, fmt.Errorf("read service %s: %w", name, err))
	}
	return p.renderPartial(c, "service", newCardView(v, s.Role, p.now()))
}

func (p *Pages) historyPartial(c *fiber.Ctx) error {
	s, ok := p.session(c)
	if !ok {
		return p.partialUnauthorized(c)
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), pageTimeout)
	defer cancel()
	h, err := p.history(ctx, s.Role, p.now())
	if err != nil {
		return p.partialError(c, err)
	}
	return p.renderPartial(c, "history", h)
}

func (p *Pages) partialUnauthorized(c *fiber.Ctx) error {
	noStore(c)
	return c.Status(fiber.StatusUnauthorized).SendString("log in first")
}

func (p *Pages) partialError(c *fiber.Ctx, err error) error {
	status := p.statusOf(err)
	if status >= fiber.StatusInternalServerError {
		p.log.WithError(err).WithField("path", c.Path()).Error("render partial")
	}
	noStore(c)
	return c.Status(status).SendString(controller.ErrorMessage(err))
}

// static serves the embedded assets. Only files under static/ exist; the
// embed.FS refuses "..".
func (p *Pages) static(c *fiber.Ctx) error {
	name := path.Clean("static/" + c.Params("*"))
	if !strings.HasPrefix(name, "static/") {
		return p.notFound(c)
	}
	b, err := fs.ReadFile(staticFiles, name)
	if err != nil {
		return p.notFound(c)
	}
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = fiber.MIMEOctetStream
	}
	c.Set(fiber.HeaderContentType, ctype)
	c.Set(fiber.HeaderCacheControl, "public, max-age="+strconv.Itoa(staticMaxAge))
	return c.Send(b)
}

func (p *Pages) notFound(c *fiber.Ctx) error {
	noStore(c)
	return c.Status(fiber.StatusNotFound).SendString("not found")
}

// fail renders err as an error page: its message when it is one a user can
// act on, "internal error" otherwise (logged in full).
func (p *Pages) fail(c *fiber.Ctx, s *auth.Session, err error) error {
	status := p.statusOf(err)
	if status >= fiber.StatusInternalServerError {
		p.log.WithError(err).WithField("path", c.Path()).Error("render page")
	}
	title := "Error"
	if status == fiber.StatusNotFound {
		title = "Not found"
	}
	pg := p.newPage(title, s)
	pg.Error = controller.ErrorMessage(err)
	return p.render(c, status, "error", pg)
}

// render executes a whole page into a buffer first, so a template error
// becomes a clean 500 rather than half a page.
func (p *Pages) render(c *fiber.Ctx, status int, name string, pg page) error {
	var buf bytes.Buffer
	if err := p.pages[name].ExecuteTemplate(&buf, "layout", pg); err != nil {
		p.log.WithError(err).WithField("template", name).Error("render page")
		noStore(c)
		return c.Status(fiber.StatusInternalServerError).SendString("internal error")
	}
	noStore(c)
	c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	return c.Status(status).Send(buf.Bytes())
}

func (p *Pages) renderPartial(c *fiber.Ctx, name string, data any) error {
	var buf bytes.Buffer
	if err := p.pages["dashboard"].ExecuteTemplate(&buf, name, data); err != nil {
		p.log.WithError(err).WithField("template", name).Error("render partial")
		noStore(c)
		return c.Status(fiber.StatusInternalServerError).SendString("internal error")
	}
	noStore(c)
	c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	return c.Send(buf.Bytes())
}

// seeOther redirects after a form post or to the login page; 303 makes
// the browser follow with a GET.
func seeOther(c *fiber.Ctx, to string) error {
	noStore(c)
	return c.Redirect(to, fiber.StatusSeeOther)
}

// noStore keeps pages out of caches: they show who deployed what, and the
// layout carries the session's CSRF token.
func noStore(c *fiber.Ctx) { c.Set(fiber.HeaderCacheControl, "no-store") }

// sameOrigin applies the API's rule, auth.SameOriginRequest, to the
// request.
func sameOrigin(c *fiber.Ctx) bool {
	return auth.SameOriginRequest(&c.Request().Header)
}

func (p *Pages) loginPage(c *fiber.Ctx) error {
	if _, ok := p.session(c); ok {
		return seeOther(c, "/")
	}
	return p.renderLogin(c, fiber.StatusOK, "")
}

func (p *Pages) renderLogin(c *fiber.Ctx, status int, msg string) error {
	pg := p.newPage("Log in", nil)
	pg.Error = msg
	pg.SessionTTL = duration(p.sessions.TTL())
	if h := p.sessions.TTL(); h >= time.Hour && h%time.Hour == 0 {
		pg.SessionTTL = fmt.Sprintf("%d h", h/time.Hour)
	}
	return p.render(c, status, "login", pg)
}

// login trades a token for a session. Failures are counted per client
// address; an address with too many is refused before its token is even
// looked at. Successes are counted per token. The token is read from the
// posted form only, never from the query string, which proxies log.
func (p *Pages) login(c *fiber.Ctx) error {
	addr := c.IP()
	log := p.log.WithField("address", addr)
	if !sameOrigin(c) {
		log.Warn("cross-site login refused")
		return p.renderLogin(c, fiber.StatusForbidden, "Cross-site request refused.")
	}
	if wait, blocked := p.limiter.Blocked(addr); blocked {
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(retryAfter(wait)))
		log.Warn("login refused: too many failures")
		return p.renderLogin(c, fiber.StatusTooManyRequests,
			fmt.Sprintf("Too many failed logins from your address. Try again in %d s.", retryAfter(wait)))
	}
	form, err := readForm(c, maxFormBody)
	if err != nil {
		return p.renderLogin(c, p.statusOf(err), controller.ErrorMessage(err))
	}
	id, ok := p.auth.Lookup(form.Get("token"))
	if !ok {
		p.limiter.Fail(addr)
		log.Warn("login failed: unknown token")
		return p.renderLogin(c, fiber.StatusUnauthorized, "That token is not valid.")
	}
	log = log.WithField("token", id.Name)
	if wait, blocked := p.logins.Blocked(id.Name); blocked {
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(retryAfter(wait)))
		log.Warn("login refused: too many logins with this token")
		p.recordAudit(c, "login", id.Name, fiber.StatusTooManyRequests, "rate_limited")
		return p.renderLogin(c, fiber.StatusTooManyRequests,
			fmt.Sprintf("Too many logins with this token. Try again in %d s.", retryAfter(wait)))
	}
	p.logins.Fail(id.Name)
	ctx, cancel := context.WithTimeout(c.UserContext(), pageTimeout)
	defer cancel()
	// A new session on every login: an id planted before login is never
	// promoted.
	if old := c.Cookies(auth.CookieName); old != "" {
		if err := p.sessions.Revoke(ctx, strings.Clone(old)); err != nil {
			log.WithError(err).Warn("revoke the session replaced by a login")
		}
	}
	s, err := p.sessions.Create(ctx, id)
	if err != nil {
		log.WithError(err).Error("create session")
		p.recordAudit(c, "login", id.Name, fiber.StatusInternalServerError, controller.EINTERNAL)
		return p.renderLogin(c, fiber.StatusInternalServerError, "Could not start a session; try again.")
	}
	ttl := p.sessions.TTL()
	c.Cookie(&fiber.Cookie{
		Name:     auth.CookieName,
		Value:    s.ID,
		Path:     "/",
		MaxAge:   int(ttl / time.Second),
		Expires:  s.Expires,
		Secure:   p.secure || c.Secure(),
		HTTPOnly: true,
		SameSite: fiber.CookieSameSiteStrictMode,
	})
	log.Info("logged in")
	p.recordAudit(c, "login", id.Name, fiber.StatusSeeOther, "ok")
	return seeOther(c, "/")
}

// logout revokes the caller's session server-side, and only it, so a
// copied cookie dies with it.
func (p *Pages) logout(c *fiber.Ctx) error {
	s, ok := p.session(c)
	if ok {
		if !sameOrigin(c) {
			return p.fail(c, &s, controller.Errorf(controller.EFORBIDDEN, "cross-site request refused"))
		}
		form, err := readForm(c, maxFormBody)
		if err != nil {
			return p.fail(c, &s, err)
		}
		token := form.Get(auth.CSRFField)
		if token == "" {
			token = c.Get(auth.CSRFHeader)
		}
		if subtle.ConstantTimeCompare([]byte(token), []byte(s.CSRF)) != 1 {
			return p.fail(c, &s, controller.Errorf(controller.EFORBIDDEN, "missing or wrong CSRF token"))
		}
		ctx, cancel := context.WithTimeout(c.UserContext(), pageTimeout)
		defer cancel()
		if err := p.sessions.Revoke(ctx, s.ID); err != nil {
			// Memory has forgotten it already; only a restart could bring
			// it back, until it expires.
			p.log.WithError(err).WithField("token", s.Name).Error("delete the logged-out session from the store")
		}
		p.log.WithField("token", s.Name).Info("logged out")
		p.recordAudit(c, "logout", s.Name, fiber.StatusSeeOther, "ok")
	}
	c.Cookie(&fiber.Cookie{
		Name:     auth.CookieName,
		Value:    "",
		Path:     "/",
		Expires:  time.Unix(1, 0),
		Secure:   p.secure || c.Secure(),
		HTTPOnly: true,
		SameSite: fiber.CookieSameSiteStrictMode,
	})
	return seeOther(c, "/login")
}

// recordAudit writes a login or logout to the audit trail, by the token
// named; losing an entry is logged, not shown to the user.
func (p *Pages) recordAudit(c *fiber.Ctx, action, token string, status int, result string) {
	e := controller.AuditEntry{
		Time: p.now().UTC(), Actor: token, Action: action, Target: token,
		Address: c.IP(), Result: result, Status: status,
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.UserContext()), pageTimeout)
	defer cancel()
	if err := p.ctl.RecordAudit(ctx, e); err != nil {
		p.log.WithError(err).WithFields(logrus.Fields{"action": action, "token": token}).Error("record audit entry")
	}
}

// retryAfter rounds up, so that a client waiting that long is no longer
// refused.
func retryAfter(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
