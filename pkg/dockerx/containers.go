package dockerx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/go-connections/nat"
	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/internal/engine"
	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/workload"
)

// portWait bounds how long StartContainer waits for the engine to report
// the published host port, which can lag the start by a moment.
const portWait = 5 * time.Second

// StartContainer creates and starts one replica. The returned Container's
// Address is where nginx and the prober reach it. If the container cannot
// be started it is removed again so no half-made replica is left behind.
func (c *Client) StartContainer(ctx context.Context, spec controller.ContainerSpec) (controller.Container, error) {
	restart, err := parseRestartPolicy(spec.RestartPolicy)
	if err != nil {
		return controller.Container{}, fmt.Errorf("start container %s: %w", spec.Name, err)
	}
	if spec.Port <= 0 || spec.Port > 65535 {
		return controller.Container{}, fmt.Errorf("start container %s: invalid port %d", spec.Name, spec.Port)
	}
	port := nat.Port(strconv.Itoa(spec.Port) + "/tcp")
	cfg := &container.Config{
		Image:        spec.Image,
		Env:          append(append([]string(nil), spec.Env...), controller.ReplicaEnv(spec.Service, spec.Color, spec.Deployment)...),
		Labels:       replicaLabels(spec),
		ExposedPorts: nat.PortSet{port: struct{}{}},
	}
	hostCfg := &container.HostConfig{RestartPolicy: restart}
	applyLimits(cfg, hostCfg, spec.Limits)
	if c.publishPorts {
		// HostPort "" asks the engine for an ephemeral port; binding to
		// loopback keeps replicas reachable only through nginx.
		hostCfg.PortBindings = nat.PortMap{port: {{HostIP: "127.0.0.1", HostPort: ""}}}
	}
	netCfg := networkConfig(hostCfg, spec.Network, spec.Name)
	log := c.log.WithFields(logrus.Fields{
		"service": spec.Service, "color": spec.Color, "deployment": spec.Deployment, "container": spec.Name,
	})

	id, err := c.create(ctx, cfg, hostCfg, netCfg, spec.Name)
	if err != nil {
		return controller.Container{}, fmt.Errorf("start container %s: %w", spec.Name, err)
	}
	if err := c.start(ctx, id); err != nil {
		c.removeQuietly(ctx, id, log)
		return controller.Container{}, fmt.Errorf("start container %s: %w", spec.Name, err)
	}
	ctr, err := c.waitAddress(ctx, id)
	if err != nil {
		c.removeQuietly(ctx, id, log)
		return controller.Container{}, fmt.Errorf("start container %s: %w", spec.Name, err)
	}
	log.WithField("address", ctr.Address).Info("container started")
	return ctr, nil
}

// Containers lists the service's managed replicas in every state, one-offs
// excluded.
func (c *Client) Containers(ctx context.Context, service string) ([]controller.Container, error) {
	lctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	list, err := c.api.ContainerList(lctx, container.ListOptions{All: true, Filters: workload.Filter(service)})
	if err != nil {
		return nil, engine.WrapErr("list containers of "+service, err)
	}
	// Inspect in parallel: the status page and every deploy step list
	// containers, and the engine is slowest exactly while a deploy runs.
	type result struct {
		ctr controller.Container
		err error
	}
	results := make([]result, len(list))
	var wg sync.WaitGroup
	for i, s := range list {
		if workload.IsOneOff(s.Labels) {
			results[i].err = errSkip
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctr, err := c.InspectContainer(ctx, s.ID)
			results[i] = result{ctr, err}
		}()
	}
	wg.Wait()
	out := make([]controller.Container, 0, len(list))
	for _, r := range results {
		switch {
		case errors.Is(r.err, errSkip), errors.Is(r.err, controller.ErrNotFound):
			// A one-off, or removed between the list and the inspect: it
			// is gone, which is what a fresh list would say too.
			continue
		case r.err != nil:
			return nil, fmt.Errorf("list containers of %s: %w", service, r.err)
		}
		out = append(out, r.ctr)
	}
	return out, nil
}

// errSkip marks a listed container that Containers leaves out.
var errSkip = errors.New("skip")

