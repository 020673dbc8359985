package main

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"time"

	"github.com/deployd/deployd/internal/config"
)

// The resilience strategy does no switch: under the same load it kills,
// restarts and upgrades deployd's processes, the way a crash, a package
// upgrade or an operator does, and counts what the load sees. It runs two
// phases per load, one per traffic mode.
const (
	// phaseResilienceSwitch runs switchEvents against the switch-mode
	// deployd, with the load on its service (nginx → switchd → app).
	phaseResilienceSwitch = "resilience-switch"
	// phaseResilienceReload runs reloadEvents against the reload-mode
	// deployd, with the load on its service (nginx → app): the contrast.
	phaseResilienceReload = "resilience-reload"
)

// Resilience events.
const (
	// eventKillDaemon: kill -9 of the daemon, down for daemonDownFor,
	// then started again from the same configuration and data dir.
	eventKillDaemon = "kill9-deployd"
	// eventRestartDaemon: SIGTERM, the daemon's end, started again at
	// once.
	eventRestartDaemon = "restart-deployd"
	// eventUpgradeSwitchd: SIGHUP to switchd: tableflip starts a new
	// switchd, hands it the listeners, and the old one serves out its open
	// connections.
	eventUpgradeSwitchd = "upgrade-switchd"
	// eventKillSwitchd: kill -9 of a switchd the daemon did not start
	// (here: the one an upgrade started); the daemon notices at its next
	// check of switchd and starts a new one, which restores its routing
	// from its state file.
	eventKillSwitchd = "kill9-switchd"
	// eventKillSwitchdChild: kill -9 of the switchd the daemon started
	// (here: the one it started at the previous event); the daemon sees
	// its child end and starts a new one at once.
	eventKillSwitchdChild = "kill9-switchd-child"
)

var (
	// switchEvents' order makes each kill of switchd the kind it is
	// named for: the switchd after an upgrade is tableflip's child, the
	// one after a kill the daemon's.
	switchEvents = []string{eventKillDaemon, eventRestartDaemon, eventUpgradeSwitchd, eventKillSwitchd, eventKillSwitchdChild}
	reloadEvents = []string{eventKillDaemon}
)

// daemonDownFor is how long a killed daemon stays down before it is
// started again: long enough for the load to run while no daemon exists.
const daemonDownFor = 500 * time.Millisecond

// runResilience runs events in turn, opts.resilienceN() times each, on the
// deployd *d (replaced by each restart) under the load on its service.
func (w *world) runResilience(ctx context.Context, name, load string, d **daemon, events []string) (*phase, error) {
	target := w.serviceURL((*d).svc)
	n := len(events) * w.opts.resilienceN()
	return w.runPhase(ctx, name, load, target, n, func(ctx context.Context, i int, start time.Time) (switchEvent, error) {
		kind := events[i%len(events)]
		ev, err := w.resilienceEvent(ctx, kind, d, start)
		if err != nil {
			return ev, fmt.Errorf("%s (%d of %d): %w", kind, i+1, n, err)
		}
		// The next event starts from a service that answers; a failure
		// here is a service that did not come back.
		if err := waitAnswers(ctx, target, 1); err != nil {
			return ev, fmt.Errorf("after %s: %w", kind, err)
		}
		return ev, nil
	})
}

