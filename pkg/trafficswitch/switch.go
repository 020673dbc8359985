package trafficswitch

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// Sentinel errors; every error the Switch returns for bad input or state
// wraps one of them (check with errors.Is).
var (
	// ErrInvalid: an argument is malformed (address, color, message,
	// hold limits).
	ErrInvalid = errors.New("invalid")
	// ErrNotFound: the service is unknown to the Switch.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the service's state forbids the call (already paused,
	// not paused, already listening, draining the active color).
	ErrConflict = errors.New("conflict")
	// ErrClosed: the Switch is closed.
	ErrClosed = errors.New("traffic switch closed")
)

// Switch forwards each service's requests to its active target set. One
// Switch serves every service of a daemon. It is safe for concurrent use.
// Create it with New; Close ends its listeners and connections.
type Switch struct {
	opts  Options
	log   logrus.FieldLogger
	base  time.Time // monotonic origin of replica fail times and windows
	proxy *httputil.ReverseProxy
	m     *metrics
	bufs  bufferPool

	mu       sync.Mutex
	services map[string]*service
	closed   bool
	wg       sync.WaitGroup // one per serving listener

	// handingOff is set by Handoff: every answer from then on closes its
	// connection.
	handingOff atomic.Bool
	// conns counts the client connections the listeners accepted and
	// that are neither closed nor hijacked, for Handoff.
	conns connCount
}

// New returns a Switch with no services, and registers its collectors on
// opts.Registerer. It fails with an error wrapping ErrInvalid when an
// option is out of range, or with the registerer's error.
func New(opts Options) (*Switch, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	sw := &Switch{
		opts:     opts,
		log:      opts.Logger,
		base:     time.Now(),
		services: make(map[string]*service),
		bufs:     make(bufferPool, bufferPoolSize),
	}
	sw.m = newMetrics(sw)
	if opts.Registerer != nil {
		if err := sw.m.register(opts.Registerer); err != nil {
			return nil, fmt.Errorf("register traffic switch metrics: %w", err)
		}
	}
	sw.proxy = &httputil.ReverseProxy{
		Rewrite:        sw.rewrite,
		Transport:      roundTripper{sw},
		ModifyResponse: modifyResponse,
		ErrorHandler:   sw.proxyError,
		BufferPool:     sw.bufs,
		ErrorLog:       log.New(logWriter{sw.log}, "", 0),
		// FlushInterval stays 0: ReverseProxy already flushes every write
		// of server-sent events and of responses without a length, and
		// flushing fixed-length bodies would only cost syscalls.
	}
	return sw, nil
}

// service is one service's state. Its atomics are what a request reads;
// mu guards the rest.
type service struct {
	sw   *Switch
	name string
	m    serviceMetrics

	active atomic.Pointer[targetSet]
	maint  atomic.Pointer[maintenance]
	hold   atomic.Pointer[hold]
	gen    atomic.Uint64
	// socketPeers is set when the service is served on a unix socket:
	// its peers have no address to judge, and the socket's permissions
	// already decide who may connect, so they are trusted proxies.
	socketPeers atomic.Bool

	mu     sync.Mutex
	colors map[string]*colorState
	server *http.Server
	addr   net.Addr
	ln     net.Listener
	served chan struct{} // closed when the server's Serve has returned
}

// serviceFor returns the named service, creating it when create is set.
func (sw *Switch) serviceFor(name string, create bool) (*service, error) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.closed {
		return nil, ErrClosed
	}
	if s, ok := sw.services[name]; ok {
		return s, nil
	}
	if !create {
		return nil, fmt.Errorf("service %q: %w", name, ErrNotFound)
	}
	if err := validServiceName(name); err != nil {
		return nil, err
	}
	s := &service{sw: sw, name: name, colors: make(map[string]*colorState), m: sw.m.service(name)}
	sw.services[name] = s
	return s, nil
}

// Handler returns the service's forwarder, for serving it on a listener
// the caller owns (Listen and Serve use the same handler). It creates the
// service. It fails with ErrInvalid for a malformed name, ErrClosed after
// Close.
func (sw *Switch) Handler(service string) (http.Handler, error) {
	return sw.serviceFor(service, true)
}

