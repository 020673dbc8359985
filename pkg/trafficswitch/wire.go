package trafficswitch

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// The control API of the switch process: JSON over HTTP on a unix socket,
// and on a TCP address with a bearer token (ServerOptions.Token). Client
// is its only intended caller; the routes are:
//
//	GET  /v1/info                              Info
//	POST /v1/upgrade                           ServerOptions.Upgrade (204)
//	GET  /metrics                              ServerOptions.Metrics
//	GET  /v1/services/{service}                Status
//	PUT  /v1/services/{service}/targets        {"color","addrs"} (204)
//	POST /v1/services/{service}/drain          {"color","timeout_ms"}: DrainResult, when the drain ends
//	GET  /v1/services/{service}/window?color=  {"requests","errors_5xx"}
//	POST /v1/services/{service}/pause          {"max_hold_ms","max_held"} (204)
//	POST /v1/services/{service}/resume         (204)
//	POST /v1/services/{service}/maintenance    {"on","message"} (204)
//
// An error is {"code","message"}: code is one of invalid (400), not_found
// (404), conflict (409), closed (503), unsupported (501), unauthorized
// (401, a handler with ServerOptions.Token and a request without it) or
// internal (500), message the Switch's own error text.
//
// The request and response bodies are the wire types below, not the
// package's types: those can change without breaking a switch process of
// another version.

// Info describes the switch process (GET /v1/info).
type Info struct {
	PID     int    `json:"pid"`
	Version string `json:"version"`
	// Fingerprint identifies the binary (a hash of it, say), so that an
	// upgrade can tell whether the process runs the file on disk.
	Fingerprint string    `json:"fingerprint"`
	Started     time.Time `json:"started"`
}

// ServerOptions configure the control API's handler.
type ServerOptions struct {
	// Switch is the switch the API drives; required.
	Switch *Switch
	// Info answers GET /v1/info; nil answers 501.
	Info func() Info
	// Upgrade asks the process to replace itself (POST /v1/upgrade); its
	// error is answered with the code of its sentinel. nil answers 501.
	Upgrade func() error
	// Metrics is the process's own Prometheus handler (GET /metrics); nil
	// answers 404.
	Metrics http.Handler
	// OnChange is called after every successful mutating call (targets,
	// pause, resume, maintenance), before the call is answered, so that
	// the process can persist Switch.State before the daemon learns the
	// change is made. It may be called concurrently: it should take a lock
	// and then read State, so that the last write holds the latest state.
	OnChange func()
	// Token, when set, is required of every request as "Authorization:
	// Bearer <token>" (compared in constant time); any other request gets
	// a 401 and touches nothing. The unix socket needs none (its mode is
	// the guard); the TCP listener of the control API does.
	Token []byte
	// Stopping, closed when the process stops serving the control API,
	// ends the GET /v1/wait calls (http.Server.RegisterOnShutdown); nil
	// leaves them to end with their connection.
	Stopping <-chan struct{}
}

// maxRequestBody bounds a request body: the largest is a target list.
const maxRequestBody = 64 << 10

