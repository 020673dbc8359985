//go:build !faultinject

package main

import "github.com/deployd/deployd/pkg/controller"

// faultHook is always nil in a build without the faultinject tag. A
// DEPLOYD_FAULT_POINT set for such a build is reported, not obeyed, and
// does not stop deployd from starting: a variable left over from testing
// must not keep a production daemon down.
func (m *Main) faultHook() controller.Hook {
	if point := m.Getenv(faultPointEnv); point != "" {
		m.Logger.WithField("point", point).Warn(faultPointEnv + " is set, but this build has no fault points (they need -tags faultinject); ignoring it")
	}
	return nil
}
