package apicheck

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// doc is a small API in the shape of deployd's.
const doc = `
openapi: 3.0.3
info: {title: t, version: "1"}
paths:
  /api/v1/things/{id}:
    parameters:
      - {name: id, in: path, required: true, schema: {type: string}}
    get:
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema:
                type: object
                required: [id, state]
                properties:
                  id: {type: string}
                  state: {type: string, enum: [on, off]}
                  when: {type: string, format: date-time}
        "404":
          description: no
          content:
            application/json:
              schema:
                type: object
                properties:
                  error: {type: string}
  /api/v1/things/{id}/events:
    parameters:
      - {name: id, in: path, required: true, schema: {type: string}}
    get:
      responses:
        "200":
          description: stream
          content:
            text/event-stream:
              schema: {type: string}
`

func load(t *testing.T) *Checker {
	t.Helper()
	c, err := Load(context.Background(), []byte(doc))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

func answer(method, path string, status int, contentType, body string) *http.Response {
	return &http.Response{
		StatusCode: status,
		Header:     http.Header{"Content-Type": {contentType}},
		Body:       io.NopCloser(strings.NewReader(body)),
		Request:    httptest.NewRequest(method, path, nil),
	}
}

func TestCheck_DocumentedAnswerPassesAndStaysReadable(t *testing.T) {
	c := load(t)
	body := `{"id":"a","state":"on","when":"2025-01-02T03:04:05Z"}`
	resp := answer(http.MethodGet, "/api/v1/things/a", 200, "application/json", body)
	if err := c.Check(resp); err != nil {
		t.Fatalf("Check: %v", err)
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil || string(got) != body {
		t.Fatalf("body after Check = %q (%v), want %q", got, err, body)
	}
}

func TestCheck_DriftFails(t *testing.T) {
	tests := []struct {
		name, method, path string
		status             int
		body, want         string
	}{
		{"field missing from the document", "GET", "/api/v1/things/a", 200, `{"id":"a","state":"on","warm":true}`, `"warm" is unsupported`},
		{"value missing from an enum", "GET", "/api/v1/things/a", 200, `{"id":"a","state":"rolled_back"}`, "allowed values"},
		{"required field absent", "GET", "/api/v1/things/a", 200, `{"id":"a"}`, `"state"`},
		{"malformed date-time", "GET", "/api/v1/things/a", 200, `{"id":"a","state":"on","when":"yesterday"}`, "date-time"},
		{"status not listed", "GET", "/api/v1/things/a", 500, `{"error":"internal error"}`, "status is not supported"},
		{"path not in the document", "GET", "/api/v1/gadgets", 404, `{"error":"no route"}`, "not in the OpenAPI document"},
		{"method not in the document", "POST", "/api/v1/things/a", 405, `{"error":"no"}`, "not in the OpenAPI document"},
	}
	c := load(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.Check(answer(tt.method, tt.path, tt.status, "application/json", tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Check = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestCheck_StatusPageIsNotChecked(t *testing.T) {
	c := load(t)
	for _, p := range []string{"/", "/login", "/static/app.css", "/deployments/d-1", "/apiary"} {
		if err := c.Check(answer(http.MethodGet, p, 200, "text/html", "<p>hi</p>")); err != nil {
			t.Errorf("Check(GET %s) = %v, want nil", p, err)
		}
	}
}

// eventBody fails the test if the check reads the stream.
type eventBody struct{ t *testing.T }

func (b eventBody) Read([]byte) (int, error) {
	b.t.Error("Check read an event stream's body")
	return 0, io.EOF
}

func (b eventBody) Close() error { return nil }

func TestCheck_EventStreamIsCheckedWithoutReadingIt(t *testing.T) {
	c := load(t)
	resp := answer(http.MethodGet, "/api/v1/things/a/events", 200, "text/event-stream", "")
	resp.Body = eventBody{t}
	if err := c.Check(resp); err != nil {
		t.Fatalf("Check: %v", err)
	}
	resp = answer(http.MethodGet, "/api/v1/things/a", 200, "text/event-stream", "")
	resp.Body = eventBody{t}
	if err := c.Check(resp); err == nil || !strings.Contains(err.Error(), "text/event-stream") {
		t.Fatalf("Check of a stream where the document has JSON = %v, want an error naming text/event-stream", err)
	}
}

func TestTransport_ChecksAgainstTheServedDocument(t *testing.T) {
	var mu sync.Mutex
	docFetches := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case DocumentPath:
			if r.Header.Get("Authorization") != "Bearer viewer" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			mu.Lock()
			docFetches++
			mu.Unlock()
			w.Header().Set("Content-Type", "application/yaml")
			_, _ = io.WriteString(w, doc)
		case "/api/v1/things/good":
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"id":"good","state":"on"}`)
		default:
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"id":"bad","state":"rolled_back"}`)
		}
	}))
	defer srv.Close()

	var reported []error
	tr := &Transport{Token: "viewer", Report: func(err error) {
		mu.Lock()
		defer mu.Unlock()
		reported = append(reported, err)
	}}
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	var wg sync.WaitGroup
	for _, p := range []string{"/api/v1/things/good", "/api/v1/things/bad", "/api/v1/things/good"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get(srv.URL + p)
			if err != nil {
				t.Errorf("GET %s: %v", p, err)
				return
			}
			defer resp.Body.Close()
			if b, err := io.ReadAll(resp.Body); err != nil || len(b) == 0 {
				t.Errorf("GET %s: body %q (%v), want the answer passed on", p, b, err)
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if docFetches != 1 {
		t.Errorf("document fetched %d times, want once", docFetches)
	}
	if len(reported) != 1 || !strings.Contains(reported[0].Error(), "/api/v1/things/bad") {
		t.Fatalf("reported %v, want one failure for /api/v1/things/bad", reported)
	}
}

func TestTransport_ReportsADocumentItCannotFetch(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	var reported []error
	tr := &Transport{Token: "wrong", Report: func(err error) { reported = append(reported, err) }}
	resp, err := (&http.Client{Transport: tr}).Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	resp.Body.Close()
	tr.CloseIdleConnections()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("status = %d, want the server's 401 passed on", resp.StatusCode)
	}
	if len(reported) != 1 || !errors.Is(reported[0], errFetch) {
		t.Fatalf("reported %v, want one fetch failure", reported)
	}
}