// NewControlHandler returns the control API's handler for o.Switch. It
// panics when o.Switch is nil, a wiring error.
func NewControlHandler(o ServerOptions) http.Handler {
	if o.Switch == nil {
		panic("trafficswitch: NewControlHandler needs a Switch")
	}
	s := &controlServer{o: o, p: Local(o.Switch)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/info", s.info)
	mux.HandleFunc("GET /v1/wait", s.wait)
	mux.HandleFunc("POST /v1/upgrade", s.upgrade)
	mux.HandleFunc("GET /metrics", s.metrics)
	mux.HandleFunc("GET /v1/services/{service}", s.status)
	mux.HandleFunc("PUT /v1/services/{service}/targets", s.targets)
	mux.HandleFunc("POST /v1/services/{service}/drain", s.drain)
	mux.HandleFunc("GET /v1/services/{service}/window", s.window)
	mux.HandleFunc("POST /v1/services/{service}/pause", s.pause)
	mux.HandleFunc("POST /v1/services/{service}/resume", s.resume)
	mux.HandleFunc("POST /v1/services/{service}/maintenance", s.maintenance)
	if len(o.Token) == 0 {
		return mux
	}
	return requireToken(mux, o.Token)
}

// requireToken answers 401, before any route runs, a request without
// "Authorization: Bearer <token>".
func requireToken(next http.Handler, token []byte) http.Handler {
	want := []byte("Bearer " + string(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="deployd switchd"`)
			writeError(w, fmt.Errorf("%w: a valid control token is required", ErrUnauthorized))
			return
		}
		next.ServeHTTP(w, r)
	})
}

type controlServer struct {
	o ServerOptions
	p Plane
}

// Wire types.
type (
	wireError struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	wireStatus struct {
		Service          string        `json:"service"`
		Addr             string        `json:"addr,omitempty"`
		Active           string        `json:"active,omitempty"`
		Generation       uint64        `json:"generation"`
		Colors           []wireColor   `json:"colors"`
		Paused           bool          `json:"paused"`
		PausedSince      time.Time     `json:"paused_since"`
		Held             int           `json:"held"`
		MaxHeld          int           `json:"max_held"`
		MaxHold          time.Duration `json:"max_hold_ns"`
		Maintenance      bool          `json:"maintenance"`
		MaintenanceSince time.Time     `json:"maintenance_since"`
		Message          string        `json:"message,omitempty"`
	}
	wireColor struct {
		Color    string   `json:"color"`
		Active   bool     `json:"active"`
		Addrs    []string `json:"addrs"`
		InFlight int      `json:"in_flight"`
		Upgraded int      `json:"upgraded"`
	}
	wireTargets struct {
		Color string   `json:"color"`
		Addrs []string `json:"addrs"`
	}
	wireDrain struct {
		Color     string `json:"color"`
		TimeoutMS int64  `json:"timeout_ms"`
	}
	wireDrainResult struct {
		Waited        int           `json:"waited"`
		Upgraded      int           `json:"upgraded"`
		Took          time.Duration `json:"took_ns"`
		TimedOut      bool          `json:"timed_out"`
		ForcedClosed  int           `json:"forced_closed"`
		ClosedStreams int           `json:"closed_streams"`
		Remaining     int           `json:"remaining"`
	}
	wireWindow struct {
		Requests  int `json:"requests"`
		Errors5xx int `json:"errors_5xx"`
	}
	wirePause struct {
		MaxHoldMS int64 `json:"max_hold_ms"`
		MaxHeld   int   `json:"max_held"`
	}
	wireMaintenance struct {
		On      bool   `json:"on"`
		Message string `json:"message"`
	}
)

func toWireStatus(st Status) wireStatus {
	w := wireStatus{
		Service: st.Service, Addr: st.Addr, Active: st.Active, Generation: st.Generation,
		Colors: make([]wireColor, len(st.Colors)),
		Paused: st.Paused, PausedSince: st.PausedSince, Held: st.Held, MaxHeld: st.MaxHeld, MaxHold: st.MaxHold,
		Maintenance: st.Maintenance, MaintenanceSince: st.MaintenanceSince, Message: st.Message,
	}
	for i, c := range st.Colors {
		w.Colors[i] = wireColor(c)
	}
	return w
}

func (w wireStatus) status() Status {
	st := Status{
		Service: w.Service, Addr: w.Addr, Active: w.Active, Generation: w.Generation,
		Paused: w.Paused, PausedSince: w.PausedSince, Held: w.Held, MaxHeld: w.MaxHeld, MaxHold: w.MaxHold,
		Maintenance: w.Maintenance, MaintenanceSince: w.MaintenanceSince, Message: w.Message,
	}
	// A Switch's Status has nil Colors before the first SetTargets; keep
	// that, so a Client's Status equals a Local one.
	for _, c := range w.Colors {
		st.Colors = append(st.Colors, ColorStatus(c))
	}
	return st
}

// wireMS is d in whole milliseconds, rounded up: a positive duration
// stays positive, a timeout never gets shorter.
func wireMS(d time.Duration) int64 {
	ms := int64(d / time.Millisecond)
	if d%time.Millisecond > 0 {
		ms++
	}
	return ms
}

func (s *controlServer) info(w http.ResponseWriter, _ *http.Request) {
	if s.o.Info == nil {
		writeError(w, fmt.Errorf("no process info: %w", errors.ErrUnsupported))
		return
	}
	writeJSON(w, http.StatusOK, s.o.Info())
}

func (s *controlServer) upgrade(w http.ResponseWriter, _ *http.Request) {
	if s.o.Upgrade == nil {
		writeError(w, fmt.Errorf("this process cannot upgrade itself: %w", errors.ErrUnsupported))
		return
	}
	if err := s.o.Upgrade(); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *controlServer) metrics(w http.ResponseWriter, r *http.Request) {
	if s.o.Metrics == nil {
		writeError(w, fmt.Errorf("no metrics handler: %w", ErrNotFound))
		return
	}
	s.o.Metrics.ServeHTTP(w, r)
}

func (s *controlServer) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.p.Status(r.Context(), r.PathValue("service"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, toWireStatus(st))
}

func (s *controlServer) targets(w http.ResponseWriter, r *http.Request) {
	var req wireTargets
	if !readJSON(w, r, &req) {
		return
	}
	s.changed(w, s.p.SetTargets(r.Context(), r.PathValue("service"), req.Color, req.Addrs))
}

// drain answers when the Drain ends; the request's context, cancelled
// when the client goes away, ends it too.
func (s *controlServer) drain(w http.ResponseWriter, r *http.Request) {
	var req wireDrain
	if !readJSON(w, r, &req) {
		return
	}
	res, err := s.p.Drain(r.Context(), r.PathValue("service"), req.Color, time.Duration(req.TimeoutMS)*time.Millisecond)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, wireDrainResult(res))
}

func (s *controlServer) window(w http.ResponseWriter, r *http.Request) {
	requests, errors5xx, err := s.p.Window(r.Context(), r.PathValue("service"), r.URL.Query().Get("color"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, wireWindow{Requests: requests, Errors5xx: errors5xx})
}

func (s *controlServer) pause(w http.ResponseWriter, r *http.Request) {
	var req wirePause
	if !readJSON(w, r, &req) {
		return
	}
	s.changed(w, s.p.Pause(r.Context(), r.PathValue("service"), time.Duration(req.MaxHoldMS)*time.Millisecond, req.MaxHeld))
}

func (s *controlServer) resume(w http.ResponseWriter, r *http.Request) {
	s.changed(w, s.p.Resume(r.Context(), r.PathValue("service")))
}

func (s *controlServer) maintenance(w http.ResponseWriter, r *http.Request) {
	var req wireMaintenance
	if !readJSON(w, r, &req) {
		return
	}
	s.changed(w, s.p.Maintenance(r.Context(), r.PathValue("service"), req.On, req.Message))
}

// changed answers a mutating call: its error, or 204 once OnChange has
// run.
func (s *controlServer) changed(w http.ResponseWriter, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	if s.o.OnChange != nil {
		s.o.OnChange()
	}
	w.WriteHeader(http.StatusNoContent)
}

// readJSON decodes the request body into v, or answers 400 and returns
// false. Unknown fields are ignored: the daemon and the switch process
// are upgraded separately, and a newer daemon may send more.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body := http.MaxBytesReader(w, r.Body, maxRequestBody)
	if err := json.NewDecoder(body).Decode(v); err != nil {
		writeError(w, fmt.Errorf("%w: request body: %v", ErrInvalid, err))
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// An encoding error here is a client gone: nothing to answer it.
	_ = json.NewEncoder(w).Encode(v)
}

// wireCodes maps sentinels to the API's codes and statuses, and back.
var wireCodes = []struct {
	sentinel error
	code     string
	status   int
}{
	{ErrInvalid, "invalid", http.StatusBadRequest},
	{ErrNotFound, "not_found", http.StatusNotFound},
	{ErrConflict, "conflict", http.StatusConflict},
	{ErrClosed, "closed", http.StatusServiceUnavailable},
	{errors.ErrUnsupported, "unsupported", http.StatusNotImplemented},
	{ErrUnauthorized, "unauthorized", http.StatusUnauthorized},
}

const codeInternal = "internal"

func writeError(w http.ResponseWriter, err error) {
	we, status := wireError{Code: codeInternal, Message: err.Error()}, http.StatusInternalServerError
	for _, m := range wireCodes {
		if errors.Is(err, m.sentinel) {
			we.Code, status = m.code, m.status
			break
		}
	}
	writeJSON(w, status, we)
}

// wait answers at once and then holds the response open until the process
// stops serving (o.Stopping) or the caller leaves: a daemon holding one
// learns of the process's end, even a kill -9, the moment the kernel
// closes the connection.
func (s *controlServer) wait(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusOK)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	select {
	case <-r.Context().Done():
	case <-s.o.Stopping:
	}
}
