package debimage

import "testing"

func TestAliasOf(t *testing.T) {
	tests := []struct{ tag, want string }{
		{"deployd-debian:bookworm-0123456789ab", "deployd-debian:bookworm"},
		{"deployd-django:0123456789ab", "deployd-django:latest"},
		{"deployd-postgres:0123456789ab", "deployd-postgres:latest"},
		{"deployd-django-example:v3-0123456789ab", "deployd-django-example:v3"},
		{"localhost:5000/deployd-postgres:0123456789ab", "localhost:5000/deployd-postgres:latest"},
		{"localhost:5000/deployd-postgres", "localhost:5000/deployd-postgres:latest"},
	}
	for _, tt := range tests {
		if got := AliasOf(tt.tag); got != tt.want {
			t.Errorf("AliasOf(%q) = %q, want %q", tt.tag, got, tt.want)
		}
	}
}
