package dockerx

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/internal/engine"
	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/workload"
)

// outputTail is how much of a one-off's output is kept: the end is where a
// failing migration says what went wrong.
const outputTail = 64 << 10

// RunOneOff creates a container for spec, runs it to completion, collects
// the tail of its output and removes it. It blocks until the command ends;
// when ctx ends first the container is killed and removed and ctx's error
// is returned wrapped. A non-zero exit is not an error: it is in the result.
func (c *Client) RunOneOff(ctx context.Context, spec controller.OneOffSpec) (controller.OneOffResult, error) {
	log := c.log.WithFields(logrus.Fields{"service": spec.Service, "deployment": spec.Deployment, "container": spec.Name})
	cfg := &container.Config{
		Image:  spec.Image,
		Cmd:    spec.Command,
		Env:    append(append([]string(nil), spec.Env...), controller.ReplicaEnv(spec.Service, controller.NoColor, spec.Deployment)...),
		Labels: oneOffLabels(spec),
	}
	if err := c.ensureVolumes(ctx, spec); err != nil {
		return controller.OneOffResult{}, fmt.Errorf("run %s: %w", spec.Name, err)
	}
	hostCfg := &container.HostConfig{Mounts: volumeMounts(spec)}
	applyLimits(cfg, hostCfg, spec.Limits)
	netCfg := networkConfig(hostCfg, spec.Network, spec.Name)

	id, err := c.create(ctx, cfg, hostCfg, netCfg, spec.Name)
	if err != nil {
		return controller.OneOffResult{}, fmt.Errorf("run %s: %w", spec.Name, err)
	}
	// Whatever happens from here, the container goes; a fresh context
	// because ctx may be the reason we are leaving.
	defer c.removeQuietly(ctx, id, log)

	// No timeout: the wait lasts as long as the command. The wait is
	// registered before the start so a command that exits at once is not
	// missed.
	waitCtx, cancelWait := context.WithCancel(ctx)
	defer cancelWait()
	resC, errC := c.api.ContainerWait(waitCtx, id, container.WaitConditionNextExit)

	if err := c.start(ctx, id); err != nil {
		return controller.OneOffResult{}, fmt.Errorf("run %s: %w", spec.Name, err)
	}

	var exit int
	select {
	case res := <-resC:
		if res.Error != nil && res.Error.Message != "" {
			return controller.OneOffResult{}, fmt.Errorf("run %s: wait: %s", spec.Name, res.Error.Message)
		}
		exit = int(res.StatusCode)
	case err := <-errC:
		if ctx.Err() != nil {
			c.killQuietly(ctx, id, log)
			return controller.OneOffResult{}, fmt.Errorf("run %s: %w", spec.Name, ctx.Err())
		}
		return controller.OneOffResult{}, engine.WrapErr("run "+spec.Name+": wait", err)
	case <-ctx.Done():
		c.killQuietly(ctx, id, log)
		cancelWait()
		drainWait(resC, errC)
		return controller.OneOffResult{}, fmt.Errorf("run %s: %w", spec.Name, ctx.Err())
	}

	out, err := c.logsTail(ctx, id)
	if err != nil {
		return controller.OneOffResult{ExitCode: exit}, fmt.Errorf("run %s: %w", spec.Name, err)
	}
	log.WithField("exit_code", exit).Info("one-off finished")
	return controller.OneOffResult{ExitCode: exit, Output: out}, nil
}

// drainWait lets the engine client's wait goroutine finish: it sends its
// result on an unbuffered channel and would block forever if nobody read it.
// The wait's context is cancelled, so one of the two arrives promptly.
func drainWait(resC <-chan container.WaitResponse, errC <-chan error) {
	select {
	case <-resC:
	case <-errC:
	case <-time.After(10 * time.Second):
	}
}

// logsTail returns the last outputTail bytes of a stopped container's
// stdout and stderr, interleaved as the engine recorded them.
func (c *Client) logsTail(ctx context.Context, id string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	rc, err := c.api.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return "", engine.WrapErr("logs", err)
	}
	defer func() { _ = rc.Close() }()
	// A one-off runs without a TTY.
	return engine.ReadTail(rc, outputTail)
}

func (c *Client) killQuietly(ctx context.Context, id string, log logrus.FieldLogger) {
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := c.api.ContainerKill(kctx, id, "KILL"); err != nil {
		log.WithError(err).Warn("kill one-off")
	}
}

// OneOffs lists the service's one-off containers that still exist in any
// state. RunOneOff removes its container itself, so these are what a killed
// deployd left behind, or a run still in progress.
func (c *Client) OneOffs(ctx context.Context, service string) ([]controller.Container, error) {
	lctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	args := workload.Filter(service)
	args.Add("label", workload.LabelOneOff+"=true")
	list, err := c.api.ContainerList(lctx, container.ListOptions{All: true, Filters: args})
	if err != nil {
		return nil, engine.WrapErr("list one-offs of "+service, err)
	}
	out := make([]controller.Container, 0, len(list))
	for _, s := range list {
		ctr := controller.Container{
			ID:         s.ID,
			Service:    s.Labels[workload.LabelService],
			Deployment: s.Labels[workload.LabelDeployment],
			Image:      s.Image,
			State:      string(s.State),
		}
		if len(s.Names) > 0 {
			ctr.Name = strings.TrimPrefix(s.Names[0], "/")
		}
		out = append(out, ctr)
	}
	return out, nil
}
