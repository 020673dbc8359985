package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/docker/docker/client"

	"github.com/deployd/deployd/internal/lab"
)

// machine describes where a run happened.
type machine struct {
	CPUs          int    `json:"cpus"`
	CPUModel      string `json:"cpu_model"`
	MemoryBytes   int64  `json:"memory_bytes"`
	Kernel        string `json:"kernel"`
	GoVersion     string `json:"go_version"`
	NginxVersion  string `json:"nginx_version"`
	DockerVersion string `json:"docker_version"`
}

func machineFacts(ctx context.Context, cli *client.Client) machine {
	m := machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if f := strings.Fields(rest); len(f) > 0 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					m.MemoryBytes = kb * 1024
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ":"))
				break
			}
		}
	}
	if bin, err := lab.FindNginx(); err == nil {
		// nginx -v writes to stderr.
		if out, err := exec.CommandContext(ctx, bin, "-v").CombinedOutput(); err == nil {
			m.NginxVersion = strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version: ")
		}
	}
	vctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if v, err := cli.ServerVersion(vctx); err == nil {
		m.DockerVersion = v.Version + " (API " + v.APIVersion + ")"
	}
	return m
}

func printTable(out io.Writer, res *result) {
	m := res.Machine
	o := res.Options
	fmt.Fprintf(out, "\nzero-downtime benchmark %q: K=%d, C=%d, %s, loads %s, nginx %d workers\n",
		o.Name, o.K, o.C, rateText(o.Rate), loadsText(o), o.NginxWorkers)
	fmt.Fprintf(out, "machine: %d CPUs (%s), %.1f GiB, Linux %s, nginx %s, Docker %s\n",
		m.CPUs, m.CPUModel, float64(m.MemoryBytes)/(1<<30), m.Kernel, m.NginxVersion, m.DockerVersion)

	switches := slices.ContainsFunc(res.Strategies, func(s strategyResult) bool { return !isResilience(s.Name) })
	for _, load := range o.Loads {
		if !switches {
			break
		}
		fmt.Fprintf(out, "\nload %s (%s):\n", load, loadText(o, load))
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
		fmt.Fprintln(tw, "strategy\tswitches\trequests\tRPS\tvs reload path\tfailed GET\tfailed POST\tlatency p50/p99 ms\tswitch→first new p50/p99/max ms\trollback p50/p99/max ms\tdeployd CPU s/1k req\tdeployd RSS idle/peak MiB\tload avg\t")
		for _, s := range res.Strategies {
			if s.Load != load || isResilience(s.Name) {
				continue
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%.2f / %.2f\t%s\t%s\t%s\t%s\t%.1f → %.1f\t\n", s.Name, len(s.Switches), s.Requests, s.RPS,
				vsText(s.VsReloadPath), failText(s.Failures.GET), failText(s.Failures.POST), s.Latency.P50, s.Latency.P99,
				distMs(s.FirstNew), distMs(s.Rollback), cpuText(s.Footprint), rssText(s.Footprint), s.LoadAvg[0], s.LoadAvg[1])
		}
		tw.Flush()
	}
	fmt.Fprintln(out, "\nfailed = conn/reset/timeout/non2xx.")
	if switches {
		fmt.Fprintln(out, "vs reload path = RPS ratio, p50 difference, against deployd in reload mode under the same load;")
		fmt.Fprintln(out, "deployd CPU and RSS = the daemon's, plus switchd's in switch mode (RSS: sum of readings taken together);")
		fmt.Fprintln(out, "deployd-swarm's are those of the two processes in deployd's container.")
	}
	for _, s := range res.Strategies {
		name := s.Name + " (" + s.Load + ")"
		if s.Name == strategyRecreate && s.Downtime.N > 0 {
			fmt.Fprintf(out, "%s: stop call → new container healthy p50 %.0f ms, max %.0f ms\n", name, s.Downtime.P50, s.Downtime.Max)
		}
		if s.LastOldAfterEnd.N > 0 {
			fmt.Fprintf(out, "%s: switch end → last old-color response p50 %.0f ms, p99 %.0f ms\n", name, s.LastOldAfterEnd.P50, s.LastOldAfterEnd.P99)
		}
		if s.DeployTotal.N > 0 {
			fmt.Fprintf(out, "%s: deploy total p50 %.0f ms, steps p50: %s\n", name, s.DeployTotal.P50, stepsText(s.DeploySteps))
		}
		if s.RollbackTotal.N > 0 {
			fmt.Fprintf(out, "%s: rollback total p50 %.0f ms, steps p50: %s\n", name, s.RollbackTotal.P50, stepsText(s.RollbackSteps))
		}
		if f := s.Footprint; f != nil {
			fmt.Fprintf(out, "%s: deploy overhead (total − health) p50 %.0f ms (%.0f ms without the %s drain); RSS idle %.1f MiB, peak under load %.1f MiB;\n",
				name, s.Overhead.P50, s.OverheadNoDrain.P50, drainText(s.Switches), mib(f.IdleRSS), mib(f.PeakRSS))
			fmt.Fprintf(out, "    CPU %.2f s in the phase, %.4f s per 1,000 requests, %.3f s per deployment (%d); GET /api/v1/services/{name} during deploys p50 %.2f ms, p99 %.2f ms (%d calls, %d errors)\n",
				f.CPUSeconds, f.CPUPer1kRequests, f.CPUPerDeploy, f.Deployments, f.StatusAPI.P50, f.StatusAPI.P99, f.StatusAPI.N, f.StatusErrs)
			if f.Switchd != nil {
				fmt.Fprintf(out, "    of which daemon %s; switchd %s\n", procText(f.Daemon), procText(*f.Switchd))
			}
			if f.AppTasks > 0 {
				fmt.Fprintf(out, "    app tasks Swarm runs at the phase's end, both colors: %d\n", f.AppTasks)
			}
		}
	}
	printResilience(out, res)
	if len(res.Goals) > 0 {
		fmt.Fprintln(out, "\ngoals of the switch (deployd-switch, and resilience in switch mode):")
		for _, g := range res.Goals {
			verdict := "MISSED"
			switch {
			case g.ReportOnly:
				verdict = "report"
			case g.Met:
				verdict = "met"
			}
			fmt.Fprintf(out, "  %-6s %s, %s: want %s; got %s\n", verdict, g.Load, g.Name, g.Want, g.Got)
		}
	}
	fmt.Fprintln(out)
}

