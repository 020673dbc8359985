package main

import (
	"math"
	"slices"
	"time"
)

// Switch window around a switch: failures inside it are blamed on it.
const (
	windowBefore = 100 * time.Millisecond
	windowAfter  = time.Second
	bucket       = 100 * time.Millisecond
)

// result is everything a run reports; it is the JSON file.
type result struct {
	Created    time.Time        `json:"created"`
	Command    string           `json:"command"`
	Options    options          `json:"options"`
	Machine    machine          `json:"machine"`
	Strategies []strategyResult `json:"strategies"`
	// Resilience is the resilience strategy's events, per load, traffic
	// mode and event kind; its phases are also in Strategies, by name.
	Resilience []resilienceResult `json:"resilience,omitempty"`
	// Goals are issue 12's goals for the switch, per load, as measured.
	Goals []goal `json:"goals,omitempty"`
}

// failures counts failed requests by method and kind.
type failures struct {
	// ByKind[method][kind]; kind 0 (ok) stays 0.
	GET      map[string]int `json:"get"`
	POST     map[string]int `json:"post"`
	Total    int            `json:"total"`
	InWindow int            `json:"in_switch_windows"`
}

// dist is a latency distribution in milliseconds.
type dist struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

type strategyResult struct {
	Name string `json:"name"`
	Load string `json:"load"`
	// LoadAvg is the machine's 1-minute load average at the phase's start
	// and end.
	LoadAvg     [2]float64    `json:"load_avg_1m"`
	DurationSec float64       `json:"duration_s"`
	Requests    int           `json:"requests"`
	RPS         float64       `json:"rps"`
	Failures    failures      `json:"failures"`
	Switches    []switchEvent `json:"switches"`
	// Switch start → first response from the new color / last from the old.
	FirstNew dist `json:"switch_to_first_new"`
	LastOld  dist `json:"switch_to_last_old"`
	// Switch end (deployd: reload confirmed) → last response from the old
	// color; 0 when none came after the end.
	LastOldAfterEnd dist `json:"switch_end_to_last_old"`
	// Deploys' and rollbacks' step durations, p50 by step name.
	DeploySteps   map[string]float64 `json:"deploy_steps_p50_ms,omitempty"`
	RollbackSteps map[string]float64 `json:"rollback_steps_p50_ms,omitempty"`
	// Deploys and rollbacks: API call to the deployment's end.
	DeployTotal   dist `json:"deploy_total"`
	RollbackTotal dist `json:"rollback_total"`
	// API call → every response from the target color (rollbacks only).
	Rollback dist `json:"rollback_latency"`
	// Deploys only: total − health step, and the same without the drain.
	Overhead        dist `json:"deploy_overhead"`
	OverheadNoDrain dist `json:"deploy_overhead_without_drain"`
	// Recreate only: stop call → new container answering /health.
	Downtime dist `json:"recreate_stop_to_ready"`
	// Request latency of successful requests.
	Latency dist `json:"request_latency"`
	// Against the reload path of the same load (deployd in reload mode,
	// where nginx talks to the containers directly): RPS ratio and the
	// latency differences. Unset for the reference itself.
	VsReloadPath *comparison     `json:"vs_reload_path,omitempty"`
	Footprint    *footprintStats `json:"deployd_footprint,omitempty"`
	Timeline     []bucketStat    `json:"timeline_100ms"`
}

type footprintStats struct {
	footprint
	CPUPerDeploy float64 `json:"cpu_seconds_per_deployment"`
	// CPUPer1kRequests is the phase's CPU seconds of deployd's processes
	// (the daemon, and switchd in switch mode) per 1,000 requests of the
	// load, deploys included (in reload mode it is all deploy work).
	CPUPer1kRequests float64 `json:"cpu_seconds_per_1k_requests"`
	StatusAPI        dist    `json:"status_api_latency"`
}

// bucketStat is one 100 ms bucket of the timeline.
type bucketStat struct {
	OK     int `json:"ok"`
	Failed int `json:"failed"`
	Blue   int `json:"blue"`
	Green  int `json:"green"`
}

