package main

import (
	"context"
	"fmt"
	"time"
)

// procCost is one of deployd's processes' cost over a phase.
type procCost struct {
	PID int `json:"pid"`
	// IdleRSS is read before the phase's load starts; PeakRSS is the
	// highest reading under load, deploys included.
	IdleRSS int64 `json:"idle_rss_bytes"`
	PeakRSS int64 `json:"peak_rss_bytes"`
	// CPUSeconds is the process's user+system time over the whole phase.
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUPer1kRequests is CPUSeconds per 1,000 requests of the load (set
	// by analyze).
	CPUPer1kRequests float64 `json:"cpu_seconds_per_1k_requests"`
}

// footprint is deployd's own cost during its phase: the daemon's and, in
// traffic.mode switch, switchd's (deployd switchd, the process that
// carries every request). The totals are of both processes together, so
// that they compare with reload mode, where the daemon is all of deployd,
// and with runs from before switchd, when the switch ran inside the
// daemon.
type footprint struct {
	// IdleRSS is the sum of the processes' idle readings; PeakRSS the
	// highest sum of readings taken at the same moment.
	IdleRSS    int64     `json:"idle_rss_bytes"`
	PeakRSS    int64     `json:"peak_rss_bytes"`
	CPUSeconds float64   `json:"cpu_seconds"`
	Daemon     procCost  `json:"daemon"`
	Switchd    *procCost `json:"switchd,omitempty"`
	// AppTasks is how many tasks of the service Swarm runs at the phase's
	// end, both colors (deployd-swarm only).
	AppTasks int `json:"app_tasks,omitempty"`
	// Deployments, StatusLatMs and StatusErrs are the daemon's API work.
	Deployments int       `json:"deployments"`
	StatusLatMs []float64 `json:"-"`
	StatusErrs  int       `json:"status_errors"`

	cpu0 []float64 // each process's CPU seconds at begin
}

// newFootprint measures d's processes: the daemon and, in switch mode, the
// switchd that runs now.
func newFootprint(ctx context.Context, d deploydUnderTest) (*footprint, error) {
	pid, err := d.daemonPID(ctx)
	if err != nil {
		return nil, err
	}
	fp := &footprint{Daemon: procCost{PID: pid}}
	if d.hasSwitchd() {
		pid, err := d.switchdPID(ctx, 0)
		if err != nil {
			return nil, err
		}
		fp.Switchd = &procCost{PID: pid}
	}
	return fp, nil
}

func (fp *footprint) procs() []*procCost {
	ps := []*procCost{&fp.Daemon}
	if fp.Switchd != nil {
		ps = append(ps, fp.Switchd)
	}
	return ps
}

// begin reads every process's CPU time so far and its idle RSS.
func (fp *footprint) begin() error {
	fp.cpu0 = fp.cpu0[:0]
	fp.IdleRSS = 0
	for _, p := range fp.procs() {
		cpu, err := cpuSeconds(p.PID)
		if err != nil {
			return err
		}
		rss, err := rssBytes(p.PID)
		if err != nil {
			return err
		}
		fp.cpu0 = append(fp.cpu0, cpu)
		p.IdleRSS, p.PeakRSS = rss, rss
		fp.IdleRSS += rss
	}
	fp.PeakRSS = fp.IdleRSS
	return nil
}

// sample reads every process's RSS once and raises the peaks; a process
// it cannot read is left out of this sample's sum.
func (fp *footprint) sample() {
	var sum int64
	for _, p := range fp.procs() {
		if r, err := rssBytes(p.PID); err == nil {
			p.PeakRSS = max(p.PeakRSS, r)
			sum += r
		}
	}
	fp.PeakRSS = max(fp.PeakRSS, sum)
}

// end reads the CPU time every process used since begin. A process that
// ended meanwhile is an error: its CPU time is lost with it.
func (fp *footprint) end() error {
	fp.CPUSeconds = 0
	for i, p := range fp.procs() {
		cpu, err := cpuSeconds(p.PID)
		if err != nil {
			return fmt.Errorf("a process of deployd ended during the phase, its CPU time is lost: %w", err)
		}
		p.CPUSeconds = cpu - fp.cpu0[i]
		fp.CPUSeconds += p.CPUSeconds
	}
	return nil
}

// sampleRSS samples fp every sampleEvery until ctx ends.
func sampleRSS(ctx context.Context, fp *footprint) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		fp.sample()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