// printResilience prints the resilience strategy's events, a table per
// load.
func printResilience(out io.Writer, res *result) {
	if len(res.Resilience) == 0 {
		return
	}
	o := res.Options
	fmt.Fprintf(out, "\nresilience: each event %s per load, under the load on the service of the deployd acted on;\n", timesText(o.resilienceN()))
	fmt.Fprintf(out, "an event's requests are those completing from %s before its signal to %s before the next one's.\n", windowBefore, windowBefore)
	for _, load := range o.Loads {
		fmt.Fprintf(out, "\nload %s (%s):\n", load, loadText(o, load))
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
		fmt.Fprintln(tw, "mode\tevent\tevents\tfailed GET\tfailed POST\tmost failed in one event\toutage p50/max ms\tlongest without success p50/max ms\tback after p50/max ms\t")
		for _, r := range res.Resilience {
			if r.Load != load {
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%.0f / %.0f\t%.0f / %.0f\t%.0f / %.0f\t\n", r.Mode, r.Event, r.N,
				r.FailedGET, r.FailedPOST, r.MaxFailedPerEvent, r.Outage.P50, r.Outage.Max,
				r.MaxGap.P50, r.MaxGap.Max, r.Back.P50, r.Back.Max)
		}
		tw.Flush()
	}
	fmt.Fprintln(out, "outage = signal → first success after the event's last failure (0: none failed); back after = signal → daemon answering /healthz, or a new switchd in its pid file.")
	for _, r := range res.Resilience {
		if n := r.FailedGET + r.FailedPOST; n > 0 {
			fmt.Fprintf(out, "%s %s (%s): failed by kind: %s\n", r.Mode, r.Event, r.Load, failText(r.FailedKind))
		}
	}
}

