package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// maxBody bounds what POST / reads; the body only exists so load tests can
// send writes through nginx.
const maxBody = 1 << 20

// maxSleep bounds GET /sleep, so a typo cannot hold a connection forever.
const maxSleep = 60 * time.Second

// rootResponse tells a caller which deployment answered, so a test can see
// traffic move from one color to the other.
type rootResponse struct {
	Version  string `json:"version"`
	Color    string `json:"color"`
	Hostname string `json:"hostname"`
	Method   string `json:"method"`
}

type app struct {
	cfg      config
	hostname string
}

func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.root)
	mux.HandleFunc("POST /{$}", a.root)
	mux.HandleFunc("GET /health", a.health)
	mux.HandleFunc("GET /sleep", a.sleep)
	mux.HandleFunc("GET /events", a.events)
	return mux
}

func (a *app) root(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		// Drain so keep-alive connections through nginx stay reusable.
		if _, err := io.Copy(io.Discard, io.LimitReader(r.Body, maxBody)); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "reading body: " + err.Error()})
			return
		}
	}
	w.Header().Set("X-App-Version", a.cfg.Version)
	w.Header().Set("X-App-Color", a.cfg.Color)
	if a.cfg.FailRequests {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "request failed (FAIL_REQUESTS)"})
		return
	}
	writeJSON(w, http.StatusOK, rootResponse{
		Version:  a.cfg.Version,
		Color:    a.cfg.Color,
		Hostname: a.hostname,
		Method:   r.Method,
	})
}

// sleep answers like GET / after ms milliseconds (at most maxSleep): a
// long request, to show it finishes on the color that started it after
// traffic has moved.
func (a *app) sleep(w http.ResponseWriter, r *http.Request) {
	ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
	if err != nil || ms < 0 || time.Duration(ms)*time.Millisecond > maxSleep {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "ms must be 0 to " + strconv.Itoa(int(maxSleep.Milliseconds()))})
		return
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		return
	}
	a.root(w, r)
}

// maxEvents bounds GET /events' n.
const maxEvents = 100000

// eventData is one server-sent event's data: its number and who sent it.
type eventData struct {
	N       int    `json:"n"`
	Version string `json:"version"`
	Color   string `json:"color"`
}

// events streams n server-sent events (text/event-stream), the first at
// once and then one every `every` milliseconds, so a test can watch a
// stream through nginx and a switch. n*every is at most maxSleep. The
// stream ends after the n-th event or when the client leaves.
func (a *app) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n, err := strconv.Atoi(q.Get("n"))
	if err != nil || n < 1 || n > maxEvents {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "n must be 1 to " + strconv.Itoa(maxEvents)})
		return
	}
	every, err := strconv.Atoi(q.Get("every"))
	if err != nil || every < 0 || time.Duration(n-1)*time.Duration(every)*time.Millisecond > maxSleep {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "every must be 0 or more milliseconds, with n*every at most " +
			strconv.Itoa(int(maxSleep.Milliseconds()))})
		return
	}
	w.Header().Set("X-App-Version", a.cfg.Version)
	w.Header().Set("X-App-Color", a.cfg.Color)
	if a.cfg.FailRequests {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "request failed (FAIL_REQUESTS)"})
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	// nginx buffers proxied responses unless told not to; a stream must
	// reach the client event by event.
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	var tick <-chan time.Time // nil with every 0: no wait between events
	if every > 0 {
		t := time.NewTicker(time.Duration(every) * time.Millisecond)
		defer t.Stop()
		tick = t.C
	}
	for i := 1; i <= n; i++ {
		if i > 1 && tick != nil {
			select {
			case <-tick:
			case <-r.Context().Done():
				return
			}
		}
		data, err := json.Marshal(eventData{N: i, Version: a.cfg.Version, Color: a.cfg.Color})
		if err != nil {
			return // a struct of strings and an int always encodes
		}
		if _, err := fmt.Fprintf(w, "id: %d\ndata: %s\n\n", i, data); err != nil {
			return // the client left
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

func (a *app) health(w http.ResponseWriter, r *http.Request) {
	switch a.cfg.HealthMode {
	case healthFailing:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unhealthy"})
		return
	case healthUnhealthyBody:
		writeJSON(w, http.StatusOK, map[string]string{"status": "degraded"})
		return
	case healthSlow:
		t := time.NewTimer(a.cfg.SlowHealthDelay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			// The prober gave up; nobody is left to answer.
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "healthy", "database": "connected"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// The status line is already out; an encoding error can only be a
	// client that went away.
	_ = json.NewEncoder(w).Encode(v)
}
