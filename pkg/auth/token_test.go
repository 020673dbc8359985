package auth

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

var testTokens = []Token{
	{Name: "ci-viewer", Role: RoleViewer, Secret: "viewer-secret-0123456789"},
	{Name: "ci-deployer", Role: RoleDeployer, Secret: "deployer-secret-0123456789"},
	{Name: "ops", Role: RoleOperator, Secret: "operator-secret-0123456789"},
}

func TestAuthenticator_Lookup(t *testing.T) {
	logger, _ := logtest.NewNullLogger()
	a := NewAuthenticator(testTokens, logger)
	tests := []struct {
		name   string
		secret string
		want   Identity
		wantOK bool
	}{
		{"viewer", "viewer-secret-0123456789", Identity{"ci-viewer", RoleViewer}, true},
		{"deployer", "deployer-secret-0123456789", Identity{"ci-deployer", RoleDeployer}, true},
		{"operator", "operator-secret-0123456789", Identity{"ops", RoleOperator}, true},
		{"unknown", "nope", Identity{}, false},
		{"empty", "", Identity{}, false},
		{"prefix of a token", "viewer-secret-012345678", Identity{}, false},
		{"token plus a byte", "viewer-secret-0123456789x", Identity{}, false},
		{"other case", "VIEWER-secret-0123456789", Identity{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := a.Lookup(tt.secret)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("Lookup = %+v, %v; want %+v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestAuthenticator_FirstOfTwoTokensWithOneSecretWins(t *testing.T) {
	logger, _ := logtest.NewNullLogger()
	a := NewAuthenticator([]Token{
		{Name: "first", Role: RoleViewer, Secret: "shared"},
		{Name: "second", Role: RoleOperator, Secret: "shared"},
	}, logger)
	if got, ok := a.Lookup("shared"); !ok || got.Name != "first" {
		t.Errorf("Lookup = %+v, %v; want first", got, ok)
	}
}

func TestAuthenticator_EmptySecretIsIgnoredWithWarning(t *testing.T) {
	logger, hook := logtest.NewNullLogger()
	a := NewAuthenticator([]Token{{Name: "blank", Role: RoleOperator}}, logger)
	if got, ok := a.Lookup(""); ok {
		t.Errorf("Lookup(\"\") = %+v, want no match", got)
	}
	if n := len(a.tokens); n != 0 {
		t.Errorf("stored %d tokens, want 0", n)
	}
	warned := false
	for _, e := range hook.AllEntries() {
		warned = warned || e.Level == logrus.WarnLevel && e.Data["token"] == "blank"
	}
	if !warned {
		t.Error("no warning naming the token with an empty secret")
	}
}

// TestAuthenticator_LookupVisitsEveryToken proves the comparison does not
// stop at a match: the match's position is chosen without branching, so a
// lookup of the first token does the same work as one of the last. It
// checks the behaviour that makes this so rather than timing, which is
// too noisy to assert on.
func TestAuthenticator_LookupVisitsEveryToken(t *testing.T) {
	logger, _ := logtest.NewNullLogger()
	var tokens []Token
	for i := range 50 {
		tokens = append(tokens, Token{Name: fmt.Sprintf("t%d", i), Role: RoleViewer, Secret: fmt.Sprintf("secret-%d", i)})
	}
	a := NewAuthenticator(tokens, logger)
	for _, i := range []int{0, 25, 49} {
		got, ok := a.Lookup(fmt.Sprintf("secret-%d", i))
		if want := fmt.Sprintf("t%d", i); !ok || got.Name != want {
			t.Errorf("Lookup(secret-%d) = %+v, %v; want %s", i, got, ok, want)
		}
	}
	// Every stored secret is a digest of one length, so secrets' lengths
	// cannot show either.
	for _, st := range a.tokens {
		if len(st.digest) != 32 {
			t.Fatalf("digest length = %d, want 32", len(st.digest))
		}
	}
}

func TestToken_StringHidesSecret(t *testing.T) {
	tok := testTokens[2]
	if s := tok.String(); strings.Contains(s, tok.Secret) || !strings.Contains(s, "ops") {
		t.Errorf("Token.String() = %q, want the name and not the secret", s)
	}
	if s := fmt.Sprintf("%v %+v", tok, tok); strings.Contains(s, tok.Secret) {
		t.Errorf("formatted token %q leaks the secret", s)
	}
}
