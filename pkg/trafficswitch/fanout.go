package trafficswitch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/proto"
)

// Edge is one switch among those traffic enters a cluster through: one
// switchd per edge node, reached over its TCP control API (NewTCPClient).
type Edge struct {
	// Name says which edge in errors (a node's name, a task's address).
	Name  string
	Plane Plane
}

// FanoutOptions configure a Fanout.
type FanoutOptions struct {
	// Discover returns the edges as they are now (from the orchestrator's
	// task list, say); it is called at the start of every call, so an
	// edge that joins is driven from the next one. Required.
	Discover func(ctx context.Context) ([]Edge, error)
	// EdgeTimeout bounds each call to one edge (a Drain's: its drain
	// timeout and this); 0 means 5s. The caller's ctx bounds the whole.
	EdgeTimeout time.Duration
	// RestoreTimeout bounds putting edges back after a failed call, which
	// runs even when the caller's ctx has ended; 0 means EdgeTimeout.
	RestoreTimeout time.Duration
	// Logger gets a line per change every edge confirmed, naming the
	// edges; nil discards it.
	Logger logrus.FieldLogger
}

// Fanout is the Plane of several switches that must move as one: every
// call goes to every edge in parallel, and a change succeeds only when
// every edge confirmed it; when one fails, the edges that did change are
// put back, so that traffic goes where it went before. Router runs on it
// unchanged.
//
// Errors name each failed edge and wrap its error, so errors.Is finds the
// sentinels (ErrUnreachable of an edge that does not answer, say). No
// edge discovered is an error wrapping ErrUnreachable: traffic would go
// nowhere.
type Fanout struct {
	discover       func(ctx context.Context) ([]Edge, error)
	edgeTimeout    time.Duration
	restoreTimeout time.Duration
	log            logrus.FieldLogger
}

var (
	_ Plane               = (*Fanout)(nil)
	_ prometheus.Gatherer = (*Fanout)(nil)
)

const defaultEdgeTimeout = 5 * time.Second

// NewFanout returns a Fanout; it fails without o.Discover.
func NewFanout(o FanoutOptions) (*Fanout, error) {
	if o.Discover == nil {
		return nil, fmt.Errorf("%w: a fan-out plane needs a discovery function", ErrInvalid)
	}
	f := &Fanout{discover: o.Discover, edgeTimeout: o.EdgeTimeout, restoreTimeout: o.RestoreTimeout, log: o.Logger}
	if f.log == nil {
		f.log = discardLogger()
	}
	if f.edgeTimeout <= 0 {
		f.edgeTimeout = defaultEdgeTimeout
	}
	if f.restoreTimeout <= 0 {
		f.restoreTimeout = f.edgeTimeout
	}
	return f, nil
}

// edges discovers the edges, refusing none and names given twice.
func (f *Fanout) edges(ctx context.Context) ([]Edge, error) {
	edges, err := f.discover(ctx)
	if err != nil {
		return nil, fmt.Errorf("discover edge switches: %w", err)
	}
	if len(edges) == 0 {
		return nil, fmt.Errorf("no edge switch discovered: traffic would reach no switch: %w", ErrUnreachable)
	}
	seen := make(map[string]bool, len(edges))
	for _, e := range edges {
		if e.Plane == nil || seen[e.Name] {
			return nil, fmt.Errorf("%w: edge %q discovered twice or without a plane", ErrInvalid, e.Name)
		}
		seen[e.Name] = true
	}
	return edges, nil
}

// each runs call on every edge in parallel (i is the edge's index), each
// bounded by timeout within ctx, and returns when all have returned:
// results and errors by the edges' index.
func each[T any](ctx context.Context, edges []Edge, timeout time.Duration, call func(ctx context.Context, i int, p Plane) (T, error)) ([]T, []error) {
	out, errs := make([]T, len(edges)), make([]error, len(edges))
	var wg sync.WaitGroup
	for i, e := range edges {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			out[i], errs[i] = call(cctx, i, e.Plane)
		}()
	}
	wg.Wait()
	return out, errs
}

// eachErr is each for calls that return only an error.
func eachErr(ctx context.Context, edges []Edge, timeout time.Duration, call func(ctx context.Context, i int, p Plane) error) []error {
	_, errs := each(ctx, edges, timeout, func(ctx context.Context, i int, p Plane) (struct{}, error) {
		return struct{}{}, call(ctx, i, p)
	})
	return errs
}

