package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestPing_ExitCodeFollowsHealthz(t *testing.T) {
	tests := []struct {
		name   string
		status int
		want   int
	}{
		{"healthy daemon", http.StatusOK, 0},
		{"daemon answering an error", http.StatusServiceUnavailable, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/healthz" {
					http.NotFound(w, r)
					return
				}
				w.WriteHeader(tt.status)
			}))
			defer srv.Close()
			var out, errOut bytes.Buffer
			if got := run([]string{"ping", "--url", srv.URL + "/healthz"}, &out, &errOut); got != tt.want {
				t.Fatalf("exit = %d, want %d (stderr %q)", got, tt.want, errOut.String())
			}
		})
	}
}

func TestPing_NothingListeningFails(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/healthz"
	srv.Close()
	var out, errOut bytes.Buffer
	if got := run([]string{"ping", "--url", url}, &out, &errOut); got != 1 {
		t.Fatalf("exit = %d, want 1", got)
	}
}
