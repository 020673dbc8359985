package main

import (
	"testing"
	"time"

	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/deployd/deployd/internal/config"
	"github.com/deployd/deployd/pkg/controller"
)

type countingTraffic struct{}

func (countingTraffic) Window(string, controller.Color) (int, int) { return 0, 0 }
func (countingTraffic) Span() time.Duration                        { return time.Minute }

func TestWarnTrafficRulesOff_WarnsOncePerRuleWithoutAReader(t *testing.T) {
	cfg := config.Default()
	cfg.Watch.MaxErrorRate = 0.05
	svc := config.DefaultService()
	svc.Bake, svc.BakeMaxErrorRate = time.Minute, 0.02
	cfg.Services = map[string]config.Service{"web": svc, "api": config.DefaultService()}

	log, hook := logtest.NewNullLogger()
	warnTrafficRulesOff(log, cfg, nil)
	want := []string{
		"watch.max_error_rate is set, but only traffic.mode: switch counts requests per color: the rule is off",
		"services.web.bake_max_error_rate is set, but only traffic.mode: switch counts requests per color: the rule is off",
	}
	entries := hook.AllEntries()
	if len(entries) != len(want) {
		t.Fatalf("%d log entries, want %d", len(entries), len(want))
	}
	for i, e := range entries {
		if e.Message != want[i] || e.Level.String() != "warning" {
			t.Errorf("entry %d = %s %q, want warning %q", i, e.Level, e.Message, want[i])
		}
	}

	hook.Reset()
	warnTrafficRulesOff(log, cfg, countingTraffic{})
	if n := len(hook.AllEntries()); n != 0 {
		t.Errorf("%d log entries with a reader, want none", n)
	}
}
