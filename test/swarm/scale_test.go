package swarm

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/pkg/controller"
)

// scaleEnv sets TestSwarmScale's size as "<services>x<replicas>", e.g.
// DEPLOYD_SCALE=30x2; unset, the test runs defaultScale, small enough for
// CI.
const scaleEnv = "DEPLOYD_SCALE"

const defaultScale = "8x2"

// scaleStartTimeout is the services' health.start_timeout in the scale
// test: twice the config's default, for a burst of deploys on one node.
const scaleStartTimeout = "120s"

// scaleSamples is how many times each read-only endpoint is timed.
const scaleSamples = 20

// One deployd drives N services on runtime swarm, R replicas each, with
// warm standbys (the default): v1 deployed to all N, then v2, then all
// rolled back, every round of N deploys started at once through the API
// (as a monorepo's CI would), leaving N*R*2 Swarm tasks running. It
// asserts what must hold at any size (every deploy and rollback succeeded,
// every service answers its new version through nginx right after its
// switch, every watchdog round and reconciler pass ended within its
// interval, both tasks of every color run) and logs one block of figures:
// time to deploy all, per-deploy p50/max, deployd's container memory and
// CPU idle before and after, the jobs' run durations, the latency of GET
// /api/v1/services and of the status page. Timings are logged, not
// asserted: they are the measurement.
//
// DEPLOYD_SCALE=<services>x<replicas> (e.g. 30x2) sets the size; the
// default, 8x2, keeps the test well under 90 s in CI. docs/scaling.md has
// the figures measured with it.
func TestSwarmScale_OneDeploydDrivesManyServices(t *testing.T) {
	n, r := scaleSize(t)
	started := time.Now()
	// A burst of N deploys on one node starts N sets at once; Swarm took
	// up to about a minute to run 100 tasks at once on 2 CPUs, and
	// start_timeout bounds the start step.
	s := newStackWith(t, "", stackOptions{services: n, replicas: r, startTimeout: scaleStartTimeout})
	stackUp := time.Since(started)

	// Idle with N services configured and nothing deployed.
	idleBefore := s.idleUsage()

	v1 := s.deployAll("v1")
	s.assertEachServes(v1, "v1", controller.Blue)
	v2 := s.deployAll("v2")
	s.assertEachServes(v2, "v2", controller.Green)
	tasksV2 := s.waitTasks(2 * r)
	rb := s.deployAll("")
	s.assertEachServes(rb, "v1", controller.Blue)
	tasksRB := s.waitTasks(2 * r)

	// Idle with N services deployed, each with both colors running.
	jobsBefore := s.metrics()
	idleAfter := s.idleUsage()
	jobsAfter := s.metrics()

	apiTimes := s.timeServicesAPI()
	pageTimes := s.timeStatusPage()

	var b strings.Builder
	fmt.Fprintf(&b, "scale %dx%d (%s=%q), deploys started concurrently through the API:\n", n, r, scaleEnv, os.Getenv(scaleEnv))
	fmt.Fprintf(&b, "  stack up (registry, images, deployd, nginx): %s\n", stackUp.Round(time.Millisecond))
	for _, round := range []struct {
		name string
		ds   []api.Deployment
	}{{"deploy v1", v1}, {"deploy v2", v2}, {"rollback", rb}} {
		wall, p50, most := deploymentTimes(round.ds)
		fmt.Fprintf(&b, "  %-9s x%d: all done in %s (first created to last finished); each p50 %s, max %s\n",
			round.name, len(round.ds), wall.Round(time.Millisecond), p50.Round(time.Millisecond), most.Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "  swarm tasks running: %d after v2, %d after the rollback (want %d = %d services x %d replicas x 2 colors)\n",
		tasksV2, tasksRB, n*r*2, n, r)
	fmt.Fprintf(&b, "  deployd container idle before deploys: %s\n", idleBefore)
	fmt.Fprintf(&b, "  deployd container idle after:          %s\n", idleAfter)
	fmt.Fprintf(&b, "  deployd process (its /metrics): RSS %.1f MiB, CPU %.2f s since start\n",
		jobsAfter["process_resident_memory_bytes"]/(1<<20), jobsAfter["process_cpu_seconds_total"])
	for _, job := range []struct {
		name     string
		interval time.Duration
	}{{"watchdog", watchInterval}, {"reconcile", reconcileInterval}} {
		whole := jobRuns(jobsAfter, nil, job.name)
		idle := jobRuns(jobsAfter, jobsBefore, job.name)
		fmt.Fprintf(&b, "  %-9s (interval %s): whole test %s; idle after deploys %s\n", job.name, job.interval, whole, idle)
	}
	fmt.Fprintf(&b, "  GET /api/v1/services (%d services) x%d: p50 %s, max %s\n", n, len(apiTimes),
		percentile(apiTimes, 50).Round(time.Microsecond), slices.Max(apiTimes).Round(time.Microsecond))
	fmt.Fprintf(&b, "  GET / status page    (%d services) x%d: p50 %s, max %s\n", n, len(pageTimes),
		percentile(pageTimes, 50).Round(time.Microsecond), slices.Max(pageTimes).Round(time.Microsecond))
	fmt.Fprintf(&b, "  whole test %s", time.Since(started).Round(time.Millisecond))
	t.Log(b.String())

	for _, job := range []struct {
		name     string
		interval time.Duration
	}{{"watchdog", watchInterval}, {"reconcile", reconcileInterval}} {
		runs := jobRuns(jobsAfter, nil, job.name)
		if runs.count == 0 {
			t.Errorf("no %s run recorded in deployd's /metrics", job.name)
		}
		if within := runs.within(job.interval); within != runs.count {
			t.Errorf("%s: %v of %v runs ended within the %s interval, want all", job.name, within, runs.count, job.interval)
		}
	}
	if tasksV2 != n*r*2 || tasksRB != n*r*2 {
		t.Errorf("running tasks = %d after v2, %d after the rollback, want %d", tasksV2, tasksRB, n*r*2)
	}
}

// scaleSize reads scaleEnv, or defaultScale when it is unset.
func scaleSize(t *testing.T) (services, replicas int) {
	t.Helper()
	v := os.Getenv(scaleEnv)
	if v == "" {
		v = defaultScale
	}
	m := regexp.MustCompile(`^([1-9][0-9]*)x([1-9][0-9]*)$`).FindStringSubmatch(v)
	if m == nil {
		t.Fatalf("%s=%q: want <services>x<replicas>, e.g. 30x2", scaleEnv, v)
	}
	services, _ = strconv.Atoi(m[1])
	replicas, _ = strconv.Atoi(m[2])
	// deployd's config refuses more (internal/config's maxReplicas); said
	// here, rather than as a daemon that never answers.
	if replicas > 20 {
		t.Fatalf("%s=%q: deployd allows at most 20 replicas per service", scaleEnv, v)
	}
	return services, replicas
}

// deployAll starts a deploy of tag (a rollback with tag "") of every
// service at once and waits for all to end. It fails the test unless every
// one succeeded without an error.
func (s *stack) deployAll(tag string) []api.Deployment {
	t := s.t
	t.Helper()
	// N deploys share the machine: each may take N times as long.
	ctx, cancel := context.WithTimeout(context.Background(), deploymentTimeout+time.Duration(len(s.services))*5*time.Second)
	defer cancel()
	out := make([]api.Deployment, len(s.services))
	errs := make([]error, len(s.services))
	var wg sync.WaitGroup
	for i, name := range s.services {
		wg.Go(func() { out[i], errs[i] = s.deployService(ctx, name, tag) })
	}
	wg.Wait()
	what := "deploy " + tag
	if tag == "" {
		what = "rollback"
	}
	failed := 0
	for i, d := range out {
		switch {
		case errs[i] != nil:
			t.Errorf("%s of %s: %v", what, s.services[i], errs[i])
		case d.Status != controller.StatusSucceeded || d.Error != "":
			t.Errorf("%s of %s: %s (%s)", what, s.services[i], d.Status, d.Error)
		default:
			continue
		}
		failed++
	}
	if failed > 0 {
		t.Fatalf("%d of %d services: %s did not succeed", failed, len(out), what)
	}
	return out
}

// deployService is stack.deploy for one of the stack's services, safe to
// call from any goroutine: it returns errors instead of failing the test.
func (s *stack) deployService(ctx context.Context, name, tag string) (api.Deployment, error) {
	path, body := "/api/v1/services/"+name+"/deployments", `{"image":"`+tag+`"}`
	if tag == "" {
		path, body = "/api/v1/services/"+name+"/rollback", ""
	}
	status, b, err := s.call(ctx, http.MethodPost, path, body)
	if err != nil {
		return api.Deployment{}, err
	}
	if status != http.StatusAccepted {
		return api.Deployment{}, fmt.Errorf("POST %s = %d %s, want 202", path, status, b)
	}
	var d api.Deployment
	if err := json.Unmarshal(b, &d); err != nil {
		return api.Deployment{}, fmt.Errorf("POST %s: %w", path, err)
	}
	for {
		status, b, err := s.call(ctx, http.MethodGet, "/api/v1/deployments/"+d.ID, "")
		if err != nil {
			return d, err
		}
		if status == http.StatusOK {
			if err := json.Unmarshal(b, &d); err != nil {
				return d, fmt.Errorf("GET deployment %s: %w", d.ID, err)
			}
			if d.FinishedAt != nil {
				return d, nil
			}
		}
		select {
		case <-ctx.Done():
			return d, fmt.Errorf("deployment %s not finished: %w (last %d %s)", d.ID, ctx.Err(), status, b)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// call is stack.request for any goroutine.
func (s *stack) call(ctx context.Context, method, path, body string) (int, []byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.apiURL+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: read: %w", method, path, err)
	}
	return resp.StatusCode, b, nil
}

// assertEachServes asks each service through nginx, right after its
// deployments ds ended, twice per replica: every answer must be version
// on color.
func (s *stack) assertEachServes(ds []api.Deployment, version string, color controller.Color) {
	t := s.t
	t.Helper()
	replicas := s.opts.replicas
	if replicas == 0 {
		replicas = 2
	}
	for i, name := range s.services {
		if ds[i].ToColor != color {
			t.Fatalf("%s went to %s, want %s", name, ds[i].ToColor, color)
		}
		for range 2 * replicas {
			v, c, err := s.appVersionAt(s.appURL + "/" + name + "/")
			if err != nil || v != version || c != string(color) {
				t.Fatalf("%s through nginx = %s on %s (%v), want %s on %s", name, v, c, err, version, color)
			}
		}
	}
}

// waitTasks waits until every service has want running tasks (a replaced
// standby's tasks end a moment after its deploy) and returns the stack's
// running tasks then. It fails the test when that does not happen within
// a minute.
func (s *stack) waitTasks(want int) int {
	t := s.t
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		per, total, err := s.runningTasks()
		ok := err == nil
		for _, name := range s.services {
			ok = ok && per[name] == want
		}
		if ok {
			return total
		}
		if time.Now().After(deadline) {
			t.Fatalf("running tasks per service = %v (%v), want %d each", per, err, want)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (s *stack) runningTasks() (perService map[string]int, total int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	// Tasks by their Swarm service, which carries deployd's labels.
	sets, err := s.cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("label", "deployd.service"))})
	if err != nil {
		return nil, 0, fmt.Errorf("list swarm services: %w", err)
	}
	ours := map[string]bool{}
	for _, name := range s.services {
		ours[name] = true
	}
	owner := map[string]string{} // Swarm service ID to deployd's service
	for _, set := range sets {
		if name := set.Spec.Labels["deployd.service"]; ours[name] {
			owner[set.ID] = name
		}
	}
	tasks, err := s.cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("desired-state", "running"))})
	if err != nil {
		return nil, 0, fmt.Errorf("list tasks: %w", err)
	}
	perService = map[string]int{}
	for _, task := range tasks {
		if name, ok := owner[task.ServiceID]; ok && task.Status.State == swarm.TaskStateRunning {
			perService[name]++
			total++
		}
	}
	return perService, total, nil
}

