package api

import (
	"crypto/subtle"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/pkg/auth"
	"github.com/deployd/deployd/pkg/controller"
)

// apiTokens drops any token whose secret is the webhook secret: whoever
// signs webhooks must not thereby hold an API token.
func apiTokens(tokens []auth.Token, webhookSecret []byte, log logrus.FieldLogger) []auth.Token {
	if len(webhookSecret) == 0 {
		return tokens
	}
	out := make([]auth.Token, 0, len(tokens))
	for _, t := range tokens {
		if t.Secret != "" && subtle.ConstantTimeCompare([]byte(t.Secret), webhookSecret) == 1 {
			log.WithField("token", t.Name).Warn("ignoring API token whose secret is the webhook secret")
			continue
		}
		out = append(out, t)
	}
	return out
}

// bearer extracts the credentials of an "Authorization: Bearer <secret>"
// header; the scheme is case-insensitive as RFC 7235 says.
func bearer(header string) (string, bool) {
	scheme, secret, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	secret = strings.TrimLeft(secret, " ")
	if secret == "" || strings.ContainsAny(secret, " \t") {
		return "", false
	}
	return secret, true
}

// headerSecFetchSite is set by browsers on every request they send: whether
// the page that caused it is of our origin ("same-origin"), a sibling
// ("same-site"), foreign ("cross-site") or none ("none", a typed URL).
const headerSecFetchSite = "Sec-Fetch-Site"

type localKey int

const (
	localToken localKey = iota
	localRequestID
	localPanicked
	// The audit middleware reads these: who acted when no token did (the
	// webhook, or whose cookie a refused cross-site request carried), what
	// was acted on when the path does not say, and the deployment that
	// resulted.
	localActor
	localTarget
	localDeploymentID
	// localAction, when a handler sets it, names the audited action more
	// precisely than the route does (maintenance_on, maintenance_off).
	localAction
)

// TokenName returns the name of the token that authenticated the request,
// directly or through a session, or "" before authentication.
func TokenName(c *fiber.Ctx) string {
	n, _ := c.Locals(localToken).(string)
	return n
}

// authorize admits requests whose token, presented as a bearer token or
// through a session cookie, has a role of at least min.
func (s *Server) authorize(min auth.Role) fiber.Handler {
	return func(c *fiber.Ctx) error {
		id, err := s.authenticate(c)
		if err != nil {
			return err
		}
		c.Locals(localToken, id.Name)
		if id.Role < min {
			return controller.Errorf(controller.EFORBIDDEN, "token %q has role %s; this needs %s", id.Name, id.Role, min)
		}
		return c.Next()
	}
}

// authenticate finds who sent the request. An Authorization header, when
// present, decides alone: a bad one is refused even if a cookie came too.
// Without one, a session cookie is accepted; on requests that may change
// state it must come with the session's CSRF token and from our own
// origin, since a browser attaches the cookie to requests other sites
// make it send.
func (s *Server) authenticate(c *fiber.Ctx) (auth.Identity, error) {
	if h := c.Get(fiber.HeaderAuthorization); h != "" {
		secret, ok := bearer(h)
		if !ok {
			return auth.Identity{}, controller.Errorf(controller.EUNAUTHORIZED, "malformed Authorization header; want \"Bearer <token>\"")
		}
		id, ok := s.auth.Lookup(secret)
		if !ok {
			return auth.Identity{}, controller.Errorf(controller.EUNAUTHORIZED, "unknown token")
		}
		return id, nil
	}
	cookie := c.Cookies(auth.CookieName)
	if cookie == "" || s.sessions == nil {
		return auth.Identity{}, controller.Errorf(controller.EUNAUTHORIZED, "missing Authorization header; want \"Bearer <token>\" or a login session")
	}
	sess, ok := s.sessions.Get(cookie)
	if !ok {
		return auth.Identity{}, controller.Errorf(controller.EUNAUTHORIZED, "session expired or logged out; log in again")
	}
	if safeMethod(c.Method()) {
		return sess.Identity, nil
	}
	// The audit trail of a refused forgery names whose cookie it rode on,
	// without the request counting as that token's.
	c.Locals(localActor, sess.Name)
	if !auth.SameOriginRequest(&c.Request().Header) {
		s.log.WithFields(requestFields(c)).WithFields(logrus.Fields{
			"session_of": sess.Name, "origin": c.Get(fiber.HeaderOrigin), "sec_fetch_site": c.Get(headerSecFetchSite),
		}).Warn("cross-site request with a session cookie refused")
		return auth.Identity{}, controller.Errorf(controller.EFORBIDDEN, "cross-site request refused")
	}
	if subtle.ConstantTimeCompare([]byte(c.Get(auth.CSRFHeader)), []byte(sess.CSRF)) != 1 {
		s.log.WithFields(requestFields(c)).WithField("session_of", sess.Name).Warn("request with a session cookie and a missing or wrong CSRF token refused")
		return auth.Identity{}, controller.Errorf(controller.EFORBIDDEN, "missing or wrong CSRF token")
	}
	return sess.Identity, nil
}

// safeMethod reports whether a method must not change state, so a cookie
// alone may authenticate it.
func safeMethod(m string) bool {
	return m == fiber.MethodGet || m == fiber.MethodHead
}