// InspectContainer returns one container's state; a missing container wraps
// controller.ErrNotFound.
func (c *Client) InspectContainer(ctx context.Context, id string) (controller.Container, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := c.api.ContainerInspect(ctx, id)
	if err != nil {
		return controller.Container{}, engine.WrapErr("inspect container "+id, err)
	}
	return c.toContainer(resp), nil
}

// StartExisting starts a stopped container and returns its state with the
// address it has now; a published port is usually a new one.
func (c *Client) StartExisting(ctx context.Context, id string) (controller.Container, error) {
	if err := c.start(ctx, id); err != nil {
		return controller.Container{}, fmt.Errorf("start existing container %s: %w", id, err)
	}
	ctr, err := c.waitAddress(ctx, id)
	if err != nil {
		return ctr, fmt.Errorf("start existing container %s: %w", id, err)
	}
	return ctr, nil
}

// StopContainer asks the container to stop and kills it after timeout.
func (c *Client) StopContainer(ctx context.Context, id string, timeout time.Duration) error {
	secs := int(timeout.Round(time.Second) / time.Second)
	// The engine's own stop takes up to timeout; our bound comes on top.
	ctx, cancel := context.WithTimeout(ctx, callTimeout+timeout)
	defer cancel()
	if err := c.api.ContainerStop(ctx, id, container.StopOptions{Timeout: &secs}); err != nil {
		return engine.WrapErr("stop container "+id, err)
	}
	return nil
}

// RemoveContainer force-removes a container; a missing one is no error.
// One that someone else is removing already (docker rm -f by hand, whose
// kill is what woke the caller) is waited for until it is gone, so that
// the caller can create its name again at once.
func (c *Client) RemoveContainer(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	err := c.api.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	switch {
	case err == nil || cerrdefs.IsNotFound(err):
		return nil
	case removalInProgress(err):
		if werr := c.waitGone(ctx, id); werr != nil {
			return engine.WrapErr("remove container "+id, errors.Join(err, werr))
		}
		return nil
	}
	return engine.WrapErr("remove container "+id, err)
}

// removalInProgress reports the engine's refusal to remove a container
// another call is removing. The engine gives it no kind of its own beyond
// Conflict, which a forced remove otherwise does not return.
func removalInProgress(err error) bool {
	return cerrdefs.IsConflict(err) && strings.Contains(err.Error(), "already in progress")
}

