package controller_test

import (
	"path"
	"strings"
	"testing"

	"github.com/distribution/reference"

	"github.com/deployd/deployd/pkg/controller"
)

const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestResolveImage(t *testing.T) {
	const private = "registry.example.com/team/web"
	tests := []struct {
		name       string
		repository string
		requested  string
		want       string
		wantCode   string
	}{
		{"bare tag", "demoapp", "v2", "demoapp:v2", ""},
		{"bare tag with surrounding space", "demoapp", " v2\n", "demoapp:v2", ""},
		{"uppercase tag", "demoapp", "V2", "demoapp:V2", ""},
		{"repository and tag", "demoapp", "demoapp:v2", "demoapp:v2", ""},
		{"fully qualified docker hub reference", "demoapp", "docker.io/library/demoapp:v2", "demoapp:v2", ""},
		{"library prefix", "demoapp", "library/demoapp:v2", "demoapp:v2", ""},
		{"digest", "demoapp", "demoapp@" + digest, "demoapp@" + digest, ""},
		{"tag and digest", "demoapp", "demoapp:v2@" + digest, "demoapp:v2@" + digest, ""},
		// Without '/', ':' or '@' the request is a tag, except the
		// repository's own name, which means the repository untagged.
		{"bare repository name", "demoapp", "demoapp", "", controller.EINVALID},
		{"bare repository name with a dash", "acc-app", "acc-app", "", controller.EINVALID},
		{"last path element of a private repository", private, "web", "", controller.EINVALID},
		{"tag containing the repository's name", "demoapp", "demoapp-2", "demoapp:demoapp-2", ""},
		{"private registry reference", private, private + ":1.2", private + ":1.2", ""},
		{"private registry bare tag", private, "1.2", private + ":1.2", ""},

		{"other repository", "demoapp", "other:v1", "", controller.EFORBIDDEN},
		{"same name on docker hub is not the private repository", private, "web:1.2", "", controller.EFORBIDDEN},
		{"other registry", "demoapp", "localhost:5000/demoapp:v2", "", controller.EFORBIDDEN},

		{"empty", "demoapp", "", "", controller.EINVALID},
		{"only spaces", "demoapp", "   ", "", controller.EINVALID},
		{"space inside", "demoapp", "Bad Tag", "", controller.EINVALID},
		{"shell metacharacter", "demoapp", "v2;rm", "", controller.EINVALID},
		{"nginx metacharacters", "demoapp", "v2{}", "", controller.EINVALID},
		{"tag starting with a dot", "demoapp", ".v2", "", controller.EINVALID},
		{"tag too long", "demoapp", strings.Repeat("a", 129), "", controller.EINVALID},
		{"empty tag after colon", "demoapp", "demoapp:", "", controller.EINVALID},
		{"untagged reference", "demoapp", "docker.io/library/demoapp", "", controller.EINVALID},
		{"short digest", "demoapp", "demoapp@sha256:abc", "", controller.EINVALID},
		{"uppercase repository", "demoapp", "DemoApp:v2", "", controller.EINVALID},

		{"misconfigured service repository", "Demo", "v1", "", controller.EINTERNAL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := controller.ResolveImage(tt.repository, tt.requested)
			if code := controller.ErrorCode(err); code != tt.wantCode {
				t.Fatalf("ResolveImage(%q, %q) error code = %q (err %v), want %q", tt.repository, tt.requested, code, err, tt.wantCode)
			}
			if got != tt.want {
				t.Errorf("ResolveImage(%q, %q) = %q, want %q", tt.repository, tt.requested, got, tt.want)
			}
		})
	}
}

func TestResolveImage_TagOf128CharactersIsAccepted(t *testing.T) {
	tag := strings.Repeat("a", 128)
	got, err := controller.ResolveImage("demoapp", tag)
	if err != nil {
		t.Fatalf("ResolveImage: %v", err)
	}
	if want := "demoapp:" + tag; got != want {
		t.Errorf("ResolveImage = %q, want %q", got, want)
	}
}

