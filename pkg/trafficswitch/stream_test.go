package trafficswitch

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSSE_FirstEventArrivesBeforeTheHandlerEnds proves server-sent events
// are not buffered: the client reads the first event while the replica is
// still blocked before the second.
func TestSSE_FirstEventArrivesBeforeTheHandlerEnds(t *testing.T) {
	for _, tt := range []struct {
		name        string
		contentType string
	}{
		{"event stream", "text/event-stream"},
		{"chunked of unknown length", "application/octet-stream"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			release := make(chan struct{})
			b := newBackend(t, "blue", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tt.contentType)
				_, _ = io.WriteString(w, "data: one\n\n")
				_ = http.NewResponseController(w).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
				_, _ = io.WriteString(w, "data: two\n\n")
			})
			h.setTargets("blue", b.addr())
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.url+"/events", nil)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("GET: %v", err)
			}
			defer res.Body.Close()
			br := bufio.NewReader(res.Body)
			line, err := br.ReadString('\n')
			if err != nil || line != "data: one\n" {
				t.Fatalf("first event: %q %v, want it before the handler ends", line, err)
			}
			close(release)
			rest, err := io.ReadAll(br)
			if err != nil || string(rest) != "\ndata: two\n\n" {
				t.Fatalf("rest: %q %v", rest, err)
			}
		})
	}
}

// TestRequestBody_Streams proves the request body is not buffered: the
// replica answers after the first chunk, while the client still holds
// the rest back.
func TestRequestBody_Streams(t *testing.T) {
	h := newHarness(t, Options{})
	gotFirst := make(chan struct{})
	b := newBackend(t, "blue", func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 5)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			t.Errorf("read first chunk: %v", err)
			return
		}
		close(gotFirst)
		rest, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("read rest: %v", err)
			return
		}
		_, _ = fmt.Fprintf(w, "%s|%s", buf, rest)
	})
	h.setTargets("blue", b.addr())
	pr, pw := io.Pipe()
	go func() {
		_, _ = io.WriteString(pw, "first")
		select {
		case <-gotFirst:
			_, _ = io.WriteString(pw, "-second")
			_ = pw.Close()
		case <-time.After(5 * time.Second):
			_ = pw.CloseWithError(fmt.Errorf("the replica never got the first chunk"))
		}
	}()
	req, _ := http.NewRequest(http.MethodPost, h.url+"/upload", pr)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || string(body) != "first|-second" {
		t.Fatalf("got %d %q, want 200 \"first|-second\"", res.StatusCode, body)
	}
}

func TestResponse_LargeBodyAndTrailersPassThrough(t *testing.T) {
	h := newHarness(t, Options{})
	big := strings.Repeat("0123456789", 100_000)
	b := newBackend(t, "blue", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		_, _ = io.WriteString(w, big)
		w.Header().Set("X-Sum", "done")
	})
	h.setTargets("blue", b.addr())
	res, err := http.Get(h.url + "/big")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || len(body) != len(big) {
		t.Fatalf("body: %d bytes, %v, want %d", len(body), err, len(big))
	}
	if got := res.Trailer.Get("X-Sum"); got != "done" {
		t.Errorf("trailer X-Sum = %q, want done", got)
	}
}
