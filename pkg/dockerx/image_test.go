package dockerx

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/deployd/deployd/pkg/controller"
)

func imagePresent(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, map[string]any{"Id": "sha256:abc", "RepoTags": []string{"demoapp:v1"}})
}

func TestEnsureImage_Policies(t *testing.T) {
	tests := []struct {
		name      string
		policy    controller.PullPolicy
		present   bool
		pull      string // fixture served by the pull endpoint, "" for none
		wantPulls int
		wantErr   error // nil: success
	}{
		{name: "never, present", policy: controller.PullNever, present: true, wantPulls: 0},
		{name: "never, absent", policy: controller.PullNever, present: false, wantPulls: 0, wantErr: controller.ErrNotFound},
		{name: "missing, present", policy: controller.PullMissing, present: true, wantPulls: 0},
		{name: "missing, absent, pulled", policy: controller.PullMissing, present: false, pull: "pull_ok.jsonl", wantPulls: 1},
		{name: "always, present, pulled", policy: controller.PullAlways, present: true, pull: "pull_ok.jsonl", wantPulls: 1},
		{name: "missing, manifest unknown ends at once", policy: controller.PullMissing, pull: "pull_manifest_unknown.jsonl", wantPulls: 1, wantErr: controller.ErrNotFound},
		{name: "missing, transient failure retried then not found", policy: controller.PullMissing, pull: "pull_reset.jsonl", wantPulls: 3, wantErr: controller.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeEngine(t)
			if tt.present {
				f.handle("GET /images/demoapp:v1/json", imagePresent)
			}
			if tt.pull != "" {
				f.handle("POST /images/create", fixture(t, tt.pull))
			}
			c, _ := f.client(true)

			err := c.EnsureImage(context.Background(), "demoapp:v1", tt.policy, nil)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("EnsureImage: %v, want nil", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("EnsureImage: err = %v, want %v", err, tt.wantErr)
			}
			if got := len(f.requests("POST /images/create")); got != tt.wantPulls {
				t.Errorf("pulls = %d, want %d", got, tt.wantPulls)
			}
		})
	}
}

func TestEnsureImage_TransientPullFailureIsRetriedUntilItWorks(t *testing.T) {
	f := newFakeEngine(t)
	var pulls atomic.Int32
	ok := fixture(t, "pull_ok.jsonl")
	f.handle("POST /images/create", func(w http.ResponseWriter, r *http.Request) {
		if pulls.Add(1) < 3 {
			writeEngineError(w, http.StatusInternalServerError, "Get \"https://registry.example.com/v2/\": net/http: TLS handshake timeout")
			return
		}
		ok(w, r)
	})
	c, hook := f.client(true)

	if err := c.EnsureImage(context.Background(), "demoapp:v2", controller.PullAlways, nil); err != nil {
		t.Fatalf("EnsureImage: %v, want nil after retries", err)
	}
	if got := pulls.Load(); got != 3 {
		t.Errorf("pulls = %d, want 3", got)
	}
	var warned int
	for _, e := range hook.AllEntries() {
		if strings.Contains(e.Message, "retrying") {
			warned++
		}
	}
	if warned != 2 {
		t.Errorf("retry warnings = %d, want 2", warned)
	}
}

func TestEnsureImage_RegistryNotFoundStatusIsNotRetried(t *testing.T) {
	f := newFakeEngine(t)
	f.handle("POST /images/create", func(w http.ResponseWriter, _ *http.Request) {
		writeEngineError(w, http.StatusNotFound, "pull access denied for demoapp, repository does not exist or may require 'docker login'")
	})
	c, _ := f.client(true)

	err := c.EnsureImage(context.Background(), "demoapp:v9", controller.PullMissing, nil)
	if !errors.Is(err, controller.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	if want := "image demoapp:v9 not found locally and pull failed"; !strings.Contains(err.Error(), want) {
		t.Errorf("err = %q, want it to say %q", err, want)
	}
	if got := len(f.requests("POST /images/create")); got != 1 {
		t.Errorf("pulls = %d, want 1 (not found is final)", got)
	}
}

func TestEnsureImage_AlwaysWithLocalImageAndFailingPullIsNotNotFound(t *testing.T) {
	f := newFakeEngine(t)
	f.handle("GET /images/demoapp:v1/json", imagePresent)
	f.handle("POST /images/create", fixture(t, "pull_reset.jsonl"))
	c, _ := f.client(true)

	err := c.EnsureImage(context.Background(), "demoapp:v1", controller.PullAlways, nil)
	if err == nil {
		t.Fatal("EnsureImage succeeded, want the pull error (policy always)")
	}
	if errors.Is(err, controller.ErrNotFound) {
		t.Errorf("err = %v wraps ErrNotFound, but the image exists", err)
	}
}

func TestEnsureImage_InvalidReferenceIsRejectedWithoutCalls(t *testing.T) {
	f := newFakeEngine(t)
	c, _ := f.client(true)
	if err := c.EnsureImage(context.Background(), "Demo App:v1", controller.PullMissing, nil); err == nil {
		t.Fatal("EnsureImage accepted an invalid reference")
	}
	if got := len(f.requests("POST /images/create")); got != 0 {
		t.Errorf("pulls = %d, want 0", got)
	}
}

func TestClassifyPullError(t *testing.T) {
	tests := []struct {
		msg          string
		wantNotFound bool
	}{
		{"manifest unknown: manifest unknown", true},
		{"manifest for demoapp:v9 not found: manifest unknown", true},
		{"pull access denied for demoapp, repository does not exist or may require 'docker login'", true},
		{"name unknown: repository name not known to registry", true},
		{"Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup registry-1.docker.io: no such host", false},
		{"read: connection reset by peer", false},
		{"received unexpected HTTP status: 503 Service Unavailable", false},
	}
	for _, tt := range tests {
		t.Run(tt.msg, func(t *testing.T) {
			err := classifyPullError(errors.New(tt.msg))
			if got := errors.Is(err, controller.ErrNotFound); got != tt.wantNotFound {
				t.Errorf("not found = %v, want %v (err %v)", got, tt.wantNotFound, err)
			}
		})
	}
}
