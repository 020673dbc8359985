package debimage

import (
	"context"
	"fmt"
	"strings"
)

// Tagger names an existing image anew (the engine's image tag call).
type Tagger interface {
	ImageTag(ctx context.Context, source, target string) error
}

// AliasOf is the stable name of a content-hashed tag, the one a user types
// and a config file names: the hash suffix cut off, or "latest" where the
// tag is the hash alone. deployd-debian:bookworm-<hash> is
// deployd-debian:bookworm, deployd-postgres:<hash> is
// deployd-postgres:latest and deployd-django-example:v2-<hash> is
// deployd-django-example:v2.
func AliasOf(tag string) string {
	i := strings.LastIndexByte(tag, ':')
	if i < 0 || strings.Contains(tag[i:], "/") {
		return tag + ":latest"
	}
	repo, name := tag[:i], tag[i+1:]
	if j := strings.LastIndexByte(name, '-'); j >= 0 {
		return repo + ":" + name[:j]
	}
	return repo + ":latest"
}

// Alias tags the content-hashed image tag with its stable name (AliasOf)
// as well and returns that name. The alias follows the newest build on the
// machine; the hashed tags stay the cache's keys.
func Alias(ctx context.Context, cli Tagger, tag string) (string, error) {
	alias := AliasOf(tag)
	if err := cli.ImageTag(ctx, tag, alias); err != nil {
		return "", fmt.Errorf("tag %s as %s: %w", tag, alias, err)
	}
	return alias, nil
}