// Listen binds addr ("127.0.0.1:8601", "[::1]:8601", "172.18.0.1:8601")
// for the service and serves it until Close; it returns once the address
// accepts connections. ctx bounds the bind only. It creates the service.
//
// Errors: ErrInvalid for a malformed address or name, ErrConflict when the
// service already listens, ErrClosed after Close, and the bind's own error
// (errors.Is(err, syscall.EADDRINUSE) for a port in use).
func (sw *Switch) Listen(ctx context.Context, service, addr string) error {
	if err := validListenAddr(addr); err != nil {
		return err
	}
	var lc net.ListenConfig
	network, address := SplitListenAddr(addr)
	ln, err := lc.Listen(ctx, network, address)
	if err != nil {
		return fmt.Errorf("listen on %s for %s: %w", addr, service, err)
	}
	if err := sw.Serve(service, ln); err != nil {
		_ = ln.Close()
		return err
	}
	return nil
}

// Serve serves the service on ln (for example a listener inherited from
// the previous process in a graceful restart) until Close, and returns at
// once: unlike http.Server.Serve it does not block. The Switch owns ln
// from then on, also when Serve fails. It creates the service.
//
// Errors: ErrInvalid for a malformed name, ErrConflict when the service
// already listens, ErrClosed after Close.
func (sw *Switch) Serve(service string, ln net.Listener) error {
	s, err := sw.serviceFor(service, true)
	if err != nil {
		_ = ln.Close()
		return err
	}
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: sw.opts.ReadHeaderTimeout,
		IdleTimeout:       sw.opts.ClientIdleTimeout,
		ErrorLog:          log.New(logWriter{sw.log.WithField("service", service)}, "", 0),
		ConnState:         sw.conns.track,
	}
	s.mu.Lock()
	if s.server != nil {
		s.mu.Unlock()
		_ = ln.Close()
		return fmt.Errorf("service %s already listens on %s: %w", service, s.addr, ErrConflict)
	}
	served := make(chan struct{})
	s.server, s.addr, s.ln, s.served = srv, ln.Addr(), ln, served
	s.mu.Unlock()
	s.socketPeers.Store(ln.Addr().Network() == "unix")

	sw.mu.Lock()
	if sw.closed || sw.handingOff.Load() {
		sw.mu.Unlock()
		_ = ln.Close()
		close(served)
		return ErrClosed
	}
	sw.wg.Add(1)
	sw.mu.Unlock()
	go func() {
		defer sw.wg.Done()
		defer close(served)
		err := srv.Serve(ln)
		// Handoff closes the listener itself: its Accept error is the end
		// of serving, not a failure.
		if err != nil && !errors.Is(err, http.ErrServerClosed) && !(sw.handingOff.Load() && errors.Is(err, net.ErrClosed)) {
			sw.log.WithField("service", service).WithError(err).Error("traffic switch listener stopped")
		}
	}()
	return nil
}

