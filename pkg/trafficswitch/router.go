package trafficswitch

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/pkg/controller"
)

// Router implements controller.Router with the Switch: nginx (the edge)
// keeps one upstream per service that points at the switch's address, and
// a deploy or a rollback only changes the switch's target set, so nginx is
// never reloaded to move traffic.
//
// The edge is another controller.Router, nginxconf's: the Router asks it
// to point the service's upstream at the switch (a reload, once) whenever
// that upstream is not already so, and otherwise leaves it alone.
//
// A Router may have no edge (nginx.mode static): nginx is then configured
// by its operator to proxy to the switch, the Router never touches it, and
// the switch is all it drives and checks. A nil edge rather than a no-op
// edge type, so that "nothing to keep in sync" reads as such at each use
// instead of as an edge that always agrees.
type Router struct {
	p    Plane
	edge controller.Router // nil: nginx is not the Router's
	// upstreams maps each service to the address the edge points at;
	// empty addresses without an edge.
	upstreams map[string]string
	log       logrus.FieldLogger
}

var _ controller.Router = (*Router)(nil)

// edgeColor is the color the edge is told: its upstream points at the
// switch, never at a color.
const edgeColor = controller.NoColor

// RouterOptions configure a Router.
type RouterOptions struct {
	// Plane is the switch the Router drives: Local(sw) in the daemon's
	// process, a Client of the switch process.
	Plane Plane
	// Edge writes and reloads nginx's upstream files (nginxconf.Router).
	// nil: nginx is configured by its operator to proxy to the switch,
	// and the Router writes and reloads nothing (set Services then).
	Edge controller.Router
	// Upstreams maps each service to the address nginx reaches the
	// switch at ("127.0.0.1:7501" in exec mode, "deployd:7501" on the
	// service's network in docker mode). Every service the controller
	// routes must have one. Only with an Edge.
	Upstreams map[string]string
	// Services are the services the controller routes, without an Edge
	// (with one, they are Upstreams' keys).
	Services []string
	// Logger gets warnings about the edge; nil discards them.
	Logger logrus.FieldLogger
}

// NewRouter returns a Router. It fails (ErrInvalid) when a field is
// missing, an upstream address is not host:port, Upstreams come without
// an Edge or Services with one.
func NewRouter(o RouterOptions) (*Router, error) {
	if o.Plane == nil {
		return nil, fmt.Errorf("%w: traffic switch router needs a Plane", ErrInvalid)
	}
	log := o.Logger
	if log == nil {
		log = discardLogger()
	}
	if o.Edge == nil {
		if len(o.Upstreams) > 0 {
			return nil, fmt.Errorf("%w: traffic switch router: upstreams without an edge router to write them", ErrInvalid)
		}
		ups := make(map[string]string, len(o.Services))
		for _, s := range o.Services {
			ups[s] = ""
		}
		return &Router{p: o.Plane, upstreams: ups, log: log}, nil
	}
	if len(o.Services) > 0 {
		return nil, fmt.Errorf("%w: traffic switch router: with an edge router, Upstreams names the services", ErrInvalid)
	}
	ups := make(map[string]string, len(o.Upstreams))
	for service, addr := range o.Upstreams {
		if err := validUpstreamAddr(addr); err != nil {
			return nil, fmt.Errorf("upstream of %s: %w", service, err)
		}
		ups[service] = addr
	}
	return &Router{p: o.Plane, edge: o.Edge, upstreams: ups, log: log}, nil
}

// upstream is the address the edge points the service at; ErrNotFound
// for a service the Router does not route.
func (r *Router) upstream(service string) ([]string, error) {
	addr, ok := r.upstreams[service]
	if !ok {
		return nil, fmt.Errorf("service %q has no traffic switch address: %w", service, ErrNotFound)
	}
	return []string{addr}, nil
}

// EnsurePlaceholder points the service's nginx upstream at the switch
// (a reload only when it pointed elsewhere, for example on the first start
// in switch mode), and leaves the switch answering 503 until the first
// Switch. It reads the switch's status first, so that a switch that does
// not answer fails the start here. When nginx is not running (it may start after deployd, reading
// the upstream directory as it starts), the edge's own placeholder is
// written instead so nginx can start, and the reconciler points the
// upstream at the switch once nginx answers. Without an edge it only
// reads the status.
func (r *Router) EnsurePlaceholder(ctx context.Context, service string) error {
	if _, err := r.p.Status(ctx, service); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("traffic switch status of %s: %w", service, err)
	}
	err := r.ensureEdge(ctx, service)
	if r.edge != nil && errors.Is(err, controller.ErrUnavailable) {
		r.log.WithField("service", service).WithError(err).
			Warn("nginx unavailable: its upstream will point at the traffic switch once it answers")
		return r.edge.EnsurePlaceholder(ctx, service)
	}
	return err
}