func analyze(opts options, phases []*phase) *result {
	res := &result{Options: opts}
	for _, p := range phases {
		res.Strategies = append(res.Strategies, analyzePhase(p))
		if isResilience(p.Strategy) {
			res.Resilience = append(res.Resilience, analyzeResilience(p)...)
		}
	}
	compare(res)
	return res
}

func analyzePhase(p *phase) strategyResult {
	r := strategyResult{Name: p.Strategy, Load: p.Load, LoadAvg: p.LoadAvg, DurationSec: p.Duration.Seconds(), Requests: len(p.Records), Switches: p.Switches}
	if p.Duration > 0 {
		r.RPS = float64(len(p.Records)) / p.Duration.Seconds()
	}
	r.Failures = countFailures(p.Records, p.Switches)

	recs := sortedByDone(p.Records)

	var firstNew, lastOld, lastOldEnd, depTotal, rbTotal []float64
	steps := map[string]map[string][]float64{}
	var rollback, overhead, noDrain, downtime, lat []float64
	for i, s := range p.Switches {
		next := int64(math.MaxInt64)
		if i+1 < len(p.Switches) {
			next = p.Switches[i+1].Call
		}
		if s.From != "" && s.To != "" && s.From != s.To {
			from, to := colorCode(s.From), colorCode(s.To)
			if v, ok := firstResponse(recs, s.Start, next, to); ok {
				firstNew = append(firstNew, ms(v-s.Start))
			}
			if v, ok := lastResponse(recs, s.Start, next, from); ok {
				lastOld = append(lastOld, ms(max(0, v-s.Start)))
				lastOldEnd = append(lastOldEnd, ms(max(0, v-s.End)))
			} else {
				lastOld = append(lastOld, 0)
				lastOldEnd = append(lastOldEnd, 0)
			}
			if s.Label == "rollback" {
				if v, ok := lastNotResponse(recs, s.Call, next, to); ok {
					rollback = append(rollback, ms(v-s.Call))
				} else if v, ok := firstResponse(recs, s.Call, next, to); ok {
					rollback = append(rollback, ms(v-s.Call))
				}
			}
		}
		if s.Label == "deploy" && s.TotalNs > 0 {
			overhead = append(overhead, ms(s.TotalNs-s.HealthNs))
			noDrain = append(noDrain, ms(s.TotalNs-s.HealthNs-s.DrainNs))
		}
		if s.TotalNs > 0 {
			if s.Label == "rollback" {
				rbTotal = append(rbTotal, ms(s.TotalNs))
			} else {
				depTotal = append(depTotal, ms(s.TotalNs))
			}
		}
		for name, v := range s.StepsMs {
			if steps[s.Label] == nil {
				steps[s.Label] = map[string][]float64{}
			}
			steps[s.Label][name] = append(steps[s.Label][name], v)
		}
		if s.Ready > 0 {
			downtime = append(downtime, ms(s.Ready-s.Start))
		}
	}
	for _, rec := range p.Records {
		if rec.Kind == kindOK {
			lat = append(lat, float64(rec.Lat)/1000)
		}
	}
	r.FirstNew, r.LastOld, r.Rollback = distOf(firstNew), distOf(lastOld), distOf(rollback)
	r.Overhead, r.OverheadNoDrain, r.Downtime = distOf(overhead), distOf(noDrain), distOf(downtime)
	r.Latency = distOf(lat)
	r.LastOldAfterEnd = distOf(lastOldEnd)
	r.DeployTotal, r.RollbackTotal = distOf(depTotal), distOf(rbTotal)
	r.DeploySteps, r.RollbackSteps = stepP50(steps["deploy"]), stepP50(steps["rollback"])
	if fp := p.Footprint; fp != nil {
		fs := &footprintStats{footprint: *fp, StatusAPI: distOf(fp.StatusLatMs)}
		if fp.Deployments > 0 {
			fs.CPUPerDeploy = fp.CPUSeconds / float64(fp.Deployments)
		}
		if fp.Switchd != nil {
			sd := *fp.Switchd
			fs.Switchd = &sd
		}
		if n := len(p.Records); n > 0 {
			fs.CPUPer1kRequests = fp.CPUSeconds * 1000 / float64(n)
			for _, pc := range fs.procs() {
				pc.CPUPer1kRequests = pc.CPUSeconds * 1000 / float64(n)
			}
		}
		r.Footprint = fs
	}
	r.Timeline = timeline(p.Records, p.Duration)
	return r
}

