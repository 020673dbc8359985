//go:build faultinject

package main

import (
	"os"
	"syscall"

	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/nginxconf"
)

// This file is compiled only with -tags faultinject, as the end-to-end
// tests build deployd (internal/lab.BuildDeployd): a production binary
// holds no code that kills itself.

// faultPoints are the points a fault hook can stop at.
var faultPoints = []string{
	controller.PointAfterStart, controller.PointDuringHealth, controller.PointBeforeSave,
	nginxconf.PointAfterUpstreamWritten, nginxconf.PointAfterReload,
}

// faultHook returns nil unless DEPLOYD_FAULT_POINT names a point; then a
// hook that SIGKILLs this process when a deploy reaches that point. SIGKILL,
// not an exit: nothing may run on the way out, exactly as with kill -9.
func (m *Main) faultHook() controller.Hook {
	point := m.Getenv(faultPointEnv)
	if point == "" {
		return nil
	}
	known := false
	for _, p := range faultPoints {
		known = known || p == point
	}
	log := m.Logger.WithField("point", point)
	if !known {
		log.WithField("points", faultPoints).Warn(faultPointEnv + " names no known point; it will never fire")
	} else {
		log.Warn(faultPointEnv + " is set: deployd kills itself when a deploy reaches this point")
	}
	return func(p string) {
		if p != point {
			return
		}
		log.Error("fault point reached: killing deployd with SIGKILL")
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	}
}
