package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/pkg/controller"
)

// Role is what a token may do. Roles are ordered: each one may do everything
// the roles below it may. The zero Role may do nothing.
type Role int

const (
	RoleViewer Role = iota + 1
	RoleDeployer
	RoleOperator
)

var roleNames = map[Role]string{
	RoleViewer:   "viewer",
	RoleDeployer: "deployer",
	RoleOperator: "operator",
}

func (r Role) String() string {
	if n, ok := roleNames[r]; ok {
		return n
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// ParseRole parses "viewer", "deployer" or "operator".
func ParseRole(s string) (Role, error) {
	for r, n := range roleNames {
		if n == s {
			return r, nil
		}
	}
	return 0, fmt.Errorf("unknown role %q (want viewer, deployer or operator)", s)
}

func (r Role) MarshalText() ([]byte, error) {
	if _, ok := roleNames[r]; !ok {
		return nil, fmt.Errorf("marshal %s: not a role", r)
	}
	return []byte(r.String()), nil
}

// UnmarshalText lets config decoders read roles by name.
func (r *Role) UnmarshalText(b []byte) error {
	p, err := ParseRole(string(b))
	if err != nil {
		return err
	}
	*r = p
	return nil
}

// Token is a bearer token of the API. Name identifies the holder in logs
// and deployment triggers; Secret is never logged.
type Token struct {
	Name   string
	Role   Role
	Secret string
}

// String keeps the secret out of anything that formats a Token.
func (t Token) String() string { return fmt.Sprintf("token %q (%s)", t.Name, t.Role) }

type storedToken struct {
	name   string
	role   Role
	digest [sha256.Size]byte
}

type authenticator struct {
	tokens []storedToken
}

func newAuthenticator(tokens []Token, webhookSecret []byte, log logrus.FieldLogger) *authenticator {
	a := &authenticator{}
	for _, t := range tokens {
		if t.Secret == "" {
			log.WithField("token", t.Name).Warn("ignoring API token with an empty secret")
			continue
		}
		if len(webhookSecret) > 0 && subtle.ConstantTimeCompare([]byte(t.Secret), webhookSecret) == 1 {
			// Whoever signs webhooks must not thereby hold an API token.
			log.WithField("token", t.Name).Warn("ignoring API token whose secret is the webhook secret")
			continue
		}
		a.tokens = append(a.tokens, storedToken{name: t.Name, role: t.Role, digest: sha256.Sum256([]byte(t.Secret))})
	}
	return a
}

// lookup finds the token whose secret is presented. It compares fixed-size
// digests with every token, without stopping at a match, so neither the
// secrets' lengths nor which token matched shows in the timing.
func (a *authenticator) lookup(secret string) (storedToken, bool) {
	d := sha256.Sum256([]byte(secret))
	found := -1
	for i := range a.tokens {
		eq := subtle.ConstantTimeCompare(d[:], a.tokens[i].digest[:])
		// Keep the first match: found stays -1 until eq is 1 and found < 0.
		take := eq & subtle.ConstantTimeEq(int32(found), -1)
		found = subtle.ConstantTimeSelect(take, i, found)
	}
	if found < 0 {
		return storedToken{}, false
	}
	return a.tokens[found], true
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

type localKey int

const (
	localToken localKey = iota
	localRequestID
	localPanicked
	// The audit middleware reads these: who acted when no token did (the
	// webhook), what was acted on when the path does not say, and the
	// deployment that resulted.
	localActor
	localTarget
	localDeploymentID
)

// TokenName returns the name of the token that authenticated the request,
// or "" before authentication.
func TokenName(c *fiber.Ctx) string {
	n, _ := c.Locals(localToken).(string)
	return n
}

// authorize admits requests that carry a known token whose role is at
// least min.
func (s *Server) authorize(min Role) fiber.Handler {
	return func(c *fiber.Ctx) error {
		secret, ok := bearer(c.Get(fiber.HeaderAuthorization))
		if !ok {
			return controller.Errorf(controller.EUNAUTHORIZED, "missing or malformed Authorization header; want \"Bearer <token>\"")
		}
		t, ok := s.auth.lookup(secret)
		if !ok {
			return controller.Errorf(controller.EUNAUTHORIZED, "unknown token")
		}
		c.Locals(localToken, t.name)
		if t.role < min {
			return controller.Errorf(controller.EFORBIDDEN, "token %q has role %s; this needs %s", t.name, t.role, min)
		}
		return c.Next()
	}
}