// sortedByDone is a copy of recs sorted by completion time.
func sortedByDone(recs []record) []record {
	s := slices.Clone(recs)
	slices.SortFunc(s, func(a, b record) int { return cmpInt64(a.done(), b.done()) })
	return s
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }

// countFailures counts failed requests; a failure is inside a switch
// window when it completed between a switch's start − windowBefore and its
// end + windowAfter.
func countFailures(recs []record, sw []switchEvent) failures {
	f := failures{GET: map[string]int{}, POST: map[string]int{}}
	for k := kindOK + 1; k < numKinds; k++ {
		f.GET[kindNames[k]] = 0
		f.POST[kindNames[k]] = 0
	}
	for _, r := range recs {
		if r.Kind == kindOK {
			continue
		}
		f.Total++
		if r.Method == methodPOST {
			f.POST[kindNames[r.Kind]]++
		} else {
			f.GET[kindNames[r.Kind]]++
		}
		t := r.done()
		for _, s := range sw {
			if t >= s.Start-int64(windowBefore) && t <= s.End+int64(windowAfter) {
				f.InWindow++
				break
			}
		}
	}
	return f
}

func (f failures) sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// firstResponse is the completion time of the first successful response
// of color c completing in [from, until); recs are sorted by completion.
func firstResponse(recs []record, from, until int64, c uint8) (int64, bool) {
	i, _ := slices.BinarySearchFunc(recs, from, func(r record, t int64) int { return cmpInt64(r.done(), t) })
	for ; i < len(recs) && recs[i].done() < until; i++ {
		if recs[i].Kind == kindOK && recs[i].Color == c {
			return recs[i].done(), true
		}
	}
	return 0, false
}

// lastResponse is the completion time of the last successful response of
// color c completing in [from, until).
func lastResponse(recs []record, from, until int64, c uint8) (int64, bool) {
	return lastMatching(recs, from, until, func(r record) bool { return r.Color == c })
}

// lastNotResponse is the completion time of the last successful response
// of another color than c completing in [from, until).
func lastNotResponse(recs []record, from, until int64, c uint8) (int64, bool) {
	return lastMatching(recs, from, until, func(r record) bool { return r.Color != c })
}

func lastMatching(recs []record, from, until int64, match func(record) bool) (int64, bool) {
	j, _ := slices.BinarySearchFunc(recs, until, func(r record, t int64) int { return cmpInt64(r.done(), t) })
	for i := j - 1; i >= 0 && recs[i].done() >= from; i-- {
		if recs[i].Kind == kindOK && match(recs[i]) {
			return recs[i].done(), true
		}
	}
	return 0, false
}

// distOf summarizes values (ms); nearest-rank percentiles.
func distOf(v []float64) dist {
	if len(v) == 0 {
		return dist{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return dist{N: len(s), P50: percentile(s, 50), P99: percentile(s, 99), Max: s[len(s)-1]}
}

// percentile of sorted s by the nearest-rank method.
func percentile(s []float64, p float64) float64 {
	if len(s) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

// timeline buckets requests by completion time.
func timeline(recs []record, d time.Duration) []bucketStat {
	n := int(d/bucket) + 1
	b := make([]bucketStat, n)
	for _, r := range recs {
		i := int(r.done() / int64(bucket))
		if i < 0 || i >= n {
			continue
		}
		if r.Kind != kindOK {
			b[i].Failed++
			continue
		}
		b[i].OK++
		switch r.Color {
		case colorBlue:
			b[i].Blue++
		case colorGreen:
			b[i].Green++
		}
	}
	return b
}

func stepP50(m map[string][]float64) map[string]float64 {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]float64, len(m))
	for k, v := range m {
		out[k] = distOf(v).P50
	}
	return out
}