// edgeErrors joins the errors that skip does not pass over, each naming
// its edge; nil when none is left.
func edgeErrors(edges []Edge, errs []error, skip func(error) bool) error {
	var out []error
	for i, err := range errs {
		if err != nil && (skip == nil || !skip(err)) {
			out = append(out, fmt.Errorf("edge %s: %w", edges[i].Name, err))
		}
	}
	return errors.Join(out...)
}

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// failedEdges is the error of a change that failed on some edges: which
// ones and why, what was done about the others, and the restore's own
// failures.
func failedEdges(op string, edges []Edge, errs []error, restoreErr error) error {
	failed := edgeErrors(edges, errs, nil)
	n := 0
	for _, err := range errs {
		if err != nil {
			n++
		}
	}
	if restoreErr != nil {
		return fmt.Errorf("%s: %d of %d edges failed: %w; putting edges back failed: %w", op, n, len(edges), failed, restoreErr)
	}
	return fmt.Errorf("%s: %d of %d edges failed, the others were put back: %w", op, n, len(edges), failed)
}

// outcomeUnknown reports whether a failed call may have taken effect: the
// edge did not answer (the connection broke after the request was sent,
// or the per-edge timeout ended it). An answered error changed nothing.
func outcomeUnknown(err error) bool {
	var remote *remoteError
	return err != nil && !errors.As(err, &remote)
}

// restoreCtx bounds putting edges back: it runs after the caller's ctx
// has ended too, since leaving edges apart is worse than a late return.
func (f *Fanout) restoreCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), f.restoreTimeout)
}

// SetTargets sets the targets on every edge. It reads each edge's
// active targets first (an edge that cannot tell fails the call before
// anything changes), then sets them on all in parallel. It succeeds only
// when every edge confirmed; otherwise the edges that switched, and those
// whose outcome is unknown, are set back to what they had (best effort,
// bounded by RestoreTimeout), and the error names each failed edge.
//
// An edge that had no target set is put back to an empty set of color:
// a switch has no way back to none, and both answer 503.
func (f *Fanout) SetTargets(ctx context.Context, service, color string, addrs []string) error {
	edges, err := f.edges(ctx)
	if err != nil {
		return err
	}
	prev, errs := each(ctx, edges, f.edgeTimeout, func(ctx context.Context, _ int, p Plane) (Status, error) {
		return p.Status(ctx, service)
	})
	if err := edgeErrors(edges, errs, isNotFound); err != nil {
		return fmt.Errorf("read the edges' targets of %s before switching: %w", service, err)
	}
	errs = eachErr(ctx, edges, f.edgeTimeout, func(ctx context.Context, _ int, p Plane) error {
		return p.SetTargets(ctx, service, color, addrs)
	})
	if !slices.ContainsFunc(errs, func(err error) bool { return err != nil }) {
		f.log.WithFields(logrus.Fields{"service": service, "color": color, "edges": edgeNames(edges)}).
			Infof("targets set and confirmed on %d edges", len(edges))
		return nil
	}
	var back []Edge
	var backTo []ColorStatus
	for i, e := range edges {
		if errs[i] == nil || outcomeUnknown(errs[i]) {
			back = append(back, e)
			cs, _ := activeColor(prev[i])
			if cs.Color == "" {
				cs.Color = color
			}
			backTo = append(backTo, cs)
		}
	}
	rctx, cancel := f.restoreCtx(ctx)
	defer cancel()
	rerrs := eachErr(rctx, back, f.restoreTimeout, func(ctx context.Context, i int, p Plane) error {
		return p.SetTargets(ctx, service, backTo[i].Color, backTo[i].Addrs)
	})
	return failedEdges(fmt.Sprintf("set targets of %s to %s on the edges", service, color), edges, errs, edgeErrors(back, rerrs, nil))
}

// edgeNames lists the edges' names, for logs.
func edgeNames(edges []Edge) []string {
	out := make([]string, len(edges))
	for i, e := range edges {
		out[i] = e.Name
	}
	return out
}

// activeColor is st's active color and its targets; false when there is
// none or it has no target (both answer 503).
func activeColor(st Status) (ColorStatus, bool) {
	if st.Active == "" {
		return ColorStatus{}, false
	}
	for _, c := range st.Colors {
		if c.Active {
			return c, len(c.Addrs) > 0
		}
	}
	return ColorStatus{}, false
}

// DisagreeAddr is the one target of the active color in a Fanout's
// Status when the edges do not route alike. It is no address, so no
// target set compares equal to it.
const DisagreeAddr = "(edges disagree)"

