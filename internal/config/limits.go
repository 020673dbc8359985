package config

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"

	"github.com/docker/go-units"
	"gopkg.in/yaml.v3"

	"github.com/deployd/deployd/pkg/controller"
)

// ByteSize is an amount of memory, written as Docker writes it: "512m",
// "1g", "256MiB" or a plain number of bytes. Units are binary (1m is
// 1024*1024 bytes).
type ByteSize int64

// UnmarshalYAML reads a size with an optional unit.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("a memory size must be a number with an optional unit, such as 512m or 1g")
	}
	v, err := units.RAMInBytes(n.Value)
	if err != nil {
		return fmt.Errorf("invalid memory size %q: write it as 512m or 1g", n.Value)
	}
	*b = ByteSize(v)
	return nil
}

// MarshalYAML writes the exact number of bytes, which reads back as is.
func (b ByteSize) MarshalYAML() (any, error) { return strconv.FormatInt(int64(b), 10), nil }

// Bounds of the container limits. The engine refuses less than 6 MiB of
// memory and less than 0.01 CPU.
const (
	minMemory        = 6 << 20
	minCPUs          = 0.01
	defaultPidsLimit = 4096
)

// defaultCapDrop is dropped from every container unless the service says
// otherwise: raw sockets let a compromised app forge packets (ARP, DNS) on
// the network it shares with other services, and no web app needs them.
var defaultCapDrop = []string{"NET_RAW"}

var (
	capabilityRE = regexp.MustCompile(`^(ALL|(CAP_)?[A-Z][A-Z0-9_]*)$`)
	userRE       = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$`)
)

// validateLimits checks a service's container limits and allowed_tags.
func (s Service) validateLimits(v *validator, p string) {
	if s.Memory != 0 && s.Memory < minMemory {
		v.addf(p+".memory", "must be at least 6m (or 0 for no limit), got %d bytes", s.Memory)
	}
	if s.CPUs != 0 && (s.CPUs < minCPUs || math.IsNaN(s.CPUs) || math.IsInf(s.CPUs, 0)) {
		v.addf(p+".cpus", "must be at least 0.01 (or 0 for no limit), got %v", s.CPUs)
	}
	if s.PidsLimit < 0 {
		v.addf(p+".pids_limit", "must not be negative (0 is no limit), got %d", s.PidsLimit)
	}
	for _, list := range []struct {
		key  string
		caps []string
	}{{"cap_drop", s.CapDrop}, {"cap_add", s.CapAdd}} {
		for i, c := range list.caps {
			if !capabilityRE.MatchString(c) {
				v.addf(fmt.Sprintf("%s.%s[%d]", p, list.key, i), "must be ALL or a capability name such as NET_RAW, got %q", c)
			}
		}
	}
	if s.User != "" && !userRE.MatchString(s.User) {
		v.addf(p+".user", "must be a user or uid, optionally with :group or :gid, got %q", s.User)
	}
	if s.AllowedTags != "" {
		if _, err := controller.CompileAllowedTags(s.AllowedTags); err != nil {
			v.addf(p+".allowed_tags", "invalid regular expression: %v", err)
		}
	}
}

// containerLimits is the service's limits for the controller.
func (s Service) containerLimits() controller.ContainerLimits {
	return controller.ContainerLimits{
		Memory:          int64(s.Memory),
		NanoCPUs:        int64(math.Round(s.CPUs * 1e9)),
		PidsLimit:       int64(s.PidsLimit),
		CapDrop:         append([]string(nil), s.CapDrop...),
		CapAdd:          append([]string(nil), s.CapAdd...),
		NoNewPrivileges: s.NoNewPrivileges,
		ReadOnly:        s.ReadOnly,
		User:            s.User,
	}
}
