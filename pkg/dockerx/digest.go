package dockerx

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/docker/docker/client"

	"github.com/deployd/deployd/pkg/controller"
)

// PinnedRef returns ref pinned by digest, "<repository>@sha256:...", in
// familiar form. The digest is the registry's, asked through the engine's
// distribution endpoint rather than read from the local store, so every node
// of a cluster that runs the pinned reference runs exactly those bytes.
//
// A ref that already carries a digest is returned normalised (without its
// tag, if it had one) and the registry is not asked. Errors:
//   - ref names no registry host ("demoapp:v1", or "nginx:1.25" without
//     "docker.io/"): a *controller.Error with code EINVALID;
//   - the tag or repository is not in the registry (or not ours to see):
//     wraps controller.ErrNotFound;
//   - the registry does not answer after the client's pull retries, or the
//     engine does not answer: wraps controller.ErrUnavailable.
func (c *Client) PinnedRef(ctx context.Context, ref string) (string, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", controller.Errorf(controller.EINVALID, "pin image %s: invalid reference: %v", ref, err)
	}
	if digested, ok := named.(reference.Digested); ok {
		pinned, err := reference.WithDigest(reference.TrimNamed(named), digested.Digest())
		if err != nil {
			return "", controller.Errorf(controller.EINVALID, "pin image %s: %v", ref, err)
		}
		return reference.FamiliarString(pinned), nil
	}
	if !namesRegistry(ref) {
		return "", controller.Errorf(controller.EINVALID,
			"image %s names no registry: a cluster needs an image from a registry (host/repository:tag, docker.io/... for Docker Hub) so that every node runs the same bytes", ref)
	}
	tagged := reference.TagNameOnly(named)
	ref = reference.FamiliarString(tagged)

	wait := c.pullBackoff
	for try := 1; ; try++ {
		pinned, err := c.distributionPin(ctx, tagged)
		if err == nil {
			return reference.FamiliarString(pinned), nil
		}
		if errors.Is(err, controller.ErrNotFound) || errors.Is(err, controller.ErrUnavailable) || ctx.Err() != nil {
			return "", err
		}
		if try >= c.pullRetries {
			return "", fmt.Errorf("pin image %s: registry did not answer after %d tries: %w: %w", ref, try, controller.ErrUnavailable, err)
		}
		c.log.WithField("image", ref).WithField("try", try).WithError(err).Warn("registry lookup failed, retrying")
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("pin image %s: %w (last error: %w)", ref, ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(wait*2, maxPullBackoff)
	}
}

// distributionPin asks the registry, through the engine, for the digest of
// tagged's manifest (for a multi-platform image, its index) and returns
// tagged's repository with that digest. Absent tags and
// repositories, and access denied, wrap controller.ErrNotFound; an engine
// that does not answer wraps controller.ErrUnavailable; anything else (the
// registry unreachable, a 5xx) is returned as is, for the caller to retry.
func (c *Client) distributionPin(ctx context.Context, tagged reference.Named) (reference.Canonical, error) {
	ref := reference.FamiliarString(tagged)
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	// "" for the registry auth: the engine then uses no credentials.
	info, err := c.api.DistributionInspect(ctx, ref, "")
	switch {
	case err == nil:
		pinned, err := reference.WithDigest(reference.TrimNamed(tagged), info.Descriptor.Digest)
		if err != nil {
			return nil, fmt.Errorf("pin image %s: the registry's digest %q: %w", ref, info.Descriptor.Digest, err)
		}
		return pinned, nil
	case client.IsErrConnectionFailed(err):
		return nil, fmt.Errorf("pin image %s: %w: %w", ref, controller.ErrUnavailable, err)
	case cerrdefs.IsNotFound(err), cerrdefs.IsUnauthorized(err), cerrdefs.IsPermissionDenied(err):
		// Registries answer "denied" for a repository that does not exist
		// as well as for one we may not read: to us both are absent.
		return nil, fmt.Errorf("image %s not found in its registry: %w: %w", ref, controller.ErrNotFound, err)
	default:
		return nil, fmt.Errorf("ask the registry: %w", err)
	}
}

// namesRegistry reports whether ref's first path component is a registry
// host, by the rule the reference grammar uses: it contains "." or ":", or
// is "localhost". "demoapp:v1" and "team/app:v1" name none.
func namesRegistry(ref string) bool {
	host, _, ok := strings.Cut(ref, "/")
	if !ok {
		return false
	}
	return strings.ContainsAny(host, ".:") || host == "localhost"
}