// batchEdge is an edge that can point several upstreams with one reload
// (nginxconf.Router).
type batchEdge interface {
	SwitchEach(ctx context.Context, want map[string][]string) (changed []string, err error)
}

// ensureEdge asks the edge to point the service's upstream at the switch
// unless it does already; the edge reloads nginx only then. An edge that
// can take several at once gets every service whose upstream does not
// point at the switch, in one reload: when nginx first answers after
// deployd started, each service's pass would otherwise reload it once,
// one after the other. Without an edge there is nothing to point, and it
// only checks the service is one the Router routes.
func (r *Router) ensureEdge(ctx context.Context, service string) error {
	up, err := r.upstream(service)
	if err != nil || r.edge == nil {
		return err
	}
	ok, err := r.edge.InSync(ctx, service, edgeColor, up)
	if err != nil {
		return fmt.Errorf("compare nginx upstream of %s: %w", service, err)
	}
	if ok {
		return nil
	}
	want := map[string][]string{service: up}
	changed := []string{service}
	if batch, can := r.edge.(batchEdge); can {
		if err := r.addOutOfStep(ctx, want); err != nil {
			return err
		}
		changed, err = batch.SwitchEach(ctx, want)
	} else {
		err = r.edge.Switch(ctx, service, edgeColor, up)
	}
	if err != nil {
		return fmt.Errorf("point nginx upstreams of %s at the traffic switch: %w", strings.Join(slices.Sorted(maps.Keys(want)), ", "), err)
	}
	for _, s := range changed {
		r.log.WithFields(logrus.Fields{"service": s, "addr": want[s][0]}).Info("nginx upstream points at the traffic switch")
	}
	return nil
}

// addOutOfStep adds to want every other service whose nginx upstream does
// not point at the switch.
func (r *Router) addOutOfStep(ctx context.Context, want map[string][]string) error {
	for s, addr := range r.upstreams {
		if _, ok := want[s]; ok {
			continue
		}
		ok, err := r.edge.InSync(ctx, s, edgeColor, []string{addr})
		if err != nil {
			return fmt.Errorf("compare nginx upstream of %s: %w", s, err)
		}
		if !ok {
			want[s] = []string{addr}
		}
	}
	return nil
}

// Switch makes addrs of color the service's target set, in one atomic
// step; no color and no addresses leave the switch answering 503. First it
// re-asserts nginx's upstream when it no longer points at the switch (a
// hand edit): if that fails the targets are untouched and the error is
// returned, except when nginx is unavailable, which is logged and left
// to the reconciler, since nginx then carries no traffic to redirect.
func (r *Router) Switch(ctx context.Context, service string, color controller.Color, addrs []string) error {
	if color == controller.NoColor && len(addrs) > 0 {
		return fmt.Errorf("%w: switch %s: addresses without a color", ErrInvalid, service)
	}
	if err := r.ensureEdge(ctx, service); err != nil {
		if !errors.Is(err, controller.ErrUnavailable) {
			return err
		}
		r.log.WithField("service", service).WithError(err).Warn("nginx unavailable; switching the targets only")
	}
	if color == controller.NoColor {
		return r.clear(ctx, service)
	}
	ordered, err := r.ordered(ctx, service, color, addrs)
	if err != nil {
		return err
	}
	if err := r.p.SetTargets(ctx, service, string(color), ordered); err != nil {
		return fmt.Errorf("switch %s to %s: %w", service, color, err)
	}
	return nil
}

// ordered returns addrs in the order of the color's active set when they
// are the same addresses, so that a reordered list (Docker lists
// containers in no fixed order) does not start a new target set, whose
// error window would restart.
func (r *Router) ordered(ctx context.Context, service string, color controller.Color, addrs []string) ([]string, error) {
	cur, ok, err := r.active(ctx, service)
	if err != nil {
		return nil, err
	}
	if ok && cur.Color == string(color) && sameSet(cur.Addrs, addrs) {
		return cur.Addrs, nil
	}
	return addrs, nil
}

