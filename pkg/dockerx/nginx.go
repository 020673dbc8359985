package dockerx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/deployd/deployd/internal/engine"
	"github.com/deployd/deployd/pkg/controller"
)

// NginxContainer controls an nginx that runs as a container (docker mode):
// it tests the configuration, reloads and lists workers through the engine
// instead of through local processes. Its methods match what the nginxconf
// package needs from an nginx.
type NginxContainer struct {
	c    *Client
	name string
}

// NginxContainer returns a controller for the nginx container called name
// (or with that ID). It does not check that the container exists.
func (c *Client) NginxContainer(name string) *NginxContainer {
	return &NginxContainer{c: c, name: name}
}

// Test runs `nginx -t` inside the container. A failing test returns an
// error that carries nginx's own output, which says what is wrong.
func (n *NginxContainer) Test(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	api := n.c.api
	exec, err := api.ContainerExecCreate(ctx, n.name, container.ExecOptions{
		Cmd: []string{"nginx", "-t"}, AttachStdout: true, AttachStderr: true,
	})
	if cerrdefs.IsNotFound(err) || cerrdefs.IsConflict(err) {
		// A missing or stopped nginx is a down nginx (as in Workers):
		// compose starts it after deployd.
		return fmt.Errorf("nginx -t in %s: %w: %w", n.name, controller.ErrUnavailable, err)
	}
	if err != nil {
		return engine.WrapErr("nginx -t in "+n.name, err)
	}
	att, err := api.ContainerExecAttach(ctx, exec.ID, container.ExecAttachOptions{})
	if err != nil {
		return engine.WrapErr("nginx -t in "+n.name+": attach", err)
	}
	defer att.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, att.Reader); err != nil {
		return fmt.Errorf("nginx -t in %s: read output: %w", n.name, err)
	}
	res, err := n.execResult(ctx, exec.ID)
	if err != nil {
		return fmt.Errorf("nginx -t in %s: %w", n.name, err)
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("nginx -t in %s failed (exit %d): %s", n.name, res.ExitCode, strings.TrimSpace(out.String()))
	}
	return nil
}

// execResult waits for the engine to record an exec's exit: the output
// stream can end a moment before the exec is marked as finished.
func (n *NginxContainer) execResult(ctx context.Context, id string) (container.ExecInspect, error) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		res, err := n.c.api.ContainerExecInspect(ctx, id)
		if err != nil {
			return res, engine.WrapErr("inspect exec", err)
		}
		if !res.Running {
			return res, nil
		}
		if time.Now().After(deadline) {
			return res, errors.New("still running after its output ended")
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Reload sends SIGHUP to the container's main process, the nginx master,
// which re-reads its configuration and replaces its workers.
func (n *NginxContainer) Reload(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if err := n.c.api.ContainerKill(ctx, n.name, "HUP"); err != nil {
		return engine.WrapErr("reload nginx in "+n.name, err)
	}
	return nil
}

// Workers returns the PIDs (as the host sees them) of the nginx master's
// child processes, sorted. A reload is confirmed when this set changes. A
// missing or stopped container wraps controller.ErrUnavailable.
func (n *NginxContainer) Workers(ctx context.Context) ([]int, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	insp, err := n.c.api.ContainerInspect(ctx, n.name)
	if cerrdefs.IsNotFound(err) {
		// For the router a missing nginx is a down nginx, not a missing
		// record.
		return nil, fmt.Errorf("nginx workers in %s: %w: %w", n.name, controller.ErrUnavailable, err)
	}
	if err != nil {
		return nil, engine.WrapErr("nginx workers in "+n.name, err)
	}
	if insp.State == nil || !insp.State.Running || insp.State.Pid == 0 {
		return nil, fmt.Errorf("nginx workers in %s: container is not running: %w", n.name, controller.ErrUnavailable)
	}
	top, err := n.top(ctx)
	if err != nil {
		return nil, err
	}
	workers, err := childPIDs(top, insp.State.Pid)
	if err != nil {
		return nil, fmt.Errorf("nginx workers in %s: %w", n.name, err)
	}
	return workers, nil
}

// Retired reports whether each of pids has left the container or retitled
// itself "... is shutting down", which an nginx worker does once it has
// closed its listening sockets after a reload.
func (n *NginxContainer) Retired(ctx context.Context, pids []int) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	top, err := n.top(ctx)
	if err != nil {
		return false, err
	}
	return retired(top, pids)
}

func (n *NginxContainer) top(ctx context.Context) (container.TopResponse, error) {
	top, err := n.c.api.ContainerTop(ctx, n.name, nil)
	if err != nil {
		return top, engine.WrapErr("processes of "+n.name, err)
	}
	return top, nil
}

// retired reports whether none of pids appears in top except as a worker
// that is shutting down.
func retired(top container.TopResponse, pids []int) (bool, error) {
	pidCol, cmdCol := column(top.Titles, "PID"), column(top.Titles, "CMD")
	if cmdCol < 0 {
		cmdCol = column(top.Titles, "COMMAND")
	}
	if pidCol < 0 || cmdCol < 0 {
		return false, fmt.Errorf("top has no PID and CMD columns (titles %q)", top.Titles)
	}
	for _, row := range top.Processes {
		if len(row) <= pidCol || len(row) <= cmdCol {
			return false, fmt.Errorf("top row %q is shorter than its titles", row)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(row[pidCol]))
		if err != nil {
			return false, fmt.Errorf("top row %q: bad PID: %w", row, err)
		}
		if slices.Contains(pids, pid) && !strings.Contains(row[cmdCol], "shutting down") {
			return false, nil
		}
	}
	return true, nil
}

func column(titles []string, name string) int {
	for i, t := range titles {
		if strings.EqualFold(strings.TrimSpace(t), name) {
			return i
		}
	}
	return -1
}

// childPIDs picks from a `ps` table the processes whose parent is parent.
func childPIDs(top container.TopResponse, parent int) ([]int, error) {
	pidCol, ppidCol := column(top.Titles, "PID"), column(top.Titles, "PPID")
	if pidCol < 0 || ppidCol < 0 {
		return nil, fmt.Errorf("top has no PID and PPID columns (titles %q)", top.Titles)
	}
	var pids []int
	for _, row := range top.Processes {
		if len(row) <= pidCol || len(row) <= ppidCol {
			return nil, fmt.Errorf("top row %q is shorter than its titles", row)
		}
		ppid, err := strconv.Atoi(strings.TrimSpace(row[ppidCol]))
		if err != nil {
			return nil, fmt.Errorf("top row %q: bad PPID: %w", row, err)
		}
		if ppid != parent {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(row[pidCol]))
		if err != nil {
			return nil, fmt.Errorf("top row %q: bad PID: %w", row, err)
		}
		pids = append(pids, pid)
	}
	sort.Ints(pids)
	return pids, nil
}