// resilienceEvent does one event to *d and returns once the process acted
// on is back: the daemon healthy, or a new switchd in the pid file. The
// event's Start is the signal, its End the process back.
func (w *world) resilienceEvent(ctx context.Context, kind string, d **daemon, start time.Time) (switchEvent, error) {
	ev := switchEvent{Label: kind}
	signalled := func() { ev.Call = int64(time.Since(start)); ev.Start = ev.Call }
	switch kind {
	case eventKillDaemon, eventRestartDaemon:
		old := *d
		if old.switchMode {
			pid, err := old.switchdPID(ctx, 0)
			if err != nil {
				return ev, err
			}
			ev.SwitchdBefore = pid
		}
		ev.PIDBefore = old.PID()
		signalled()
		if kind == eventKillDaemon {
			if err := old.Kill9(); err != nil {
				return ev, err
			}
			if err := sleepCtx(ctx, daemonDownFor); err != nil {
				return ev, err
			}
		} else if err := old.Stop(); err != nil {
			return ev, fmt.Errorf("stop deployd: %w\ndeployd log:\n%s", err, old.logTail())
		}
		next, err := old.again(ctx)
		if err != nil {
			return ev, fmt.Errorf("start deployd again: %w", err)
		}
		*d = next
		ev.End, ev.PIDAfter = int64(time.Since(start)), next.PID()
		if next.switchMode {
			// Proof that the daemon's restart left switchd alone: the same
			// process serves (the e2e tests fail when it does not; here it
			// is a figure of the event).
			pid, err := next.switchdPID(ctx, 0)
			if err != nil {
				return ev, err
			}
			ev.SwitchdAfter = pid
		}
	case eventUpgradeSwitchd, eventKillSwitchd, eventKillSwitchdChild:
		sig := syscall.SIGHUP
		if kind != eventUpgradeSwitchd {
			sig = syscall.SIGKILL
		}
		pid, err := (*d).switchdPID(ctx, 0)
		if err != nil {
			return ev, err
		}
		ev.PIDBefore = pid
		if ev.SwitchdParent, err = parentPID(pid); err != nil {
			return ev, err
		}
		child := ev.SwitchdParent == (*d).PID()
		if kind != eventUpgradeSwitchd && child != (kind == eventKillSwitchdChild) {
			return ev, fmt.Errorf("switchd %d's parent is %d, the daemon is %d: the event would not be the one named", pid, ev.SwitchdParent, (*d).PID())
		}
		signalled()
		if err := syscall.Kill(pid, sig); err != nil {
			return ev, fmt.Errorf("signal switchd %d: %w", pid, err)
		}
		next, err := (*d).switchdPID(ctx, pid)
		if err != nil {
			return ev, fmt.Errorf("after %s of switchd %d: %w\ndeployd log:\n%s", sig, pid, err, (*d).logTail())
		}
		ev.End, ev.PIDAfter = int64(time.Since(start)), next
	default:
		return ev, fmt.Errorf("unknown resilience event %q", kind)
	}
	return ev, nil
}

// resilienceResult is one event kind's effect on one load, over every
// time the event ran.
type resilienceResult struct {
	Load  string `json:"load"`
	Mode  string `json:"traffic_mode"`
	Event string `json:"event"`
	N     int    `json:"n"`
	// Failed requests attributed to the events (see eventResult).
	FailedGET  int            `json:"failed_get"`
	FailedPOST int            `json:"failed_post"`
	FailedKind map[string]int `json:"failed_by_kind"`
	// MaxFailedPerEvent is the most failed requests of one event.
	MaxFailedPerEvent int `json:"max_failed_per_event"`
	// Distributions of eventResult's times over the events, in ms.
	Outage dist          `json:"outage"`
	MaxGap dist          `json:"max_gap"`
	Back   dist          `json:"back"`
	Events []eventResult `json:"events"`
}

// eventResult is what one resilience event did to the load. A request is
// the event's when it completed from windowBefore before the signal until
// windowBefore before the next event's signal (or the phase's end).
type eventResult struct {
	AtS        float64        `json:"at_s"` // the signal, since the phase began
	FailedGET  int            `json:"failed_get"`
	FailedPOST int            `json:"failed_post"`
	FailedKind map[string]int `json:"failed_by_kind"`
	// OutageMs is the signal → the first successful response completing
	// after the event's last failed one; 0 when none failed.
	OutageMs float64 `json:"outage_ms"`
	// MaxGapMs is the longest time without a successful response from the
	// signal until windowAfter after BackMs: a stall shows here even when
	// nothing failed.
	MaxGapMs float64 `json:"max_gap_ms"`
	// BackMs is the signal → the process back: the daemon answering
	// /healthz, or a new switchd in the pid file.
	BackMs float64 `json:"back_ms"`
}

// isResilience says whether a phase is one of the resilience strategy's.
func isResilience(name string) bool {
	return name == phaseResilienceSwitch || name == phaseResilienceReload
}