// usage is deployd's container's use of the machine over a window.
type usage struct {
	window     time.Duration
	cpu        time.Duration // CPU time used within the window
	cpuTotal   time.Duration // since the container started
	rss, usage uint64        // at the window's end: the cgroup's rss (anon on cgroup v2) and usage
}

func (u usage) String() string {
	return fmt.Sprintf("RSS %.1f MiB (cgroup usage %.1f MiB), CPU %.3f s in %s (%.1f%% of one core), %.2f s since start",
		float64(u.rss)/(1<<20), float64(u.usage)/(1<<20), u.cpu.Seconds(), u.window,
		100*u.cpu.Seconds()/u.window.Seconds(), u.cpuTotal.Seconds())
}

// idleUsage measures deployd's container over one reconcile interval (so
// five watchdog rounds and one reconciler pass fall in it) while nothing
// is asked of it.
func (s *stack) idleUsage() usage {
	s.t.Helper()
	before := s.containerStats()
	// The window is the measurement, not a wait for something to happen.
	time.Sleep(reconcileInterval)
	after := s.containerStats()
	rss := after.MemoryStats.Stats["rss"]
	if v, ok := after.MemoryStats.Stats["anon"]; ok {
		rss = v
	}
	return usage{
		window:   after.Read.Sub(before.Read).Round(time.Millisecond),
		cpu:      time.Duration(after.CPUStats.CPUUsage.TotalUsage - before.CPUStats.CPUUsage.TotalUsage),
		cpuTotal: time.Duration(after.CPUStats.CPUUsage.TotalUsage),
		rss:      rss,
		usage:    after.MemoryStats.Usage,
	}
}

