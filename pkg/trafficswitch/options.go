package trafficswitch

import (
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/internal/clientaddr"
)

// Defaults of Options' zero fields.
const (
	DefaultDialTimeout           = 2 * time.Second
	DefaultResponseHeaderTimeout = 60 * time.Second
	DefaultIdleConnTimeout       = 30 * time.Second
	DefaultMaxIdleConnsPerHost   = 64
	DefaultMaxAttempts           = 3
	DefaultFailTimeout           = 2 * time.Second
	DefaultReadHeaderTimeout     = 10 * time.Second
	DefaultClientIdleTimeout     = 5 * time.Minute
	DefaultErrorWindow           = 60 * time.Second
)

// Options configure a Switch. The zero value is valid: every zero field
// takes its Default.
type Options struct {
	// Logger gets proxy errors (502s and their reasons) and server errors,
	// with the field service (and color where known). nil discards them.
	Logger logrus.FieldLogger
	// Registerer, when set, gets the Switch's collectors (see metrics.go
	// for the names). nil keeps the metrics unregistered.
	Registerer prometheus.Registerer

	// TrustedProxies are the TCP peers (nginx) whose X-Forwarded-For,
	// -Host and -Proto, Forwarded and X-Real-IP headers are passed on. From
	// any other peer those headers are dropped and set from the connection.
	// See ParseTrustedProxies.
	TrustedProxies []netip.Prefix

	// DialTimeout bounds a connection to a replica.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for a replica's response
	// headers once the request is written; past it the client gets a 504.
	// Bodies stream without a deadline (SSE, downloads).
	ResponseHeaderTimeout time.Duration
	// IdleConnTimeout is how long an idle keep-alive connection to a
	// replica stays in its color's pool. Keep it below the replicas' own
	// idle timeout, so the replica never closes a connection under a
	// request.
	IdleConnTimeout time.Duration
	// MaxIdleConnsPerHost bounds each replica's idle pool.
	MaxIdleConnsPerHost int
	// MaxAttempts bounds the tries of one request across replicas
	// (retries follow the rules in retry.go); at least 1.
	MaxAttempts int
	// FailTimeout is how long a replica that refused a connection is
	// skipped while its set has another replica to try.
	FailTimeout time.Duration

	// ReadHeaderTimeout bounds a client's (nginx's) request headers.
	ReadHeaderTimeout time.Duration
	// ClientIdleTimeout closes a client keep-alive connection idle this
	// long. It must exceed nginx's upstream keepalive_timeout (60s by
	// default), so that nginx, not the switch, closes idle connections:
	// otherwise nginx may send a request on a connection the switch is
	// closing.
	ClientIdleTimeout time.Duration

	// ErrorWindow is the span Window counts requests and 5xx answers over.
	ErrorWindow time.Duration
}

// withDefaults returns o with every zero field set to its default, or an
// error wrapping ErrInvalid naming the first negative field.
func (o Options) withDefaults() (Options, error) {
	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"DialTimeout", &o.DialTimeout, DefaultDialTimeout},
		{"ResponseHeaderTimeout", &o.ResponseHeaderTimeout, DefaultResponseHeaderTimeout},
		{"IdleConnTimeout", &o.IdleConnTimeout, DefaultIdleConnTimeout},
		{"FailTimeout", &o.FailTimeout, DefaultFailTimeout},
		{"ReadHeaderTimeout", &o.ReadHeaderTimeout, DefaultReadHeaderTimeout},
		{"ClientIdleTimeout", &o.ClientIdleTimeout, DefaultClientIdleTimeout},
		{"ErrorWindow", &o.ErrorWindow, DefaultErrorWindow},
	}
	for _, d := range durations {
		switch {
		case *d.v < 0:
			return o, fmt.Errorf("%w: %s is negative (%s)", ErrInvalid, d.name, *d.v)
		case *d.v == 0:
			*d.v = d.def
		}
	}
	if o.ErrorWindow < windowBuckets*time.Millisecond {
		return o, fmt.Errorf("%w: ErrorWindow %s is shorter than %dms", ErrInvalid, o.ErrorWindow, windowBuckets)
	}
	switch {
	case o.MaxIdleConnsPerHost < 0:
		return o, fmt.Errorf("%w: MaxIdleConnsPerHost is negative (%d)", ErrInvalid, o.MaxIdleConnsPerHost)
	case o.MaxIdleConnsPerHost == 0:
		o.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	}
	switch {
	case o.MaxAttempts < 0:
		return o, fmt.Errorf("%w: MaxAttempts is negative (%d)", ErrInvalid, o.MaxAttempts)
	case o.MaxAttempts == 0:
		o.MaxAttempts = DefaultMaxAttempts
	}
	for _, p := range o.TrustedProxies {
		if !p.IsValid() {
			return o, fmt.Errorf("%w: TrustedProxies holds an invalid prefix", ErrInvalid)
		}
	}
	if o.Logger == nil {
		o.Logger = discardLogger()
	}
	return o, nil
}

// discardLogger stands in for a nil logger.
func discardLogger() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// ParseTrustedProxies parses addresses ("127.0.0.1", "::1") and CIDR
// prefixes ("172.18.0.0/16") for Options.TrustedProxies. An entry that is
// neither is an error wrapping ErrInvalid that names it.
func ParseTrustedProxies(entries []string) ([]netip.Prefix, error) {
	p, err := clientaddr.Parse(entries)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return p, nil
}