func timesText(n int) string {
	if n == 1 {
		return "once"
	}
	return fmt.Sprintf("%d times", n)
}

func loadsText(o options) string {
	var parts []string
	for _, l := range o.Loads {
		parts = append(parts, l+" ("+loadText(o, l)+")")
	}
	return strings.Join(parts, ", ")
}

// loadText says what share of a load's requests are POSTs.
func loadText(o options, load string) string {
	switch n := o.postEvery(load); n {
	case 0:
		return "GET only"
	case 1:
		return "every request a POST"
	default:
		return fmt.Sprintf("1 in %d requests a POST", n)
	}
}

func vsText(c *comparison) string {
	if c == nil {
		return "–"
	}
	return fmt.Sprintf("%.0f%%, %+.2f ms", c.RPSRatio*100, c.P50DeltaMs)
}

func cpuText(f *footprintStats) string {
	if f == nil {
		return "–"
	}
	return fmt.Sprintf("%.4f", f.CPUPer1kRequests)
}

// procText is one process's share of a footprint.
func procText(p procCost) string {
	return fmt.Sprintf("(pid %d) CPU %.2f s, %.4f s per 1,000 requests, RSS idle %.1f MiB, peak %.1f MiB",
		p.PID, p.CPUSeconds, p.CPUPer1kRequests, mib(p.IdleRSS), mib(p.PeakRSS))
}

func rssText(f *footprintStats) string {
	if f == nil {
		return "–"
	}
	return fmt.Sprintf("%.1f / %.1f", mib(f.IdleRSS), mib(f.PeakRSS))
}

// distMs is p50/p99/max with a precision that shows milliseconds' tenths.
func distMs(d dist) string {
	if d.N == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f / %.1f / %.1f", d.P50, d.P99, d.Max)
}

func drainText(sw []switchEvent) string {
	for _, s := range sw {
		if s.DrainNs > 0 {
			return time.Duration(s.DrainNs).Round(10 * time.Millisecond).String()
		}
	}
	return "0s"
}

func rateText(r int) string {
	if r == 0 {
		return "max rate"
	}
	return fmt.Sprintf("%d req/s", r)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func failText(m map[string]int) string {
	total := 0
	var parts []string
	for k := kindOK + 1; k < numKinds; k++ {
		if n := m[kindNames[k]]; n > 0 {
			total += n
			parts = append(parts, fmt.Sprintf("%s %d", kindNames[k], n))
		}
	}
	if total == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%s)", total, strings.Join(parts, ", "))
}

// writeResults writes <dir>/<name>.json and <dir>/<name>.svg, each through
// a temp file renamed into place so a reader never sees half a result.
func writeResults(dir, name string, res *result, phases []*phase) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("results dir: %w", err)
	}
	res.Command = "go run ./bench " + strings.Join(os.Args[1:], " ")
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, name+".json"), append(b, '\n')); err != nil {
		return err
	}
	var svg bytes.Buffer
	renderSVG(&svg, res)
	return writeFileAtomic(filepath.Join(dir, name+".svg"), svg.Bytes())
}

func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename into %s: %w", path, err)
	}
	return nil
}

// stepsText lists step p50s in the order a deploy runs them.
func stepsText(m map[string]float64) string {
	var parts []string
	for _, name := range []string{"pull", "cleanup", "backup", "pre_deploy", "start", "health", "switch", "record", "retire", "drain", "standby"} {
		if v, ok := m[name]; ok {
			parts = append(parts, fmt.Sprintf("%s %.0f", name, v))
		}
	}
	return strings.Join(parts, ", ")
}
