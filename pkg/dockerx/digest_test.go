package dockerx

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/deployd/deployd/internal/testenv"
	"github.com/deployd/deployd/pkg/controller"
)

const someDigest = "sha256:0c05dc789522d0c9d2a9002b61175c7778a89871b9ffac7bf7b393df63328d1c"

func TestPinnedRef_DigestRefIsNormalisedWithoutAsking(t *testing.T) {
	// A zero Client: any call to the engine would panic.
	c := &Client{}
	tests := []struct{ ref, want string }{
		{"127.0.0.1:5001/team/app@" + someDigest, "127.0.0.1:5001/team/app@" + someDigest},
		{"127.0.0.1:5001/team/app:stable@" + someDigest, "127.0.0.1:5001/team/app@" + someDigest},
		{"docker.io/library/nginx@" + someDigest, "nginx@" + someDigest},
		{"demoapp@" + someDigest, "demoapp@" + someDigest},
	}
	for _, tt := range tests {
		got, err := c.PinnedRef(context.Background(), tt.ref)
		if err != nil {
			t.Fatalf("PinnedRef(%q): %v", tt.ref, err)
		}
		if got != tt.want {
			t.Fatalf("PinnedRef(%q) = %q, want %q", tt.ref, got, tt.want)
		}
	}
}

func TestPinnedRef_RefWithoutRegistryIsInvalid(t *testing.T) {
	c := &Client{}
	for _, ref := range []string{"demoapp:v1", "team/app:v1", "nginx", "Bad Ref!"} {
		_, err := c.PinnedRef(context.Background(), ref)
		if got := controller.ErrorCode(err); got != controller.EINVALID {
			t.Fatalf("PinnedRef(%q) error code = %q (%v), want %q", ref, got, err, controller.EINVALID)
		}
	}
	_, err := c.PinnedRef(context.Background(), "demoapp:v1")
	if !strings.Contains(err.Error(), "demoapp:v1") || !strings.Contains(err.Error(), "registry") {
		t.Fatalf("error = %q, want it to name the image and ask for a registry", err)
	}
}

func TestNamesRegistry(t *testing.T) {
	tests := []struct {
		ref  string
		want bool
	}{
		{"demoapp:v1", false},
		{"team/app:v1", false},
		{"localhost/app:v1", true},
		{"127.0.0.1:5001/app:v1", true},
		{"registry.example.com/team/app", true},
		{"docker.io/library/nginx:1.25", true},
	}
	for _, tt := range tests {
		if got := namesRegistry(tt.ref); got != tt.want {
			t.Fatalf("namesRegistry(%q) = %v, want %v", tt.ref, got, tt.want)
		}
	}
}

// pinCtx bounds one PinnedRef call of the integration tests.
func pinCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestPinnedRef_PinsToTheRegistrysDigestAndFollowsAMovedTag(t *testing.T) {
	c, v1, _ := realClient(t)
	cli := testenv.Docker(t)
	v2 := testenv.DemoImage(t, cli, "deployd-dockerx-demo:v2", map[string]string{"APP_VERSION": "v2"})
	reg := testenv.StartRegistry(t)
	repo := testenv.UniqueService(t) + "/demoapp"

	ref, d1 := reg.Push(t, cli, v1, repo+":stable")
	got, err := c.PinnedRef(pinCtx(t), ref)
	if err != nil {
		t.Fatalf("PinnedRef(%s): %v", ref, err)
	}
	if want := reg.Addr() + "/" + repo + "@" + d1; got != want {
		t.Fatalf("PinnedRef(%s) = %q, want %q", ref, got, want)
	}

	_, d2 := reg.Push(t, cli, v2, repo+":stable")
	if d2 == d1 {
		t.Fatalf("v1 and v2 pushed with the same digest %s", d1)
	}
	got, err = c.PinnedRef(pinCtx(t), ref)
	if err != nil {
		t.Fatalf("PinnedRef(%s) after the tag moved: %v", ref, err)
	}
	if want := reg.Addr() + "/" + repo + "@" + d2; got != want {
		t.Fatalf("PinnedRef(%s) after the tag moved = %q, want %q", ref, got, want)
	}
}

func TestPinnedRef_UnknownTagOrRepositoryIsNotFound(t *testing.T) {
	c, v1, _ := realClient(t)
	cli := testenv.Docker(t)
	reg := testenv.StartRegistry(t)
	repo := testenv.UniqueService(t) + "/demoapp"
	reg.Push(t, cli, v1, repo+":stable")

	for _, ref := range []string{reg.Addr() + "/" + repo + ":nope", reg.Addr() + "/" + repo + "-other:stable"} {
		_, err := c.PinnedRef(pinCtx(t), ref)
		if !errors.Is(err, controller.ErrNotFound) {
			t.Fatalf("PinnedRef(%s) = %v, want ErrNotFound", ref, err)
		}
		if !strings.Contains(err.Error(), ref) {
			t.Fatalf("error = %q, want it to name %s", err, ref)
		}
	}
}

func TestPinnedRef_StoppedRegistryIsUnavailableAfterRetries(t *testing.T) {
	c, v1, _ := realClient(t)
	cli := testenv.Docker(t)
	reg := testenv.StartRegistry(t)
	repo := testenv.UniqueService(t) + "/demoapp"
	ref, _ := reg.Push(t, cli, v1, repo+":stable")
	reg.Stop(t)

	_, err := c.PinnedRef(pinCtx(t), ref)
	if !errors.Is(err, controller.ErrUnavailable) {
		t.Fatalf("PinnedRef(%s) with the registry stopped = %v, want ErrUnavailable", ref, err)
	}
	if !strings.Contains(err.Error(), "after 2 tries") {
		t.Fatalf("error = %q, want it to say the client's 2 tries were made", err)
	}
}

func TestPinnedRef_LocalOnlyImageIsInvalid(t *testing.T) {
	c, v1, _ := realClient(t)
	// Present in the local store, but that is not where a cluster's nodes
	// get their images from.
	_, err := c.PinnedRef(pinCtx(t), v1)
	if got := controller.ErrorCode(err); got != controller.EINVALID {
		t.Fatalf("PinnedRef(%s) error code = %q (%v), want %q", v1, got, err, controller.EINVALID)
	}
}

// The local engine runs what it has: the controller must not take its
// digest lookup for a cluster runtime's pinning, or every single-host
// deploy of a local image would fail for want of a registry.
func TestClient_IsNotAnImagePinner(t *testing.T) {
	if _, ok := any(&Client{}).(controller.ImagePinner); ok {
		t.Fatal("*dockerx.Client implements controller.ImagePinner")
	}
}