// Addr returns the address the service listens on, or nil when it does
// not listen (yet).
func (sw *Switch) Addr(service string) net.Addr {
	s, err := sw.serviceFor(service, false)
	if err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// SetTargets makes addrs ("host:port" each) of color the service's active
// target set, in one atomic step: a request that starts after SetTargets
// returns goes to addrs, a request already in flight finishes where it
// is. Setting the active color's current addresses again does nothing.
// No addresses means requests get a 503. A color keeps its keep-alive
// pool across calls, so switching back to a color is warm.
//
// It creates the service. Errors: ErrInvalid for a malformed color or
// address, or a duplicate address; ErrClosed after Close.
func (sw *Switch) SetTargets(service, color string, addrs []string) error {
	if err := validColor(color); err != nil {
		return err
	}
	for i, a := range addrs {
		if err := validTargetAddr(a); err != nil {
			return err
		}
		if slices.Contains(addrs[:i], a) {
			return fmt.Errorf("%w: target %q listed twice", ErrInvalid, a)
		}
	}
	s, err := sw.serviceFor(service, true)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.colors[color]
	if c == nil {
		c = newColorState(sw, s, color)
		s.colors[color] = c
	}
	if cur := s.active.Load(); cur != nil && cur.color == c && cur.sameAddrs(addrs) {
		return nil
	}
	set := c.last
	if set == nil || !set.sameAddrs(addrs) {
		set = newTargetSet(c, addrs)
		c.last = set
	}
	s.active.Store(set)
	s.gen.Add(1)
	return nil
}

// Status is what the Switch knows of one service, for the API's service
// view and the status page.
type Status struct {
	Service string
	// Addr is the listening address, "" when the service does not listen.
	Addr string
	// Active is the active color, "" before the first SetTargets.
	Active string
	// Generation counts the effective SetTargets calls.
	Generation uint64
	Colors     []ColorStatus // sorted by color

	Paused      bool
	PausedSince time.Time
	Held        int // requests waiting for Resume now
	MaxHeld     int
	MaxHold     time.Duration

	Maintenance      bool
	MaintenanceSince time.Time
	Message          string
}

// ColorStatus is one color of a Status.
type ColorStatus struct {
	Color    string
	Active   bool
	Addrs    []string // the color's latest target set
	InFlight int      // requests in flight, upgraded connections excluded
	Upgraded int      // upgraded (WebSocket) connections open
}

// Status returns the service's state. Errors: ErrNotFound for an unknown
// service, ErrClosed after Close.
func (sw *Switch) Status(service string) (Status, error) {
	s, err := sw.serviceFor(service, false)
	if err != nil {
		return Status{}, err
	}
	st := Status{Service: s.name, Generation: s.gen.Load()}
	active := s.active.Load()
	if active != nil {
		st.Active = active.color.name
	}
	if h := s.hold.Load(); h != nil {
		st.Paused, st.PausedSince, st.Held = true, h.since, int(h.held.Load())
		st.MaxHeld, st.MaxHold = int(h.maxHeld), h.maxHold
	}
	if m := s.maint.Load(); m != nil {
		st.Maintenance, st.MaintenanceSince, st.Message = true, m.since, m.message
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.addr != nil {
		st.Addr = s.addr.String()
	}
	for _, c := range s.colors {
		cs := ColorStatus{Color: c.name, Active: active != nil && active.color == c}
		if c.last != nil {
			cs.Addrs = c.last.addrs()
		}
		cs.InFlight, cs.Upgraded = c.counts()
		st.Colors = append(st.Colors, cs)
	}
	slices.SortFunc(st.Colors, func(a, b ColorStatus) int { return strings.Compare(a.Color, b.Color) })
	return st, nil
}

// Window returns the requests the color's latest target set answered over
// the last Options.ErrorWindow, and how many of them were 5xx (the
// replicas' and the switch's own 502/504). Both are 0 for an unknown
// service or color. A color's window restarts when its addresses change,
// so a new deployment is judged on its own traffic.
func (sw *Switch) Window(service, color string) (requests, errors5xx int) {
	s, err := sw.serviceFor(service, false)
	if err != nil {
		return 0, 0
	}
	s.mu.Lock()
	c := s.colors[color]
	var set *targetSet
	if c != nil {
		set = c.last
	}
	s.mu.Unlock()
	if set == nil {
		return 0, 0
	}
	return set.win.read(sw.since(time.Now()), sw.windowWidth())
}

// Close stops the listeners, releases held requests with a 503, closes
// upgraded connections and event streams and waits until the in-flight requests finish or
// ctx ends; then it closes the idle pools. It returns ctx's error when
// requests were still running, and is safe to call more than once.
func (sw *Switch) Close(ctx context.Context) error {
	sw.mu.Lock()
	sw.closed = true
	services := make([]*service, 0, len(sw.services))
	for _, s := range sw.services {
		services = append(services, s)
	}
	sw.mu.Unlock()

	var errs []error
	for _, s := range services {
		if h := s.hold.Swap(nil); h != nil {
			h.release(true)
		}
		s.mu.Lock()
		srv := s.server
		colors := make([]*colorState, 0, len(s.colors))
		for _, c := range s.colors {
			colors = append(colors, c)
		}
		s.mu.Unlock()
		// Hijacked connections are not the server's any more: Shutdown
		// would neither close nor wait for them. Event streams never end
		// by themselves: Shutdown would wait for them until ctx ends.
		for _, c := range colors {
			c.closeUpgraded()
			c.closeStreams()
		}
		if srv != nil {
			if err := srv.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("shut down %s: %w", s.name, err))
			}
		}
		for _, c := range colors {
			c.transport.CloseIdleConnections()
		}
	}
	sw.wg.Wait()
	return errors.Join(errs...)
}

