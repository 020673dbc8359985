package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"

	"github.com/sirupsen/logrus"
)

// Token is a bearer token. Name identifies the holder in logs, audit
// entries and deployment triggers; Secret is never logged.
type Token struct {
	Name   string
	Role   Role
	Secret string
}

// String keeps the secret out of anything that formats a Token.
func (t Token) String() string { return fmt.Sprintf("token %q (%s)", t.Name, t.Role) }

// Identity is who presented a token: its name and role, never its secret.
type Identity struct {
	Name string
	Role Role
}

type storedToken struct {
	id     Identity
	digest [sha256.Size]byte
	// tag names this secret in stored sessions: a digest of the digest, cut
	// short, so it says "same secret" without helping anyone guess it.
	tag string
}

// Authenticator finds the token a secret belongs to. It is immutable after
// NewAuthenticator and safe for concurrent use.
type Authenticator struct {
	tokens []storedToken
}

// NewAuthenticator keeps the tokens' digests, not their secrets. Tokens
// with an empty secret are ignored with a warning, so a missing secret in
// config can never mean "anyone".
func NewAuthenticator(tokens []Token, log logrus.FieldLogger) *Authenticator {
	a := &Authenticator{}
	for _, t := range tokens {
		if t.Secret == "" {
			log.WithField("token", t.Name).Warn("ignoring API token with an empty secret")
			continue
		}
		d := sha256.Sum256([]byte(t.Secret))
		tag := sha256.Sum256(append([]byte("deployd session tag\x00"), d[:]...))
		a.tokens = append(a.tokens, storedToken{
			id:     Identity{Name: t.Name, Role: t.Role},
			digest: d,
			tag:    hex.EncodeToString(tag[:8]),
		})
	}
	return a
}

// Lookup finds the token whose secret is presented. It compares fixed-size
// digests with every token, without stopping at a match, so neither the
// secrets' lengths nor which token matched shows in the timing. When two
// tokens share a secret the first one configured wins.
func (a *Authenticator) Lookup(secret string) (Identity, bool) {
	if secret == "" {
		return Identity{}, false
	}
	d := sha256.Sum256([]byte(secret))
	found := -1
	for i := range a.tokens {
		eq := subtle.ConstantTimeCompare(d[:], a.tokens[i].digest[:])
		// found stays -1 until the first match; later matches do not move it.
		take := eq & subtle.ConstantTimeEq(int32(found), -1)
		found = subtle.ConstantTimeSelect(take, i, found)
	}
	if found < 0 {
		return Identity{}, false
	}
	return a.tokens[found].id, true
}

// byName returns the first token configured under name, with its tag; a
// nil Authenticator knows no token.
func (a *Authenticator) byName(name string) (Identity, string, bool) {
	if a == nil {
		return Identity{}, "", false
	}
	for _, t := range a.tokens {
		if t.id.Name == name {
			return t.id, t.tag, true
		}
	}
	return Identity{}, "", false
}
