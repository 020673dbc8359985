package dockerx

import (
	"github.com/docker/docker/api/types/container"

	"github.com/deployd/deployd/pkg/controller"
)

// readOnlyTmpfs is what a read-only container gets on /tmp: most runtimes
// write temporary files there, and noexec keeps it from being a place to
// drop and run a payload.
const readOnlyTmpfs = "rw,noexec,nosuid,nodev,size=64m"

// applyLimits sets l on a container about to be created.
func applyLimits(cfg *container.Config, hostCfg *container.HostConfig, l controller.ContainerLimits) {
	cfg.User = l.User
	hostCfg.Memory = l.Memory
	hostCfg.NanoCPUs = l.NanoCPUs
	if l.PidsLimit > 0 {
		pids := l.PidsLimit
		hostCfg.PidsLimit = &pids
	}
	hostCfg.CapDrop = append([]string(nil), l.CapDrop...)
	hostCfg.CapAdd = append([]string(nil), l.CapAdd...)
	if l.NoNewPrivileges {
		hostCfg.SecurityOpt = append(hostCfg.SecurityOpt, "no-new-privileges:true")
	}
	if l.ReadOnly {
		hostCfg.ReadonlyRootfs = true
		hostCfg.Tmpfs = map[string]string{"/tmp": readOnlyTmpfs}
	}
}