// ErrorWindow is Options.ErrorWindow, defaults applied: how far back
// Window counts (for NewTrafficReader).
func (sw *Switch) ErrorWindow() time.Duration { return sw.opts.ErrorWindow }

// since is t's offset from the Switch's monotonic origin.
func (sw *Switch) since(t time.Time) int64 { return int64(t.Sub(sw.base)) }

func (sw *Switch) windowWidth() int64 { return int64(sw.opts.ErrorWindow) / windowBuckets }

func validServiceName(name string) error {
	if name == "" || len(name) > 128 {
		return fmt.Errorf("%w: service name %q must have 1 to 128 characters", ErrInvalid, name)
	}
	for _, r := range name {
		if r <= ' ' || r >= 0x7f {
			return fmt.Errorf("%w: service name %q must be printable ASCII without spaces", ErrInvalid, name)
		}
	}
	return nil
}

// validColor accepts what a metric label and a log field can carry
// plainly: 1 to 32 of [a-z0-9_-].
func validColor(color string) error {
	if color == "" || len(color) > 32 {
		return fmt.Errorf("%w: color %q must have 1 to 32 characters", ErrInvalid, color)
	}
	for _, r := range color {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' && r != '_' {
			return fmt.Errorf("%w: color %q may hold only a-z, 0-9, - and _", ErrInvalid, color)
		}
	}
	return nil
}

// unixPrefix marks a unix socket address, as nginx writes it
// ("unix:/run/deployd/web.sock").
const unixPrefix = "unix:"

// SplitListenAddr returns the network and address to listen on for addr:
// "unix" and the path for "unix:/path", else "tcp" and addr.
func SplitListenAddr(addr string) (network, address string) {
	if path, ok := strings.CutPrefix(addr, unixPrefix); ok {
		return "unix", path
	}
	return "tcp", addr
}

// validSocketPath accepts an absolute path of letters, digits and
// "._-/", short enough for a unix socket address: what nginx reads
// plainly in a server directive.
func validSocketPath(addr, path string) error {
	ok := len(path) > 1 && len(path) <= 103 && path[0] == '/' && !strings.Contains(path, "//")
	for _, r := range path {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && !strings.ContainsRune("._-/", r) {
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("%w: %q: want unix:/absolute/path of letters, digits and ._-/ (at most 103 bytes)", ErrInvalid, addr)
	}
	return nil
}

// validUpstreamAddr accepts where nginx reaches the switch: host:port or
// a unix socket.
func validUpstreamAddr(addr string) error {
	if path, ok := strings.CutPrefix(addr, unixPrefix); ok {
		return validSocketPath(addr, path)
	}
	return validTargetAddr(addr)
}

func validTargetAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: target %q: %v", ErrInvalid, addr, err)
	}
	if host == "" {
		return fmt.Errorf("%w: target %q has no host", ErrInvalid, addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%w: target %q: port must be 1 to 65535", ErrInvalid, addr)
	}
	return nil
}

func validListenAddr(addr string) error {
	if path, ok := strings.CutPrefix(addr, unixPrefix); ok {
		return validSocketPath(addr, path)
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: listen address %q: %v", ErrInvalid, addr, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%w: listen address %q: port must be 0 to 65535", ErrInvalid, addr)
	}
	return nil
}

// logWriter routes net/http's log lines (accept errors, proxy notes)
// into the logger.
type logWriter struct{ log logrus.FieldLogger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Warn(strings.TrimSpace(string(p)))
	return len(p), nil
}
