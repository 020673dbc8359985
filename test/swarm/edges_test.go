package swarm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/pkg/stdcopy"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/deployd/deployd/internal/testenv"
	"github.com/deployd/deployd/pkg/controller"
)

const (
	// edgeTokenEnv holds the edge switches' control token in deployd's
	// and the edges' environment.
	edgeTokenEnv = "SWITCHD_TOKEN"
	// edgeServicePort and edgeControlPort are where each edge switch
	// listens on the overlay: for the service (nginx) and for its
	// control API (deployd).
	edgeServicePort = "7501"
	edgeControlPort = "7600"
)

// Traffic moves through three edge switches (replicas of one Swarm
// service, as a global service would run one per edge node) that nginx
// reaches by the service's name: deploys and a rollback under
// load fail no request, each switch is confirmed by every edge, and every
// answer right after it comes from the new color. An edge killed comes
// back empty, and the reconciler brings it in line.
func TestSwarmEdges_EverySwitchMovesEveryEdgeAndTheReconcilerRepairsANewOne(t *testing.T) {
	started := time.Now()
	s := newStackWith(t, "", stackOptions{edges: 3})
	t.Logf("stack up with %d edge switches in %s", s.opts.edges, time.Since(started).Round(time.Millisecond))

	v1 := s.deploy("v1")
	if v1.Status != controller.StatusSucceeded {
		t.Fatalf("deploy v1: %s (%s)", v1.Status, v1.Error)
	}
	s.assertEdgesConfirmed(controller.Blue, s.runningEdges())
	s.assertAllServe("v1", "blue", 20)

	stop := s.load(8)
	v2 := s.deploy("v2")
	if v2.Status != controller.StatusSucceeded {
		stop()
		t.Fatalf("deploy v2: %s (%s)", v2.Status, v2.Error)
	}
	s.assertEdgesConfirmed(controller.Green, s.runningEdges())
	s.assertAllServe("v2", "green", 20)
	rb := s.deploy("")
	if rb.Status != controller.StatusSucceeded {
		stop()
		t.Fatalf("rollback: %s (%s)", rb.Status, rb.Error)
	}
	s.assertEdgesConfirmed(controller.Blue, s.runningEdges())
	s.assertAllServe("v1", "blue", 20)
	sent, failed, first := stop()
	if failed != 0 {
		t.Fatalf("%d of %d POSTs through nginx and the edges failed during the deploy and the rollback: %v", failed, sent, first)
	}
	t.Logf("v2 deployed in %s and rolled back in %s under load through %d edges: %d POSTs, none failed",
		v2.FinishedAt.Sub(v2.CreatedAt).Round(time.Millisecond), rb.FinishedAt.Sub(rb.CreatedAt).Round(time.Millisecond), s.opts.edges, sent)
	s.assertEdgeMetrics(sent)

	// One edge dies: Swarm starts another task, whose switch knows no
	// target; the reconciler's next pass finds the edges apart and sets
	// every one again.
	before := s.runningEdges()
	victim := before[0]
	t.Logf("edges before the kill: %v", edgeNames(before))
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	killed := time.Now()
	if err := s.cli.ContainerKill(ctx, victim.container, "KILL"); err != nil {
		t.Fatalf("kill edge %s: %v", victim.name, err)
	}
	var replaced edgeTask
	deadline := killed.Add(time.Minute)
	for replaced.id == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no new edge task runs a minute after the kill of %s", victim.name)
		}
		for _, e := range s.runningEdges() {
			if !slices.ContainsFunc(before, func(b edgeTask) bool { return b.id == e.id }) {
				replaced = e
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	running := time.Now()
	s.waitEdgeConfirmed(controller.Blue, replaced, killed, 3*reconcileInterval)
	repaired := time.Now()
	t.Logf("edge %s killed: new task %s running after %s, routing the active color %s later (reconcile interval %s)",
		edgeNames([]edgeTask{victim})[0], edgeNames([]edgeTask{replaced})[0], running.Sub(killed).Round(time.Millisecond), repaired.Sub(running).Round(time.Millisecond), reconcileInterval)
	// nginx resolved the edges' name when it loaded: a reload makes it
	// resolve the new task's IP (a virtual IP would need none). What an
	// old worker still serves may fail meanwhile; then every answer
	// must come from the active color.
	if err := s.cli.ContainerKill(ctx, s.svc+"-nginx", "HUP"); err != nil {
		t.Fatalf("reload nginx: %v", err)
	}
	// A connection per request from here: a kept-alive one may stay with
	// an old worker, which still knows only the old addresses.
	s.http = &http.Client{Timeout: apiTimeout, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	reloaded := time.Now()
	deadline = reloaded.Add(45 * time.Second)
	misses := 0
	for inRow := 0; inRow < 20; {
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not answer 20 times in a row from v1 on blue within 45s of its reload (%d misses); edges %v", misses, edgeNames(s.runningEdges()))
		}
		v, c, err := s.appVersion()
		if err != nil || v != "v1" || c != "blue" {
			misses++
			inRow = 0
			t.Logf("after the reload: %s on %s (%v)", v, c, err)
			continue
		}
		inRow++
	}
	t.Logf("20 answers in a row from v1 on blue %s after nginx's reload (%d misses before)", time.Since(reloaded).Round(time.Millisecond), misses)
	t.Logf("whole test %s", time.Since(started).Round(time.Millisecond))
}

// edgesConfig is the traffic block of a stack with edge switches: the
// same file configures deployd (which drives them) and every edge.
func (s *stack) edgesConfig() string {
	return fmt.Sprintf(`traffic:
  mode: switch
  switchd:
    spawn: false
    control_listen: 0.0.0.0:%s
    control_token_env: %s
    edges: {service: %s, network: %s}
`, edgeControlPort, edgeTokenEnv, s.edgeService, s.net)
}

// edgesSwitchConfig is the service's switch block: each edge listens on
// the overlay, and nginx reaches them through their service's name.
func (s *stack) edgesSwitchConfig() string {
	return fmt.Sprintf("    switch: {listen: \"0.0.0.0:%s\", upstream: \"%s:%s\"}\n", edgeServicePort, s.edgeService, edgeServicePort)
}

// startEdges runs n edge switches, `deployd switchd` with the stack's
// config, as a replicated Swarm service on the overlay, and waits until
// they run. It removes the service at cleanup, before the overlay.
func (s *stack) startEdges(reg *testenv.Registry, deploydImage string, n int) {
	t := s.t
	t.Helper()
	ref, digest := reg.Push(t, s.cli, deploydImage, s.svc+"/deployd:ci")
	replicas := uint64(n)
	delay := 500 * time.Millisecond
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: s.edgeService, Labels: map[string]string{"deployd.test": s.svc}},
		Mode:        swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{
				Image:  ref + "@" + digest,
				Args:   []string{"switchd", "--config", "/etc/deployd/deployd.yml"},
				Env:    []string{edgeTokenEnv + "=" + s.switchdToken},
				Labels: map[string]string{"deployd.test": s.svc},
				Mounts: []mount.Mount{{Type: mount.TypeBind, Source: s.cfgPath, Target: "/etc/deployd/deployd.yml", ReadOnly: true}},
			},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny, Delay: &delay},
			Networks:      []swarm.NetworkAttachmentConfig{{Target: s.net}},
		},
		// DNS round robin, not a virtual IP: the test hosts' kernels may
		// lack IPVS, which a virtual IP needs. nginx resolves the name
		// to every edge's IP as it loads its configuration and spreads
		// requests over them.
		EndpointSpec: &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	created, err := s.cli.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{})
	if err != nil {
		t.Fatalf("create the edge switches' service: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			s.edgeLogs()
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.cli.ServiceRemove(ctx, created.ID); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove the edge switches' service: %v", err)
			return
		}
		// The engine removes the tasks' containers after the service;
		// the pushed image's references, removed next, are in use
		// until then.
		byService := filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.id="+created.ID))
		for {
			left, err := s.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: byService})
			if err == nil && len(left) == 0 {
				return
			}
			select {
			case <-ctx.Done():
				t.Errorf("the edge switches' containers are still there a minute after their service's removal: %d (%v)", len(left), err)
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	})
	deadline := time.Now().Add(time.Minute)
	for len(s.runningEdges()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d edge switches run after a minute", len(s.runningEdges()), n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// edgeTask is a running task of the edge switches' service.
type edgeTask struct {
	id, name, container, ip string
}

// runningEdges lists the edge switches' running tasks, by name.
func (s *stack) runningEdges() []edgeTask {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	tasks, err := s.cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(
		filters.Arg("service", s.edgeService), filters.Arg("desired-state", "running"))})
	if err != nil {
		t.Fatalf("list the edge switches' tasks: %v", err)
	}
	var out []edgeTask
	for _, task := range tasks {
		if task.Status.State != swarm.TaskStateRunning || task.Status.ContainerStatus == nil {
			continue
		}
		e := edgeTask{id: task.ID, name: fmt.Sprintf("%s.%d", s.edgeService, task.Slot), container: task.Status.ContainerStatus.ContainerID}
		for _, a := range task.NetworksAttachments {
			if a.Network.Spec.Name == s.net && len(a.Addresses) > 0 {
				e.ip, _, _ = strings.Cut(a.Addresses[0], "/")
			}
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b edgeTask) int { return strings.Compare(a.name, b.name) })
	return out
}