// Status is the edges' status combined. When every edge routes alike (the
// same color and the same targets, in any order; no targets and an empty
// set alike), it is the first edge's routing, the colors' in-flight
// counts summed over the edges.
//
// When they differ (an edge that joined with no targets, one that missed
// a switch), the status must read as in sync with nothing, since Router's
// InSync compares the active color and its targets, and the reconciler
// then calls Switch, which sets every edge again. So the active color is
// that of the first edge that routes somewhere, and its only target is
// DisagreeAddr: no list of addresses equals it, and it is not empty, so
// "no targets" (controller.NoColor) is not in sync either and Router's
// clear empties every edge.
//
// Paused and Maintenance are set when they are on any edge, Held and
// the in-flight counts are summed; Addr is "" when an edge does not
// listen for the service, so that Router.Check fails. An edge that does
// not know the service routes nowhere; ErrNotFound only when no edge
// knows it. Any other error of an edge fails the call, naming it.
func (f *Fanout) Status(ctx context.Context, service string) (Status, error) {
	edges, err := f.edges(ctx)
	if err != nil {
		return Status{}, err
	}
	sts, errs := each(ctx, edges, f.edgeTimeout, func(ctx context.Context, _ int, p Plane) (Status, error) {
		return p.Status(ctx, service)
	})
	if err := edgeErrors(edges, errs, isNotFound); err != nil {
		// Each names its edge and the service's route; Router adds
		// what it was doing.
		return Status{}, err
	}
	var known []Status
	for i := range edges {
		if errs[i] == nil {
			known = append(known, sts[i])
		}
	}
	if len(known) == 0 {
		return Status{}, fmt.Errorf("service %s on %d edges: %w", service, len(edges), ErrNotFound)
	}
	out := mergeStatus(service, known)
	if len(known) < len(edges) {
		// An edge that does not know the service does not listen for it.
		out.Addr = ""
	}
	if !sameRouting(sts, errs) {
		out.Active = ""
		for i, st := range sts {
			if cs, ok := activeColor(st); ok && errs[i] == nil {
				out.Active = cs.Color
				break
			}
		}
		for i := range out.Colors {
			out.Colors[i].Active = out.Colors[i].Color == out.Active
			if out.Colors[i].Active {
				out.Colors[i].Addrs = []string{DisagreeAddr}
			}
		}
	}
	return out, nil
}

// sameRouting reports whether every edge (an unknown service routes
// nowhere) sends the service's requests to the same targets.
func sameRouting(sts []Status, errs []error) bool {
	var first ColorStatus
	for i, st := range sts {
		var cs ColorStatus
		if errs[i] == nil {
			cs, _ = activeColor(st)
		}
		if i == 0 {
			first = cs
			continue
		}
		if cs.Color != first.Color || !sameSet(cs.Addrs, first.Addrs) {
			return false
		}
	}
	return true
}

// mergeStatus is the first status's routing with the others' counts
// added; see Status.
func mergeStatus(service string, sts []Status) Status {
	out := sts[0]
	out.Service = service
	out.Colors = slices.Clone(out.Colors)
	for _, st := range sts[1:] {
		if st.Addr == "" {
			out.Addr = ""
		}
		out.Generation = max(out.Generation, st.Generation)
		if st.Paused {
			if !out.Paused || st.PausedSince.Before(out.PausedSince) {
				out.PausedSince = st.PausedSince
			}
			out.Paused = true
			out.MaxHeld, out.MaxHold = st.MaxHeld, st.MaxHold
		}
		out.Held += st.Held
		if st.Maintenance && !out.Maintenance {
			out.Maintenance, out.MaintenanceSince, out.Message = true, st.MaintenanceSince, st.Message
		}
		for _, c := range st.Colors {
			j := slices.IndexFunc(out.Colors, func(o ColorStatus) bool { return o.Color == c.Color })
			if j < 0 {
				c.Active = c.Color == out.Active
				out.Colors = append(out.Colors, c)
				continue
			}
			out.Colors[j].InFlight += c.InFlight
			out.Colors[j].Upgraded += c.Upgraded
		}
	}
	slices.SortFunc(out.Colors, func(a, b ColorStatus) int {
		switch {
		case a.Color < b.Color:
			return -1
		case a.Color > b.Color:
			return 1
		}
		return 0
	})
	return out
}

