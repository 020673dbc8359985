package main

import (
	"context"
	"testing"
	"time"

	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/deployd/deployd/internal/config"
	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/metrics"
	"github.com/deployd/deployd/pkg/trafficswitch"
)

type countingTraffic struct{}

func (countingTraffic) Window(context.Context, string, controller.Color) (int, int, error) {
	return 0, 0, nil
}
func (countingTraffic) Span() time.Duration { return time.Minute }

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

// edgeStub is a Router nobody calls: startSwitch only hands it on.
type edgeStub struct{ controller.Router }

func TestStartSwitch_GivesTheTrafficRulesTheSwitchsWindows(t *testing.T) {
	cfg := switchConfig(t, freeAddr(t))
	cfg.Watch.MaxErrorRate = 0.05
	cfg.Traffic.Switchd.Spawn = false
	if _, err := runSwitchdInProcess(t, cfg); err != nil {
		t.Fatalf("switchd: %v", err)
	}
	log, hook := logtest.NewNullLogger()
	m := &Main{Config: cfg, Logger: log, metrics: metrics.New()}
	if _, err := m.startSwitch(context.Background(), edgeStub{}); err != nil {
		t.Fatalf("startSwitch: %v", err)
	}
	t.Cleanup(func() {
		m.stopWatch()
		<-m.watchDone
	})

	if m.trafficReader == nil {
		t.Fatal("no TrafficReader in switch mode: the traffic rules would be off")
	}
	if got, want := m.trafficReader.Span(), trafficswitch.DefaultErrorWindow; got != want {
		t.Errorf("Span() = %s, want the switch's window %s", got, want)
	}
	hook.Reset()
	warnTrafficRulesOff(log, cfg, m.trafficReader)
	if n := len(hook.AllEntries()); n != 0 {
		t.Errorf("%d log entries in switch mode, want no warning", n)
	}
}
