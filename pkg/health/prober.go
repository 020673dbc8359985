// Package health probes replicas' HTTP health endpoints.
package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/pkg/controller"
)

const (
	// maxBody bounds what a probe reads: health bodies are small, and a
	// misbehaving app must not make the daemon buffer megabytes.
	maxBody = 64 << 10
	// defaultTimeout applies when a HealthSpec has none, so no probe can
	// hang for ever.
	defaultTimeout = 5 * time.Second
)

// Prober probes one address per call. It is safe for concurrent use.
type Prober struct {
	client *retryablehttp.Client
}

var _ controller.Prober = (*Prober)(nil)

// NewProber returns a Prober whose HTTP client logs, at debug level, to log.
func NewProber(log logrus.FieldLogger) *Prober {
	c := retryablehttp.NewClient()
	// One quick retry absorbs a single connection reset; the controller
	// owns the polling loop and counts consecutive successes, so more
	// retries here would only blur what it sees.
	c.RetryMax = 1
	c.RetryWaitMin = 50 * time.Millisecond
	c.RetryWaitMax = 200 * time.Millisecond
	c.CheckRetry = retryConnectionErrors
	// Return the transport's own error rather than "giving up after 2
	// attempt(s)", which says nothing about the replica.
	c.ErrorHandler = retryablehttp.PassthroughErrorHandler
	c.Logger = leveledLogger{log: log.WithField("component", "health")}
	c.HTTPClient = &http.Client{
		Transport: &http.Transport{
			// Each probe is a fresh connection, as nginx's will be: a
			// kept-alive socket could hide a replica that no longer
			// accepts new connections. No proxy: replicas are local.
			DisableKeepAlives:     true,
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: defaultTimeout}).DialContext,
			ResponseHeaderTimeout: 0, // bounded by the probe's context
		},
		// A redirect is an answer, judged by its status; following it
		// could probe some other host.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &Prober{client: c}
}

// retryConnectionErrors retries transport failures only. A status code,
// even 5xx, is the replica's real answer and must reach the controller as
// is.
func retryConnectionErrors(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if err == nil {
		return false, nil
	}
	return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
}

// Probe sends GET http://addr<spec.Path> and returns nil when the answer
// has the expected status (spec.ExpectStatus, or any 2xx when it is 0) and,
// when spec.ExpectBody is set, a body (first 64 KiB) containing it. The
// whole probe, retry included, is bounded by spec.Timeout (5s when 0) and
// by ctx.
func (p *Prober) Probe(ctx context.Context, addr string, spec controller.HealthSpec) error {
	path := spec.Path
	if path == "" {
		path = "/"
	}
	what := "GET " + path
	if !strings.HasPrefix(path, "/") {
		return fmt.Errorf("%s: path must start with /", what)
	}
	u, err := url.Parse("http://" + addr + path)
	if err != nil || u.Host != addr {
		return fmt.Errorf("%s: invalid address %q", what, addr)
	}

	timeout := spec.Timeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	req.Header.Set("User-Agent", "deployd-health")
	resp, err := p.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return fmt.Errorf("%s: no answer within %s: %w", what, timeout, err)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()

	if !statusOK(resp.StatusCode, spec.ExpectStatus) {
		want := "2xx"
		if spec.ExpectStatus != 0 {
			want = fmt.Sprint(spec.ExpectStatus)
		}
		return fmt.Errorf("%s: status %d, want %s", what, resp.StatusCode, want)
	}
	if spec.ExpectBody == "" {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("%s: read body: %w", what, err)
	}
	if !strings.Contains(string(body), spec.ExpectBody) {
		return fmt.Errorf("%s: body does not contain %q", what, spec.ExpectBody)
	}
	return nil
}

func statusOK(got, want int) bool {
	if want == 0 {
		return got >= 200 && got <= 299
	}
	return got == want
}
