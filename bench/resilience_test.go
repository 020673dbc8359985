package main

import (
	"testing"
	"time"
)

// ok and failed are records completing at ms milliseconds after the
// phase began (latency 0).
func ok(ms int64) record { return record{At: ms * 1e6, Kind: kindOK} }
func failed(ms int64, m uint8) record {
	return record{At: ms * 1e6, Kind: kindNon2xx, Method: m}
}

// Failures belong to the event whose signal they follow, from
// windowBefore before it; the outage ends at the first success after the
// event's last failure; the longest gap counts from the signal.
func TestAnalyzeResilience_FailuresOutageAndGapPerEvent(t *testing.T) {
	ms := func(v int64) int64 { return v * int64(time.Millisecond) }
	p := &phase{
		Strategy: phaseResilienceSwitch, Load: loadMixed, Duration: 10 * time.Second,
		Switches: []switchEvent{
			{Label: eventKillSwitchd, Start: ms(1000), End: ms(1500)},
			{Label: eventUpgradeSwitchd, Start: ms(5000), End: ms(5020)},
			{Label: eventKillSwitchd, Start: ms(7000), End: ms(7100)},
		},
		Records: []record{
			ok(500), failed(850, methodPOST), // before the first event's window: nobody's
			ok(990),
			failed(1010, methodGET), failed(1200, methodPOST), ok(1100), // the first kill's
			ok(1650), ok(1700), ok(2000), ok(2300), ok(2500), ok(3000),
			ok(4950), failed(4960, methodPOST), // 40 ms before the upgrade: its own
			ok(5010), ok(5030), ok(6000),
			ok(7050), ok(7120), ok(8000),
		},
	}
	rs := analyzeResilience(p)
	if len(rs) != 2 {
		t.Fatalf("results = %d, want 2 (kill9-switchd, upgrade-switchd)", len(rs))
	}
	kill, up := rs[0], rs[1]
	if kill.Event != eventKillSwitchd || kill.N != 2 || kill.FailedGET != 1 || kill.FailedPOST != 1 || kill.MaxFailedPerEvent != 2 {
		t.Errorf("kill9-switchd = %+v, want 2 events, 1 failed GET, 1 failed POST, at most 2 in one", kill)
	}
	if got, want := kill.Events[0].OutageMs, 650.0; got != want {
		t.Errorf("first kill's outage = %v ms, want %v (1000 → the success at 1650)", got, want)
	}
	if got, want := kill.Events[0].MaxGapMs, 550.0; got != want {
		t.Errorf("first kill's longest gap = %v ms, want %v (1100 → 1650)", got, want)
	}
	if got, want := kill.Events[0].BackMs, 500.0; got != want {
		t.Errorf("first kill's back = %v ms, want %v", got, want)
	}
	if e := kill.Events[1]; e.OutageMs != 0 || e.MaxGapMs != 880 {
		t.Errorf("second kill = %+v, want no outage, longest gap 880 ms (7120 → 8000, until 1 s after back)", e)
	}
	if up.FailedPOST != 1 || up.Events[0].OutageMs != 10 {
		t.Errorf("upgrade = %+v, want the failure 40 ms before its signal, outage 10 ms (5000 → 5010)", up)
	}
	if kill.Mode != "switch" {
		t.Errorf("mode = %q, want switch", kill.Mode)
	}
}
