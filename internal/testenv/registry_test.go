package testenv

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRegistry_PushedDigestIsTheRegistrysManifest(t *testing.T) {
	cli := Docker(t)
	local := DemoImage(t, cli, "deployd-testenv-demo:v1", map[string]string{"APP_VERSION": "v1"})
	reg := StartRegistry(t)
	repo := UniqueService(t) + "/demoapp"

	ref, digest := reg.Push(t, cli, local, repo+":stable")
	if want := reg.Addr() + "/" + repo + ":stable"; ref != want {
		t.Fatalf("ref = %q, want %q", ref, want)
	}
	if !strings.HasPrefix(digest, "sha256:") {
		t.Fatalf("digest = %q, want sha256:...", digest)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+reg.Addr()+"/v2/"+repo+"/manifests/stable", nil)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	// The engine pushes a schema 2 manifest; without this Accept the
	// registry would answer with a converted schema 1 manifest of another
	// digest.
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET manifest: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET manifest: status = %d, want 200", resp.StatusCode)
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != digest {
		t.Fatalf("Docker-Content-Digest = %q, want the pushed %q", got, digest)
	}
}

func TestRegistry_StopMakesItUnreachable(t *testing.T) {
	reg := StartRegistry(t)
	reg.Stop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if code, _, err := Get(ctx, "http://"+reg.Addr()+"/v2/"); err == nil {
		t.Fatalf("GET /v2/ after Stop: status %d, want a connection error", code)
	}
	reg.Stop(t) // a second Stop, and the cleanup's, are no-ops
}