// The resolved image ends up in container config, logs and the status page,
// so whatever is accepted must be a clean, parseable reference within the
// service's repository.
func FuzzResolveImage(f *testing.F) {
	for _, s := range []string{
		"v2", "demoapp:v2", "docker.io/library/demoapp:v2", "demoapp@" + digest, "other:v1",
		"Bad Tag", "v2;rm", "demoapp:", "", "demoapp", "v2\"", "a{b}", "#x", "demoapp:v2@" + digest,
		"registry.example.com/team/web:1.2", "\tv2 ", "demoapp:v'2", "localhost:5000/demoapp:v2",
	} {
		f.Add("demoapp", s)
		f.Add("registry.example.com/team/web", s)
	}
	f.Fuzz(func(t *testing.T, repository, requested string) {
		got, err := controller.ResolveImage(repository, requested)
		if err != nil {
			if got != "" {
				t.Errorf("ResolveImage(%q, %q) = %q with error %v, want \"\"", repository, requested, got, err)
			}
			code := controller.ErrorCode(err)
			switch code {
			case controller.EINVALID, controller.EFORBIDDEN, controller.EINTERNAL:
			default:
				t.Errorf("ResolveImage(%q, %q) error code = %q, want invalid, forbidden or internal", repository, requested, code)
			}
			return
		}
		if strings.ContainsAny(got, " \t\r\n\v\f;{}#\"'`") {
			t.Errorf("ResolveImage(%q, %q) = %q, contains whitespace or a metacharacter", repository, requested, got)
		}
		named, err := reference.ParseNormalizedNamed(got)
		if err != nil {
			t.Fatalf("ResolveImage(%q, %q) = %q, which does not parse: %v", repository, requested, got, err)
		}
		repo, err := reference.ParseNormalizedNamed(repository)
		if err != nil {
			t.Fatalf("ResolveImage accepted %q for an unparseable repository %q", requested, repository)
		}
		if named.Name() != repo.Name() {
			t.Errorf("ResolveImage(%q, %q) = %q, outside repository %q", repository, requested, got, repo.Name())
		}
		tag, tagged := named.(reference.Tagged)
		_, digested := named.(reference.Digested)
		if !tagged && !digested {
			t.Errorf("ResolveImage(%q, %q) = %q, has neither tag nor digest", repository, requested, got)
		}
		if tagged && !strings.ContainsAny(requested, "/:@") && tag.Tag() == path.Base(reference.Path(repo)) {
			t.Errorf("ResolveImage(%q, %q) = %q, read the repository's bare name as a tag", repository, requested, got)
		}
	})
}

func TestAllowedTag(t *testing.T) {
	const immutable = `v[0-9]+\.[0-9]+\.[0-9]+`
	tests := []struct {
		name    string
		pattern string
		image   string
		want    bool
	}{
		{"no pattern allows latest", "", "demoapp:latest", true},
		{"matching tag", immutable, "demoapp:v1.2.3", true},
		{"latest refused", immutable, "demoapp:latest", false},
		{"match must cover the whole tag", immutable, "demoapp:v1.2.3-dirty", false},
		{"prefix match is not enough", "v1", "demoapp:v10", false},
		{"alternation is anchored as a whole", "v1|main", "demoapp:xmain", false},
		{"longer alternative matches in full", "v1|v10", "demoapp:v10", true},
		{"digest is immutable and always allowed", immutable, "demoapp@" + digest, true},
		{"tag pinned by a digest is allowed", immutable, "demoapp:latest@" + digest, true},
		{"private registry tag", immutable, "registry.example.com/team/web:v2.0.0", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := controller.AllowedTag(tt.pattern, tt.image)
			if got := err == nil; got != tt.want {
				t.Fatalf("AllowedTag(%q, %q) = %v, want allowed %v", tt.pattern, tt.image, err, tt.want)
			}
			if err != nil && controller.ErrorCode(err) != controller.EINVALID {
				t.Errorf("error code = %q, want %q", controller.ErrorCode(err), controller.EINVALID)
			}
			if err != nil && (!strings.Contains(err.Error(), "allowed_tags") || !strings.Contains(err.Error(), tt.pattern)) {
				t.Errorf("error %q does not name allowed_tags and its pattern", err)
			}
		})
	}
}