// confirmation is deployd's log line of a switch every edge confirmed.
type confirmation struct {
	Msg     string    `json:"msg"`
	Time    time.Time `json:"time"`
	Service string    `json:"service"`
	Color   string    `json:"color"`
	Edges   []string  `json:"edges"`
}

// confirmations reads deployd's log for the switches every edge
// confirmed, oldest first.
func (s *stack) confirmations() []confirmation {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	rc, err := s.cli.ContainerLogs(ctx, s.deployd, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatalf("logs of deployd: %v", err)
	}
	defer rc.Close()
	var out, errOut bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &errOut, rc); err != nil {
		t.Fatalf("read deployd's log: %v", err)
	}
	var cs []confirmation
	for _, text := range []string{out.String(), errOut.String()} {
		sc := bufio.NewScanner(strings.NewReader(text))
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			var c confirmation
			if json.Unmarshal(sc.Bytes(), &c) == nil && c.Service == s.svc && strings.HasPrefix(c.Msg, "targets set and confirmed on") {
				cs = append(cs, c)
			}
		}
	}
	slices.SortStableFunc(cs, func(a, b confirmation) int { return a.Time.Compare(b.Time) })
	return cs
}

// edgeNames are the names deployd gives edges: task name @ overlay IP.
func edgeNames(edges []edgeTask) []string {
	out := make([]string, len(edges))
	for i, e := range edges {
		out[i] = e.name + "@" + e.ip
	}
	return out
}

