package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Outcome kinds of one request.
const (
	kindOK      uint8 = iota
	kindConn          // could not connect, or another transport error
	kindReset         // the connection was reset or closed under the request
	kindTimeout       // no answer within requestTimeout
	kindNon2xx        // an HTTP answer outside 2xx
	numKinds
)

var kindNames = [numKinds]string{"ok", "conn", "reset", "timeout", "non2xx"}

// Methods.
const (
	methodGET uint8 = iota
	methodPOST
	numMethods
)

// Colors as the app names them in X-App-Color.
const (
	colorNone uint8 = iota
	colorBlue
	colorGreen
	colorOther
	numColors
)

var colorNames = [numColors]string{"", "blue", "green", "other"}

func colorCode(s string) uint8 {
	switch s {
	case "":
		return colorNone
	case "blue":
		return colorBlue
	case "green":
		return colorGreen
	}
	return colorOther
}

// record is one request, kept small because a run holds millions.
type record struct {
	At     int64 // request start, ns since the phase started
	Lat    int32 // µs
	Method uint8
	Kind   uint8
	Color  uint8
}

// done is the response's completion time, ns since the phase started.
func (r record) done() int64 { return r.At + int64(r.Lat)*1000 }

const requestTimeout = 2 * time.Second

// postBody is what every POST sends: small, like a form submission.
var postBody = []byte(`{"item":"bench","qty":1,"note":"zero downtime"}`)

// loadConfig is one phase's load.
type loadConfig struct {
	Target     string // http://127.0.0.1:<port>/path
	C          int
	Rate       int // total requests per second; 0 is as fast as possible
	PostEvery  int
	MaxRecords int
}

// load is a running load generator; stop returns what it recorded.
type load struct {
	start  time.Time
	cancel context.CancelFunc
	wg     sync.WaitGroup
	out    [][]record
}

// startLoad starts cfg.C clients, each with its own keep-alive transport,
// that run until stop. It refuses any target but 127.0.0.1.
func startLoad(ctx context.Context, cfg loadConfig, start time.Time) (*load, error) {
	u, err := url.Parse(cfg.Target)
	if err != nil || u.Hostname() != "127.0.0.1" {
		return nil, fmt.Errorf("load target %q: only http://127.0.0.1 targets are allowed", cfg.Target)
	}
	ctx, cancel := context.WithCancel(ctx)
	l := &load{start: start, cancel: cancel, out: make([][]record, cfg.C)}
	perClient := max(1, cfg.MaxRecords/cfg.C)
	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Duration(int64(time.Second) * int64(cfg.C) / int64(cfg.Rate))
	}
	for i := range cfg.C {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.out[i] = runClient(ctx, cfg, i, start, interval, perClient)
		}()
	}
	return l, nil
}

// stop ends the clients and returns every record, in no particular order.
func (l *load) stop() []record {
	l.cancel()
	l.wg.Wait()
	n := 0
	for _, o := range l.out {
		n += len(o)
	}
	all := make([]record, 0, n)
	for _, o := range l.out {
		all = append(all, o...)
	}
	return all
}

func runClient(ctx context.Context, cfg loadConfig, id int, start time.Time, interval time.Duration, maxRecords int) []record {
	tr := &http.Transport{
		Proxy:               nil,
		MaxIdleConnsPerHost: 2,
		MaxIdleConns:        2,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
		DialContext:         (&net.Dialer{Timeout: requestTimeout}).DialContext,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: requestTimeout}
	recs := make([]record, 0, min(maxRecords, 1<<16))
	// Clients start at staggered offsets so that, in fixed-rate mode, they
	// do not fire in lockstep.
	next := time.Now()
	if interval > 0 {
		next = next.Add(interval * time.Duration(id) / time.Duration(cfg.C))
	}
	for n := 0; len(recs) < maxRecords; n++ {
		if interval > 0 {
			if d := time.Until(next); d > 0 {
				select {
				case <-ctx.Done():
					return recs
				case <-time.After(d):
				}
			}
			next = next.Add(interval)
		}
		if ctx.Err() != nil {
			return recs
		}
		post := cfg.PostEvery > 0 && (n+id)%cfg.PostEvery == 0
		r := doRequest(ctx, client, cfg.Target, post, start)
		if ctx.Err() != nil && r.Kind != kindOK {
			// Cancelled by stop, not a failure of the server.
			return recs
		}
		recs = append(recs, r)
	}
	return recs
}

func doRequest(ctx context.Context, client *http.Client, target string, post bool, start time.Time) record {
	method, m, body := http.MethodGet, methodGET, io.Reader(nil)
	if post {
		method, m, body = http.MethodPost, methodPOST, bytes.NewReader(postBody)
	}
	t0 := time.Now()
	r := record{At: int64(t0.Sub(start)), Method: m}
	finish := func(kind uint8) record {
		r.Kind = kind
		r.Lat = int32(min(time.Since(t0).Microseconds(), 1<<31-1))
		return r
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return finish(kindConn)
	}
	if post {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return finish(classify(err))
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	r.Color = colorCode(resp.Header.Get("X-App-Color"))
	if err != nil {
		return finish(classify(err))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return finish(kindNon2xx)
	}
	return finish(kindOK)
}

// classify sorts a transport error into a kind. Go's client reports a
// keep-alive connection that the server closed as "server closed idle
// connection" or EOF; both are the reset this benchmark looks for.
func classify(err error) uint8 {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return kindTimeout
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		strings.Contains(err.Error(), "server closed idle connection"),
		strings.Contains(err.Error(), "connection reset"):
		return kindReset
	}
	return kindConn
}
