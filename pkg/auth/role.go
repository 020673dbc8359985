// Package auth holds who may do what in deployd: roles, bearer tokens,
// browser sessions with their CSRF tokens, the same-origin check for
// cookie-authenticated requests and a failure limiter for login and
// webhook attempts. It knows nothing of HTTP frameworks; api and web
// apply it to requests.
package auth

import "fmt"

// Role is what a token may do. Roles are ordered: each one may do everything
// the roles below it may. The zero Role may do nothing.
type Role int

const (
	RoleViewer Role = iota + 1
	RoleDeployer
	RoleOperator
)

func (r Role) String() string {
	switch r {
	case RoleViewer:
		return "viewer"
	case RoleDeployer:
		return "deployer"
	case RoleOperator:
		return "operator"
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// ParseRole parses "viewer", "deployer" or "operator"; names are
// case-sensitive, as in the config file.
func ParseRole(s string) (Role, error) {
	for r := RoleViewer; r <= RoleOperator; r++ {
		if r.String() == s {
			return r, nil
		}
	}
	return 0, fmt.Errorf("unknown role %q (want viewer, deployer or operator)", s)
}

// MarshalText fails for a Role that is not one of the three, so a zero
// role is never written out as if it were a name.
func (r Role) MarshalText() ([]byte, error) {
	if r < RoleViewer || r > RoleOperator {
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