func (s *stack) containerStats() container.StatsResponse {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	r, err := s.cli.ContainerStatsOneShot(ctx, s.deployd)
	if err != nil {
		t.Fatalf("stats of deployd's container: %v", err)
	}
	defer r.Body.Close()
	var st container.StatsResponse
	if err := json.NewDecoder(r.Body).Decode(&st); err != nil {
		t.Fatalf("stats of deployd's container: %v", err)
	}
	return st
}

// metrics reads deployd's /metrics into a map from series ("name" or
// `name{label="value",...}`, as exposed) to value.
func (s *stack) metrics() map[string]float64 {
	t := s.t
	t.Helper()
	status, b := s.request(http.MethodGet, "/metrics", nil)
	if status != http.StatusOK {
		t.Fatalf("GET /metrics = %d %s", status, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// runs summarises deployd_job_duration_seconds for one job.
type runs struct {
	count, sum float64
	buckets    map[float64]float64 // upper bound to cumulative count
}

// jobRuns reads job's runs from the metrics in after, less those already
// in before when before is not nil.
func jobRuns(after, before map[string]float64, job string) runs {
	r := runs{buckets: map[float64]float64{}}
	prefix := `deployd_job_duration_seconds_bucket{job="` + job + `",le="`
	for series, v := range after {
		le, ok := strings.CutPrefix(series, prefix)
		if !ok {
			continue
		}
		bound, err := strconv.ParseFloat(strings.TrimSuffix(le, `"}`), 64)
		if err != nil {
			continue
		}
		r.buckets[bound] = v - before[series]
	}
	key := `{job="` + job + `"}`
	r.count = after["deployd_job_duration_seconds_count"+key] - before["deployd_job_duration_seconds_count"+key]
	r.sum = after["deployd_job_duration_seconds_sum"+key] - before["deployd_job_duration_seconds_sum"+key]
	return r
}

// within is how many runs took at most d; d must be one of the
// histogram's bounds (the stack's intervals are).
func (r runs) within(d time.Duration) float64 {
	n, ok := r.buckets[d.Seconds()]
	if !ok {
		return math.NaN()
	}
	return n
}

// String says how many runs, their mean and the smallest bucket bound all
// of them fit in.
func (r runs) String() string {
	if r.count == 0 {
		return "no runs"
	}
	bounds := make([]float64, 0, len(r.buckets))
	for b := range r.buckets {
		bounds = append(bounds, b)
	}
	slices.Sort(bounds)
	all := math.Inf(1)
	for _, b := range bounds {
		if r.buckets[b] == r.count {
			all = b
			break
		}
	}
	return fmt.Sprintf("%d runs, mean %s, all <= %gs", int(r.count),
		time.Duration(r.sum/r.count*float64(time.Second)).Round(time.Microsecond), all)
}

// timeServicesAPI times GET /api/v1/services, which must list every
// service.
func (s *stack) timeServicesAPI() []time.Duration {
	t := s.t
	t.Helper()
	var times []time.Duration
	for range scaleSamples {
		start := time.Now()
		status, b := s.request(http.MethodGet, "/api/v1/services", nil)
		times = append(times, time.Since(start))
		var list api.ServiceList
		if status != http.StatusOK || json.Unmarshal(b, &list) != nil || len(list.Services) != len(s.services) {
			t.Fatalf("GET /api/v1/services = %d, %d services, want 200 and %d", status, len(list.Services), len(s.services))
		}
	}
	return times
}

// timeStatusPage logs in to the status page and times GET /, which must
// show every service.
func (s *stack) timeStatusPage() []time.Duration {
	t := s.t
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Timeout: apiTimeout, Jar: jar, Transport: &http.Transport{Proxy: nil}}
	req, err := http.NewRequest(http.MethodPost, s.apiURL+"/login", strings.NewReader(url.Values{"token": {s.token}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", s.apiURL)
	resp, err := browser.Do(req)
	if err != nil {
		t.Fatalf("log in to the status page: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var times []time.Duration
	for range scaleSamples {
		start := time.Now()
		resp, err := browser.Get(s.apiURL + "/")
		if err != nil {
			t.Fatalf("GET /: %v", err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		times = append(times, time.Since(start))
		if err != nil || resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/" {
			t.Fatalf("GET / = %d at %s (%v), want 200 with a session", resp.StatusCode, resp.Request.URL.Path, err)
		}
		for _, name := range s.services {
			if !strings.Contains(string(b), name) {
				t.Fatalf("the status page does not show %s", name)
			}
		}
	}
	return times
}

// deploymentTimes are a round's wall time, from the first deployment's
// creation to the last one's end (deployd's clock), and each one's
// duration at the median and the most.
func deploymentTimes(ds []api.Deployment) (wall, p50, most time.Duration) {
	var each []time.Duration
	first, last := ds[0].CreatedAt, *ds[0].FinishedAt
	for _, d := range ds {
		each = append(each, d.FinishedAt.Sub(d.CreatedAt))
		if d.CreatedAt.Before(first) {
			first = d.CreatedAt
		}
		if d.FinishedAt.After(last) {
			last = *d.FinishedAt
		}
	}
	return last.Sub(first), percentile(each, 50), slices.Max(each)
}

// percentile is the nearest-rank percentile p of ds.
func percentile(ds []time.Duration, p int) time.Duration {
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	rank := (p*len(sorted) + 99) / 100
	return sorted[max(rank, 1)-1]
}
