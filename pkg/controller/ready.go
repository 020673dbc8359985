package controller

import (
	"context"
	"strings"
	"time"
)

// readyTimeout bounds each dependency check of Ready and the Docker ping
// before a deploy: an engine that does not answer within it is as good as
// gone for a request waiting on it.
const readyTimeout = 3 * time.Second

// Ready reports whether deployd can do its work: the store is readable,
// the Docker engine answers and the Router's check passes (nginx's config
// test, the traffic switch listening, or both). It returns nil or an
// EUNAVAILABLE *Error whose message names every dependency that failed
// ("store: ...; docker: ...; traffic: nginx config test: ..."): the
// Router's errors say which of its parts failed, and "traffic" holds
// whether nginx is in the path or not.
func (c *Controller) Ready(ctx context.Context) error {
	checks := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"store", c.store.Ping},
		{"docker", c.rt.Ping},
		{"traffic", c.router.Check},
	}
	if c.swarm != nil {
		checks = append(checks, struct {
			name string
			fn   func(context.Context) error
		}{"swarm", c.swarm.Ping})
	}
	var failed []string
	for _, ch := range checks {
		cctx, cancel := context.WithTimeout(ctx, readyTimeout)
		err := ch.fn(cctx)
		cancel()
		if err != nil {
			failed = append(failed, ch.name+": "+err.Error())
		}
	}
	if len(failed) > 0 {
		return Errorf(EUNAVAILABLE, "%s", strings.Join(failed, "; "))
	}
	return nil
}

// pingRuntime checks that the service's runtime answers before a request
// records anything.
func (c *Controller) pingRuntime(ctx context.Context, service string) error {
	pctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := c.runtime(service).Ping(pctx); err != nil {
		what := "docker engine"
		if c.services[service].Runtime == RuntimeSwarm {
			what = "swarm"
		}
		return &Error{Code: EUNAVAILABLE, Message: what + " unavailable: " + err.Error()}
	}
	return nil
}
