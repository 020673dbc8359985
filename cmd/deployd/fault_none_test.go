//go:build !faultinject

package main

import (
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

func TestFaultHook_ProductionBuildWarnsAndHasNone(t *testing.T) {
	logger, logs := logtest.NewNullLogger()
	m := &Main{Getenv: envMap(map[string]string{faultPointEnv: "after-start"}), Logger: logger}
	if m.faultHook() != nil {
		t.Fatal("faultHook() != nil in a build without the faultinject tag")
	}
	e := logs.LastEntry()
	if e == nil || e.Level != logrus.WarnLevel || !strings.Contains(e.Message, "this build has no fault points") {
		t.Fatalf("last log entry = %+v, want a warning that this build has no fault points", e)
	}

	logs.Reset()
	m.Getenv = noEnv
	if m.faultHook() != nil || len(logs.AllEntries()) != 0 {
		t.Fatalf("without %s: hook or %d log entries, want neither", faultPointEnv, len(logs.AllEntries()))
	}
}