// waitGone polls until the engine no longer knows the container id. When
// the wait ends first, the engine's last answer goes with the error: an
// engine that stopped answering is not a container that stayed. An inspect
// cut short by the wait's own deadline is no answer and is not kept.
func (c *Client) waitGone(ctx context.Context, id string) error {
	var lastAnswer error
	for {
		_, err := c.api.ContainerInspect(ctx, id)
		if cerrdefs.IsNotFound(err) {
			return nil
		}
		if ctx.Err() == nil {
			lastAnswer = err
		}
		select {
		case <-ctx.Done():
			if lastAnswer != nil {
				return fmt.Errorf("still there after waiting for its removal (last inspect: %v): %w", lastAnswer, ctx.Err())
			}
			return fmt.Errorf("still there after waiting for its removal: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *Client) create(ctx context.Context, cfg *container.Config, hostCfg *container.HostConfig, netCfg *network.NetworkingConfig, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := c.api.ContainerCreate(ctx, cfg, hostCfg, netCfg, nil, name)
	if err != nil {
		return "", engine.WrapErr("create", err)
	}
	for _, w := range resp.Warnings {
		c.log.WithField("container", name).Warn("docker: " + w)
	}
	return resp.ID, nil
}

func (c *Client) start(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return engine.WrapErr("start", c.api.ContainerStart(ctx, id, container.StartOptions{}))
}

// removeQuietly cleans up after a failure that is already being reported;
// it uses a fresh context because ctx may be the reason for the failure.
func (c *Client) removeQuietly(ctx context.Context, id string, log logrus.FieldLogger) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := c.RemoveContainer(rctx, id); err != nil {
		log.Warn("cleanup: " + err.Error())
	}
}

// waitAddress inspects a just-started container until its address is known:
// with published ports the engine fills in the host port shortly after the
// start. A container that stopped meanwhile is returned as it is, without
// an address, for the caller's health check to judge.
func (c *Client) waitAddress(ctx context.Context, id string) (controller.Container, error) {
	deadline := time.Now().Add(portWait)
	for {
		ctr, err := c.InspectContainer(ctx, id)
		if err != nil {
			return controller.Container{}, err
		}
		if ctr.Address != "" || !ctr.Running() {
			return ctr, nil
		}
		if time.Now().After(deadline) {
			return ctr, fmt.Errorf("no published port for %s after %s", ctr.Name, portWait)
		}
		select {
		case <-ctx.Done():
			return ctr, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *Client) toContainer(r container.InspectResponse) controller.Container {
	ctr := controller.Container{ID: r.ID, Name: strings.TrimPrefix(r.Name, "/")}
	if r.Config != nil {
		ctr.Service = r.Config.Labels[workload.LabelService]
		ctr.Color = controller.Color(r.Config.Labels[workload.LabelColor])
		ctr.Deployment = r.Config.Labels[workload.LabelDeployment]
		ctr.Image = r.Config.Image
	}
	ctr.Restarts = r.RestartCount
	if s := r.State; s != nil {
		ctr.State = string(s.Status)
		ctr.ExitCode = s.ExitCode
		if t, err := time.Parse(time.RFC3339Nano, s.StartedAt); err == nil && !t.IsZero() && t.Year() > 1 {
			ctr.StartedAt = t
		}
		if s.Health != nil {
			ctr.Health = string(s.Health.Status)
		}
	}
	if ctr.Running() {
		ctr.Address = c.address(r)
	}
	return ctr
}

// address is where the replica is reached: the published loopback port in
// exec mode, the container's name on the service network in docker mode.
// It is "" when the port is unknown.
func (c *Client) address(r container.InspectResponse) string {
	port := containerPort(r)
	if port == "" {
		return ""
	}
	if !c.publishPorts {
		return net.JoinHostPort(strings.TrimPrefix(r.Name, "/"), nat.Port(port).Port())
	}
	if r.NetworkSettings == nil {
		return ""
	}
	for _, b := range r.NetworkSettings.Ports[nat.Port(port)] {
		if b.HostPort == "" || b.HostPort == "0" {
			continue
		}
		ip := b.HostIP
		if ip == "" || ip == "0.0.0.0" || ip == "::" {
			ip = "127.0.0.1"
		}
		if strings.Contains(ip, ":") {
			// The engine may also bind [::]; nginx is told the IPv4 one.
			continue
		}
		return net.JoinHostPort(ip, b.HostPort)
	}
	return ""
}

// containerPort is the replica's "<port>/tcp": from our label, else the one
// port the image or container exposes.
func containerPort(r container.InspectResponse) string {
	if r.Config == nil {
		return ""
	}
	if p := r.Config.Labels[workload.LabelPort]; p != "" {
		return p + "/tcp"
	}
	if len(r.Config.ExposedPorts) == 1 {
		for p := range r.Config.ExposedPorts {
			return string(p)
		}
	}
	return ""
}

// networkConfig attaches the container to network at create time with its
// name as an alias, so nginx in docker mode resolves it by name.
func networkConfig(hostCfg *container.HostConfig, networkName, alias string) *network.NetworkingConfig {
	if networkName == "" {
		return nil
	}
	hostCfg.NetworkMode = container.NetworkMode(networkName)
	return &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
		networkName: {Aliases: []string{alias}},
	}}
}

// parseRestartPolicy turns a ContainerSpec's restart policy, read by
// controller.ParseRestartPolicy, into the engine's; "" means no.
func parseRestartPolicy(s string) (container.RestartPolicy, error) {
	if s == "" {
		return container.RestartPolicy{Name: container.RestartPolicyDisabled}, nil
	}
	p, err := controller.ParseRestartPolicy(s)
	if err != nil {
		return container.RestartPolicy{}, err
	}
	return container.RestartPolicy{Name: container.RestartPolicyMode(p.Name), MaximumRetryCount: p.MaxRetries}, nil
}