// Window is the sum of the edges' windows. An edge that does not answer
// fails the call: a reader must not take a switch that stopped counting
// for a quiet one.
func (f *Fanout) Window(ctx context.Context, service, color string) (requests, errors5xx int, err error) {
	edges, err := f.edges(ctx)
	if err != nil {
		return 0, 0, err
	}
	type window struct{ requests, errors5xx int }
	ws, errs := each(ctx, edges, f.edgeTimeout, func(ctx context.Context, _ int, p Plane) (window, error) {
		r, e, err := p.Window(ctx, service, color)
		return window{r, e}, err
	})
	if err := edgeErrors(edges, errs, nil); err != nil {
		return 0, 0, fmt.Errorf("window of %s on %s: %w", color, service, err)
	}
	for _, w := range ws {
		requests += w.requests
		errors5xx += w.errors5xx
	}
	return requests, errors5xx, nil
}

// Drain drains the color on every edge in parallel and returns when the
// slowest is done: the counts summed, Took the longest, TimedOut when it
// timed out anywhere. Each edge's call is bounded by timeout and
// EdgeTimeout. An edge that does not know the service has nothing to
// drain; ErrNotFound only when none knows it.
func (f *Fanout) Drain(ctx context.Context, service, color string, timeout time.Duration) (DrainResult, error) {
	edges, err := f.edges(ctx)
	if err != nil {
		return DrainResult{}, err
	}
	res, errs := each(ctx, edges, max(timeout, 0)+f.edgeTimeout, func(ctx context.Context, _ int, p Plane) (DrainResult, error) {
		return p.Drain(ctx, service, color, timeout)
	})
	if err := edgeErrors(edges, errs, isNotFound); err != nil {
		return DrainResult{}, fmt.Errorf("drain %s of %s: %w", color, service, err)
	}
	if !slices.ContainsFunc(errs, func(err error) bool { return err == nil }) {
		return DrainResult{}, fmt.Errorf("drain %s of %s: %w", color, service, edgeErrors(edges, errs, nil))
	}
	var out DrainResult
	for _, r := range res {
		out.Waited += r.Waited
		out.Upgraded += r.Upgraded
		out.Took = max(out.Took, r.Took)
		out.TimedOut = out.TimedOut || r.TimedOut
		out.ForcedClosed += r.ForcedClosed
		out.ClosedStreams += r.ClosedStreams
		out.Remaining += r.Remaining
	}
	return out, nil
}

// Pause pauses the service on every edge. When an edge fails, the edges
// this call paused (they were not paused before) are resumed, so that no
// edge holds requests the others serve; the error names the failed
// edges. An edge that was paused already keeps its pause.
func (f *Fanout) Pause(ctx context.Context, service string, maxHold time.Duration, maxHeld int) error {
	edges, err := f.edges(ctx)
	if err != nil {
		return err
	}
	prev, errs := each(ctx, edges, f.edgeTimeout, func(ctx context.Context, _ int, p Plane) (Status, error) {
		return p.Status(ctx, service)
	})
	if err := edgeErrors(edges, errs, isNotFound); err != nil {
		return fmt.Errorf("read the edges' pause of %s: %w", service, err)
	}
	errs = eachErr(ctx, edges, f.edgeTimeout, func(ctx context.Context, _ int, p Plane) error {
		return p.Pause(ctx, service, maxHold, maxHeld)
	})
	if !slices.ContainsFunc(errs, func(err error) bool { return err != nil }) {
		return nil
	}
	var back []Edge
	for i, e := range edges {
		if !prev[i].Paused && (errs[i] == nil || outcomeUnknown(errs[i])) {
			back = append(back, e)
		}
	}
	rctx, cancel := f.restoreCtx(ctx)
	defer cancel()
	rerrs := eachErr(rctx, back, f.restoreTimeout, func(ctx context.Context, _ int, p Plane) error {
		// Not paused there after all: nothing to put back.
		if err := p.Resume(ctx, service); err != nil && !errors.Is(err, ErrConflict) {
			return err
		}
		return nil
	})
	return failedEdges("pause "+service+" on the edges", edges, errs, edgeErrors(back, rerrs, nil))
}

// Resume resumes the service on every edge; held requests go on at once
// there, so nothing can be put back: the error names the edges that
// failed (still paused, or not paused to begin with: ErrConflict).
func (f *Fanout) Resume(ctx context.Context, service string) error {
	edges, err := f.edges(ctx)
	if err != nil {
		return err
	}
	errs := eachErr(ctx, edges, f.edgeTimeout, func(ctx context.Context, _ int, p Plane) error {
		return p.Resume(ctx, service)
	})
	if err := edgeErrors(edges, errs, nil); err != nil {
		return fmt.Errorf("resume %s: %w", service, err)
	}
	return nil
}