// clear leaves the service with an empty target set: every request gets
// a 503, as before the first deploy.
func (r *Router) clear(ctx context.Context, service string) error {
	cur, ok, err := r.active(ctx, service)
	if err != nil {
		return err
	}
	if !ok || len(cur.Addrs) == 0 {
		return nil
	}
	if err := r.p.SetTargets(ctx, service, cur.Color, nil); err != nil {
		return fmt.Errorf("clear targets of %s: %w", service, err)
	}
	return nil
}

// active returns the service's active color and its addresses; false
// before any target set, also when the switch does not know the service.
// Any other error (the switch process does not answer) is returned: the
// Router must not take an unknown state for an empty one.
func (r *Router) active(ctx context.Context, service string) (ColorStatus, bool, error) {
	st, err := r.p.Status(ctx, service)
	if errors.Is(err, ErrNotFound) {
		return ColorStatus{}, false, nil
	}
	if err != nil {
		return ColorStatus{}, false, fmt.Errorf("traffic switch status of %s: %w", service, err)
	}
	if st.Active == "" {
		return ColorStatus{}, false, nil
	}
	for _, c := range st.Colors {
		if c.Active {
			return c, true, nil
		}
	}
	return ColorStatus{}, false, nil
}

// InSync reports whether nginx's upstream points at the switch (when the
// Router has an edge) and the switch's active target set is addrs of
// color (in any order). No color and no addresses are in sync when the
// switch has no target to send to.
func (r *Router) InSync(ctx context.Context, service string, color controller.Color, addrs []string) (bool, error) {
	up, err := r.upstream(service)
	if err != nil {
		return false, err
	}
	if r.edge != nil {
		ok, err := r.edge.InSync(ctx, service, edgeColor, up)
		if err != nil || !ok {
			return false, err
		}
	}
	cur, active, err := r.active(ctx, service)
	if err != nil {
		return false, err
	}
	if color == controller.NoColor {
		return len(addrs) == 0 && (!active || len(cur.Addrs) == 0), nil
	}
	return active && cur.Color == string(color) && sameSet(cur.Addrs, addrs), nil
}

// Drain waits until the color has no request in flight, or timeout; its
// WebSockets are closed at the timeout. The message says what it waited
// for and how long. It returns ctx's error when ctx ends first, and an
// error when the color is (again) the active one.
func (r *Router) Drain(ctx context.Context, service string, color controller.Color, timeout time.Duration) (string, error) {
	res, err := r.p.Drain(ctx, service, string(color), timeout)
	if errors.Is(err, ErrNotFound) {
		return fmt.Sprintf("nothing in flight on %s", color), nil
	}
	if err != nil {
		return "", err
	}
	return drainMessage(color, timeout, res), nil
}

func drainMessage(color controller.Color, timeout time.Duration, res DrainResult) string {
	msg := fmt.Sprintf("waited for %d request(s) and %d WebSocket(s) on %s", res.Waited, res.Upgraded, color)
	if !res.TimedOut {
		return fmt.Sprintf("%s for %s", msg, res.Took.Round(time.Millisecond))
	}
	msg = fmt.Sprintf("%s; timed out after %s with %d still running", msg, timeout, res.Remaining)
	if res.ForcedClosed > 0 {
		msg += fmt.Sprintf(", closed %d WebSocket(s)", res.ForcedClosed)
	}
	if res.ClosedStreams > 0 {
		msg += fmt.Sprintf(", closed %d event stream(s)", res.ClosedStreams)
	}
	return msg
}

// Check runs the edge's check (nginx's config test, its master running),
// when the Router has an edge, and checks that the switch listens for
// every service: without an edge that is all readiness can know, since
// nginx is not deployd's to test.
func (r *Router) Check(ctx context.Context) error {
	if r.edge != nil {
		if err := r.edge.Check(ctx); err != nil {
			return err
		}
	}
	services := make([]string, 0, len(r.upstreams))
	for s := range r.upstreams {
		services = append(services, s)
	}
	sort.Strings(services)
	for _, s := range services {
		st, err := r.p.Status(ctx, s)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("traffic switch status of %s: %w: %w", s, controller.ErrUnavailable, err)
		}
		if st.Addr == "" {
			return fmt.Errorf("traffic switch not listening for %s: %w", s, controller.ErrUnavailable)
		}
	}
	return nil
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
