// Package dockerx adapts the Docker Engine API to controller.Runtime: it
// starts, lists, stops and removes a service's containers by label, makes
// images present, runs one-off commands and signals an nginx container.
package dockerx

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/docker/docker/client"
	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/pkg/controller"
)

// callTimeout bounds every short Docker call (create, inspect, start, ...);
// pulls and waits are bounded only by the caller's context.
const callTimeout = 30 * time.Second

const (
	defaultPullRetries = 4
	defaultPullBackoff = 500 * time.Millisecond
	maxPullBackoff     = 5 * time.Second
)

// Options configures a Client.
type Options struct {
	// Host is the engine's address; "" means DOCKER_HOST, else the local
	// socket.
	Host string
	// PublishPorts selects exec mode (nginx on the host): each replica's
	// port is published on 127.0.0.1 with an ephemeral host port and
	// Container.Address is "127.0.0.1:<hostport>". When false (docker
	// mode: nginx and deployd in containers on the service network)
	// Address is "<container name>:<port>".
	PublishPorts bool
	Logger       logrus.FieldLogger
	// PullRetries is how many times a pull is tried in all (default 4);
	// PullBackoff is the first wait between tries, doubled each time and
	// capped at 5s (default 500ms).
	PullRetries int
	PullBackoff time.Duration
}

// Client talks to one Docker engine. It is safe for concurrent use.
type Client struct {
	api          *client.Client
	publishPorts bool
	log          logrus.FieldLogger
	pullRetries  int
	pullBackoff  time.Duration
}

var _ controller.Runtime = (*Client)(nil)

// New connects to the engine and pings it. An unreachable engine returns an
// error wrapping controller.ErrUnavailable.
func New(ctx context.Context, o Options) (*Client, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if o.Host != "" {
		opts = append(opts, client.WithHost(o.Host))
	}
	api, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	c := &Client{
		api:          api,
		publishPorts: o.PublishPorts,
		log:          o.Logger,
		pullRetries:  o.PullRetries,
		pullBackoff:  o.PullBackoff,
	}
	if c.log == nil {
		// A discarding logger rather than the global one: libraries never
		// write to the process-wide logger behind the caller's back.
		l := logrus.New()
		l.Out = io.Discard
		c.log = l
	}
	if c.pullRetries <= 0 {
		c.pullRetries = defaultPullRetries
	}
	if c.pullBackoff <= 0 {
		c.pullBackoff = defaultPullBackoff
	}
	if err := c.Ping(ctx); err != nil {
		_ = api.Close()
		return nil, err
	}
	// Negotiate now rather than on the first call: the event stream reads
	// the version without the lock the other calls negotiate under, so a
	// lazy negotiation would race with it.
	nctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	api.NegotiateAPIVersion(nctx)
	return c, nil
}

// API is the engine's SDK client, for an adapter beside this one that
// needs other endpoints of the same engine (the Swarm runtime) and shares
// its connection. Close closes it.
func (c *Client) API() *client.Client { return c.api }

// Close releases the client's connections.
func (c *Client) Close() error {
	if err := c.api.Close(); err != nil {
		return fmt.Errorf("close docker client: %w", err)
	}
	return nil
}

// Ping checks that the engine answers; an unreachable engine wraps
// controller.ErrUnavailable.
func (c *Client) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if _, err := c.api.Ping(ctx); err != nil {
		// A ping that fails for any reason means the engine is not usable,
		// not only when the socket refuses the connection.
		return fmt.Errorf("ping docker engine: %w: %w", controller.ErrUnavailable, err)
	}
	return nil
}