// analyzeResilience sums up a resilience phase per event kind, in the
// order the events first ran.
func analyzeResilience(p *phase) []resilienceResult {
	mode := config.TrafficModeReload
	if p.Strategy == phaseResilienceSwitch {
		mode = config.TrafficModeSwitch
	}
	recs := sortedByDone(p.Records)
	var out []resilienceResult
	index := map[string]int{}
	outage, gap, back := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	for i, ev := range p.Switches {
		until := int64(p.Duration)
		if i+1 < len(p.Switches) {
			until = p.Switches[i+1].Start - int64(windowBefore)
		}
		er := measureEvent(recs, ev, until, int64(p.Duration))
		j, ok := index[ev.Label]
		if !ok {
			j = len(out)
			index[ev.Label] = j
			out = append(out, resilienceResult{Load: p.Load, Mode: mode, Event: ev.Label, FailedKind: zeroKinds()})
		}
		r := &out[j]
		r.N++
		r.FailedGET += er.FailedGET
		r.FailedPOST += er.FailedPOST
		for k, v := range er.FailedKind {
			r.FailedKind[k] += v
		}
		r.Events = append(r.Events, er)
		r.MaxFailedPerEvent = max(r.MaxFailedPerEvent, er.FailedGET+er.FailedPOST)
		outage[ev.Label] = append(outage[ev.Label], er.OutageMs)
		gap[ev.Label] = append(gap[ev.Label], er.MaxGapMs)
		back[ev.Label] = append(back[ev.Label], er.BackMs)
	}
	for i := range out {
		e := out[i].Event
		out[i].Outage, out[i].MaxGap, out[i].Back = distOf(outage[e]), distOf(gap[e]), distOf(back[e])
	}
	return out
}

// measureEvent measures ev on recs (sorted by completion), with the
// event's requests completing before until; end is the phase's end.
func measureEvent(recs []record, ev switchEvent, until, end int64) eventResult {
	er := eventResult{AtS: float64(ev.Start) / 1e9, BackMs: ms(ev.End - ev.Start), FailedKind: zeroKinds()}
	from := ev.Start - int64(windowBefore)
	i, _ := slices.BinarySearchFunc(recs, from, func(r record, t int64) int { return cmpInt64(r.done(), t) })
	lastFail := int64(-1)
	for ; i < len(recs) && recs[i].done() < until; i++ {
		r := recs[i]
		if r.Kind == kindOK {
			continue
		}
		er.FailedKind[kindNames[r.Kind]]++
		if r.Method == methodPOST {
			er.FailedPOST++
		} else {
			er.FailedGET++
		}
		lastFail = r.done()
	}
	if lastFail >= 0 {
		back := end
		if v, ok := firstOK(recs, lastFail+1); ok {
			back = v
		}
		er.OutageMs = ms(max(0, back-ev.Start))
	}
	limit := min(ev.End+int64(windowAfter), until)
	prev, longest := ev.Start, int64(0)
	j, _ := slices.BinarySearchFunc(recs, ev.Start, func(r record, t int64) int { return cmpInt64(r.done(), t) })
	for ; j < len(recs) && recs[j].done() <= limit; j++ {
		if recs[j].Kind == kindOK {
			longest = max(longest, recs[j].done()-prev)
			prev = recs[j].done()
		}
	}
	er.MaxGapMs = ms(max(longest, limit-prev))
	return er
}

// firstOK is the completion time of the first successful response
// completing at from or later; recs are sorted by completion.
func firstOK(recs []record, from int64) (int64, bool) {
	i, _ := slices.BinarySearchFunc(recs, from, func(r record, t int64) int { return cmpInt64(r.done(), t) })
	for ; i < len(recs); i++ {
		if recs[i].Kind == kindOK {
			return recs[i].done(), true
		}
	}
	return 0, false
}

// zeroKinds is a count per failure kind, every kind present.
func zeroKinds() map[string]int {
	m := make(map[string]int, numKinds-1)
	for k := kindOK + 1; k < numKinds; k++ {
		m[kindNames[k]] = 0
	}
	return m
}