// Maintenance turns the service's maintenance page on or off on every
// edge. When an edge fails, the others are put back as they were (on
// with their message, or off), and the error names the failed edges.
func (f *Fanout) Maintenance(ctx context.Context, service string, on bool, message string) error {
	edges, err := f.edges(ctx)
	if err != nil {
		return err
	}
	prev, errs := each(ctx, edges, f.edgeTimeout, func(ctx context.Context, _ int, p Plane) (Status, error) {
		return p.Status(ctx, service)
	})
	if err := edgeErrors(edges, errs, isNotFound); err != nil {
		return fmt.Errorf("read the edges' maintenance of %s: %w", service, err)
	}
	errs = eachErr(ctx, edges, f.edgeTimeout, func(ctx context.Context, _ int, p Plane) error {
		return p.Maintenance(ctx, service, on, message)
	})
	if !slices.ContainsFunc(errs, func(err error) bool { return err != nil }) {
		return nil
	}
	var back []Edge
	var was []Status
	for i, e := range edges {
		if errs[i] == nil || outcomeUnknown(errs[i]) {
			back, was = append(back, e), append(was, prev[i])
		}
	}
	rctx, cancel := f.restoreCtx(ctx)
	defer cancel()
	rerrs := eachErr(rctx, back, f.restoreTimeout, func(ctx context.Context, i int, p Plane) error {
		return p.Maintenance(ctx, service, was[i].Maintenance, was[i].Message)
	})
	what := "maintenance off for " + service + " on the edges"
	if on {
		what = "maintenance on for " + service + " on the edges"
	}
	return failedEdges(what, edges, errs, edgeErrors(back, rerrs, nil))
}

// edgeLabel names the label Gather adds to every edge's series.
const edgeLabel = "edge"

// Gather gathers every edge's own metrics (from each edge whose Plane is
// a prometheus.Gatherer, as a Client is), each series labelled
// edge="<name>" so that the same series of two edges do not collide, and
// deployd_switchd_edge_up, 1 for an edge that answered and 0 for one that
// did not. The failed edges' errors come back beside the rest, which
// prometheus.Gatherers under ContinueOnError serves anyway. Gatherer has
// no context: gatherTimeout bounds the discovery and each edge.
func (f *Fanout) Gather() ([]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(context.Background(), gatherTimeout)
	defer cancel()
	edges, err := f.edges(ctx)
	if err != nil {
		return nil, err
	}
	fams, errs := each(ctx, edges, gatherTimeout, func(_ context.Context, _ int, p Plane) ([]*dto.MetricFamily, error) {
		g, ok := p.(prometheus.Gatherer)
		if !ok {
			return nil, nil
		}
		return g.Gather()
	})
	up := &dto.MetricFamily{
		Name: proto.String("deployd_switchd_edge_up"),
		Help: proto.String("Whether the edge switch answered the last scrape (1) or not (0)."),
		Type: dto.MetricType_GAUGE.Enum(),
	}
	merged := map[string]*dto.MetricFamily{}
	for i, e := range edges {
		answered := 1.0
		if errs[i] != nil {
			answered = 0
		}
		up.Metric = append(up.Metric, &dto.Metric{
			Label: []*dto.LabelPair{{Name: proto.String(edgeLabel), Value: proto.String(e.Name)}},
			Gauge: &dto.Gauge{Value: proto.Float64(answered)},
		})
		for _, mf := range fams[i] {
			into := merged[mf.GetName()]
			if into == nil {
				into = &dto.MetricFamily{Name: mf.Name, Help: mf.Help, Type: mf.Type}
				merged[mf.GetName()] = into
			} else if into.GetType() != mf.GetType() {
				errs[i] = errors.Join(errs[i], fmt.Errorf("metric %s is a %s here and a %s on another edge", mf.GetName(), mf.GetType(), into.GetType()))
				continue
			}
			for _, m := range mf.Metric {
				m.Label = withLabel(m.Label, edgeLabel, e.Name)
				into.Metric = append(into.Metric, m)
			}
		}
	}
	out := append(make([]*dto.MetricFamily, 0, len(merged)+1), up)
	for _, mf := range merged {
		out = append(out, mf)
	}
	slices.SortFunc(out, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out, edgeErrors(edges, errs, nil)
}

// withLabel adds name=value to labels, kept sorted by name as the
// exposition expects.
func withLabel(labels []*dto.LabelPair, name, value string) []*dto.LabelPair {
	pair := &dto.LabelPair{Name: proto.String(name), Value: proto.String(value)}
	i, _ := slices.BinarySearchFunc(labels, name, func(l *dto.LabelPair, n string) int { return strings.Compare(l.GetName(), n) })
	return slices.Insert(labels, i, pair)
}
