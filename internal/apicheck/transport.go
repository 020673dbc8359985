package apicheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// Transport is an http.RoundTripper that checks every response it passes
// on against the OpenAPI document the daemon it talks to serves: the
// document is fetched from the first response's origin, at DocumentPath
// with Token, and kept. One Transport talks to one daemon.
//
// Failed checks, and a document that cannot be fetched or loaded, go to
// Report; the response is passed on either way, so the caller sees what
// the daemon said. Safe for concurrent use.
type Transport struct {
	// Base sends the requests; http.DefaultTransport when nil.
	Base http.RoundTripper
	// Token is a bearer token with at least the viewer role.
	Token string
	// Report receives each failure. It is called from the goroutines
	// that send requests, so it must be safe for concurrent use.
	Report func(error)

	mu      sync.Mutex
	checker *Checker
}

func (t *Transport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}

// CloseIdleConnections closes Base's idle connections, as
// http.Client.CloseIdleConnections expects of a transport.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.base().(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// RoundTrip sends req and checks the answer.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base().RoundTrip(req)
	if err != nil {
		return nil, err
	}
	t.Check(resp)
	return resp, nil
}

// Check checks resp, whose Request must be set, as RoundTrip does: for
// answers read without the transport, such as a request written on a raw
// connection. Failures go to Report.
func (t *Transport) Check(resp *http.Response) {
	if resp.Request == nil || !IsAPIPath(resp.Request.URL.Path) {
		return
	}
	c, err := t.load(resp.Request)
	if err != nil {
		t.Report(err)
		return
	}
	if err := c.Check(resp); err != nil {
		t.Report(err)
	}
}

// load returns the document's checker, fetching it on first use. A failed
// fetch is tried again with the next response.
func (t *Transport) load(req *http.Request) (*Checker, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.checker != nil {
		return t.checker, nil
	}
	// Not bound to req's context: a caller that gives up on its own
	// request should not leave the next one without a document.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(req.Context()), fetchTimeout)
	defer cancel()
	u := *req.URL
	u.Path, u.RawPath, u.RawQuery, u.Fragment = DocumentPath, "", "", ""
	doc, err := fetch(ctx, t.base(), u.String(), t.Token)
	if err != nil {
		return nil, err
	}
	c, err := Load(ctx, doc)
	if err != nil {
		return nil, fmt.Errorf("the document served at %s: %w", u.String(), err)
	}
	t.checker = c
	return c, nil
}

// fetchTimeout bounds fetching the document.
const fetchTimeout = 10 * time.Second

// errFetch marks a document that could not be fetched.
var errFetch = errors.New("fetch OpenAPI document")

func fetch(ctx context.Context, rt http.RoundTripper, url, token string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errFetch, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errFetch, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%w: read body: %w", errFetch, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: GET %s answered %d: %.300s", errFetch, url, resp.StatusCode, b)
	}
	return b, nil
}
