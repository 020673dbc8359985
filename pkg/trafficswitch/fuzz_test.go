package trafficswitch

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzValidateMessage: a message that passes is short, UTF-8 and free of
// control characters, so the 503 page carries nothing a terminal or a
// header could misread; one that fails says ErrInvalid.
func FuzzValidateMessage(f *testing.F) {
	for _, s := range []string{"", "Back at 14:00.", "a\nb", "\x1b[2J", "caf\xe9", strings.Repeat("x", MaxMessageLen+1), "a\u2028b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		err := ValidateMessage(msg)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ValidateMessage(%q) = %v, want ErrInvalid", msg, err)
			}
			return
		}
		if len(msg) > MaxMessageLen || !utf8.ValidString(msg) || strings.IndexFunc(msg, unicode.IsControl) >= 0 {
			t.Fatalf("ValidateMessage accepted %q", msg)
		}
	})
}

// FuzzParseTrustedProxies: any entry parses to valid prefixes or fails
// with ErrInvalid, never panics.
func FuzzParseTrustedProxies(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "10.0.0.0/8", "::1", "::ffff:1.2.3.4", "fe80::1%eth0", "1.2.3.4/40", "nginx"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, entry string) {
		ps, err := ParseTrustedProxies([]string{entry})
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseTrustedProxies(%q) = %v, want ErrInvalid", entry, err)
			}
			return
		}
		for _, p := range ps {
			if !p.IsValid() {
				t.Fatalf("ParseTrustedProxies(%q) gave invalid prefix %v", entry, p)
			}
		}
	})
}
