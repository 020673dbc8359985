//go:build faultinject

package main

import (
	"testing"

	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/deployd/deployd/pkg/controller"
)

func TestFaultHook_FiresOnlyAtItsPoint(t *testing.T) {
	logger, _ := logtest.NewNullLogger()
	m := &Main{Getenv: envMap(map[string]string{faultPointEnv: controller.PointBeforeSave}), Logger: logger}
	hook := m.faultHook()
	if hook == nil {
		t.Fatal("faultHook() = nil with a known point set")
	}
	hook(controller.PointAfterStart) // any other point must not kill the test binary

	m.Getenv = noEnv
	if m.faultHook() != nil {
		t.Fatalf("faultHook() != nil without %s", faultPointEnv)
	}
}
