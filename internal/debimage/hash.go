package debimage

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// input is one named input of an image: a package list, a Dockerfile's
// text, the mirror, the tag of the image it builds on.
type input struct {
	name, value string
}

// contentHash is the first 12 hex digits of a SHA-256 over every input,
// each written with its name and length so that no two different input
// sets can produce the same stream. The order of inputs matters: callers
// list them in a fixed order.
func contentHash(inputs ...input) string {
	h := sha256.New()
	for _, in := range inputs {
		fmt.Fprintf(h, "%s %d\n%s\n", in.name, len(in.value), in.value)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// packageList is a package list as one input: sorted, so that reordering
// the list in code does not rebuild the image.
func packageList(pkgs []string) string {
	s := slices.Clone(pkgs)
	slices.Sort(s)
	return strings.Join(slices.Compact(s), " ")
}
