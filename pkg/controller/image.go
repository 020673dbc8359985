package controller

import (
	"path"
	"regexp"
	"strings"

	"github.com/distribution/reference"
)

var tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// ResolveImage turns what a deploy request names into a full image
// reference within the service's repository. A bare tag ("v2") is taken
// relative to the repository; anything else must parse with Docker's
// reference grammar, name exactly that repository and carry a tag or digest.
// An untagged reference is refused rather than read as "latest", because a
// deploy of whatever "latest" is today cannot be rolled forward again. The
// repository's own name ("demoapp", or "web" for "team/web") is refused as
// a tag too: it is what someone types meaning the repository untagged, and
// reading it as the tag "demoapp:demoapp" would deploy a surprise.
func ResolveImage(repository, requested string) (string, error) {
	requested = strings.TrimSpace(requested)
	if requested == "" {
		return "", Errorf(EINVALID, "image is required")
	}
	repo, err := reference.ParseNormalizedNamed(repository)
	if err != nil {
		return "", Errorf(EINTERNAL, "service repository %q is invalid: %v", repository, err)
	}
	if !strings.ContainsAny(requested, "/:@") {
		if !tagRE.MatchString(requested) {
			return "", Errorf(EINVALID, "invalid image tag %q", requested)
		}
		if requested == path.Base(reference.Path(repo)) {
			return "", Errorf(EINVALID, "image %q is the repository's name, not a tag: name a tag (%s:<tag>) or a digest",
				requested, reference.FamiliarName(repo))
		}
		tagged, err := reference.WithTag(repo, requested)
		if err != nil {
			return "", Errorf(EINVALID, "invalid image tag %q: %v", requested, err)
		}
		return reference.FamiliarString(tagged), nil
	}
	named, err := reference.ParseNormalizedNamed(requested)
	if err != nil {
		return "", Errorf(EINVALID, "invalid image reference %q: %v", requested, err)
	}
	if named.Name() != repo.Name() {
		return "", Errorf(EFORBIDDEN, "image %q is outside the service's repository %q",
			reference.FamiliarString(named), reference.FamiliarName(repo))
	}
	_, tagged := named.(reference.Tagged)
	_, digested := named.(reference.Digested)
	if !tagged && !digested {
		return "", Errorf(EINVALID, "image %q needs a tag or a digest", requested)
	}
	return reference.FamiliarString(named), nil
}

// AllowedTag checks image (as ResolveImage returns it) against a service's
// allowed_tags pattern, a regular expression that must match the whole tag;
// "" allows every tag. A reference with a digest is allowed whatever its
// tag: the pattern exists to refuse mutable tags such as "latest", and a
// digest cannot move. A refusal is EINVALID, naming the pattern.
func AllowedTag(pattern, image string) error {
	if pattern == "" {
		return nil
	}
	re, err := CompileAllowedTags(pattern)
	if err != nil {
		return Errorf(EINTERNAL, "service allowed_tags %q is invalid: %v", pattern, err)
	}
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return Errorf(EINVALID, "invalid image reference %q: %v", image, err)
	}
	if _, ok := named.(reference.Digested); ok {
		return nil
	}
	tagged, ok := named.(reference.Tagged)
	if !ok {
		return Errorf(EINVALID, "image %q needs a tag or a digest", image)
	}
	if !re.MatchString(tagged.Tag()) {
		return Errorf(EINVALID, "tag %q is not allowed: it does not match the service's allowed_tags %s (deploy a matching tag or a digest)",
			tagged.Tag(), pattern)
	}
	return nil
}

// CompileAllowedTags compiles an allowed_tags pattern anchored at both
// ends, so that "v1|v2" cannot pass "xv1" and "v1" cannot pass "v10". It is
// the one rule for the config's validation and for deploys.
func CompileAllowedTags(pattern string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:` + pattern + `)$`)
}

// resolveImage is ResolveImage within the service's repository, then
// AllowedTag with its allowed_tags: what every deploy request goes through.
func (s ServiceSpec) resolveImage(requested string) (string, error) {
	image, err := ResolveImage(s.Image, requested)
	if err != nil {
		return "", err
	}
	if err := AllowedTag(s.AllowedTags, image); err != nil {
		return "", err
	}
	return image, nil
}

// withDigestOf is requested with pinned's digest, keeping requested's tag
// for people to read: "demoapp:v2" and "demoapp@sha256:..." make
// "demoapp:v2@sha256:...", which Docker runs by the digest alone. When the
// two cannot be combined (pinned has no digest, or names another
// repository), pinned is returned as is.
func withDigestOf(requested, pinned string) string {
	p, err := reference.ParseNormalizedNamed(pinned)
	if err != nil {
		return pinned
	}
	digested, ok := p.(reference.Digested)
	if !ok {
		return pinned
	}
	r, err := reference.ParseNormalizedNamed(requested)
	if err != nil || r.Name() != p.Name() {
		return pinned
	}
	tagged, ok := r.(reference.Tagged)
	if !ok {
		return pinned
	}
	named, err := reference.WithTag(reference.TrimNamed(r), tagged.Tag())
	if err != nil {
		return pinned
	}
	both, err := reference.WithDigest(named, digested.Digest())
	if err != nil {
		return pinned
	}
	return reference.FamiliarString(both)
}