// assertEdgesConfirmed checks that deployd's last confirmed switch set
// color on exactly the edges.
func (s *stack) assertEdgesConfirmed(color controller.Color, edges []edgeTask) {
	t := s.t
	t.Helper()
	cs := s.confirmations()
	if len(cs) == 0 {
		t.Fatal("deployd logged no switch confirmed by the edges")
	}
	last := cs[len(cs)-1]
	want := edgeNames(edges)
	got := slices.Sorted(slices.Values(last.Edges))
	if last.Color != string(color) || !slices.Equal(got, want) {
		t.Fatalf("last switch confirmed: %s on %v, want %s on %v", last.Color, got, color, want)
	}
	t.Logf("switch to %s confirmed by %d edges: %s", color, len(got), strings.Join(got, ", "))
}

// waitEdgeConfirmed waits until deployd logs, since since, a switch to
// color confirmed by edge among the others. The log's times are whole
// seconds.
func (s *stack) waitEdgeConfirmed(color controller.Color, edge edgeTask, since time.Time, within time.Duration) {
	t := s.t
	t.Helper()
	name := edgeNames([]edgeTask{edge})[0]
	deadline := time.Now().Add(within)
	for {
		for _, c := range s.confirmations() {
			if !c.Time.Before(since.Truncate(time.Second)) && c.Color == string(color) && slices.Contains(c.Edges, name) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no switch to %s confirmed by the new edge %s within %s", color, name, within)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// assertAllServe checks that n answers through nginx, which spreads
// requests over the edges round robin, come from version on color.
func (s *stack) assertAllServe(version, color string, n int) {
	s.t.Helper()
	for i := range n {
		v, c, err := s.appVersion()
		if err != nil || v != version || c != color {
			s.t.Fatalf("answer %d of %d through nginx = %s on %s (%v), want %s on %s", i+1, n, v, c, err, version, color)
		}
	}
}

// edgeLogs prints the edge switches' log tails into the test log.
func (s *stack) edgeLogs() {
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	rc, err := s.cli.ServiceLogs(ctx, s.edgeService, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: "40"})
	if err != nil {
		s.t.Logf("logs of %s: %v", s.edgeService, err)
		return
	}
	defer rc.Close()
	var out bytes.Buffer
	_, _ = stdcopy.StdCopy(&out, &out, rc)
	s.t.Logf("%s log (tail):\n%s", s.edgeService, s.redact(out.String()))
}

// assertEdgeMetrics checks deployd's /metrics: every edge answered the
// scrape, and the requests the edges forwarded for the service, each
// series labelled with its edge, add up to at least the load's.
func (s *stack) assertEdgeMetrics(atLeast int64) {
	t := s.t
	t.Helper()
	code, body := s.request(http.MethodGet, "/metrics", nil)
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	label := func(m *dto.Metric, name string) string {
		for _, l := range m.GetLabel() {
			if l.GetName() == name {
				return l.GetValue()
			}
		}
		return ""
	}
	up := map[string]float64{}
	for _, m := range fams["deployd_switchd_edge_up"].GetMetric() {
		up[label(m, "edge")] = m.GetGauge().GetValue()
	}
	answered := 0
	for _, v := range up {
		if v == 1 {
			answered++
		}
	}
	if answered != s.opts.edges || len(up) != s.opts.edges {
		t.Errorf("deployd_switchd_edge_up = %v, want %d edges each 1", up, s.opts.edges)
	}
	forwarded, perEdge := 0.0, map[string]float64{}
	for _, m := range fams["deployd_switch_requests_total"].GetMetric() {
		if label(m, "service") == s.svc {
			forwarded += m.GetCounter().GetValue()
			perEdge[label(m, "edge")] += m.GetCounter().GetValue()
		}
	}
	if forwarded < float64(atLeast) || len(perEdge) != s.opts.edges {
		t.Errorf("deployd_switch_requests_total of %s: %v by edge, %.0f in all; want %d edges and at least %d", s.svc, perEdge, forwarded, s.opts.edges, atLeast)
	}
	t.Logf("deployd's /metrics: %d edges answered, requests forwarded by edge %v", answered, perEdge)
}
