package controller

import (
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
// deploy of whatever "latest" is today cannot be rolled forward again.
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
