package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
)

// A swarm for tests and the benchmark. Several processes (a test binary
// per package, a benchmark run) may use the local engine's swarm at once,
// so they coordinate with flock(2) on one file: a user holds the lock
// shared for as long as it uses the swarm, an exclusive hold is taken only
// to init it, and the last process out (the one that gets the lock
// exclusively once it is done) leaves the swarm, but only one that carries
// SwarmLabel: a developer's own swarm is never left. internal/testenv
// wraps these for tests; the benchmark calls them directly.

// SwarmLabel marks a swarm initialised by JoinSwarm, and the overlay
// networks CreateOverlay makes.
const SwarmLabel = "deployd.test"

// ErrSwarmUnavailable means the engine cannot be a swarm manager here: it
// does not answer, is in a swarm as a worker, or refuses to init one.
// Tests skip on it outside CI.
var ErrSwarmUnavailable = errors.New("no swarm manager")

// serviceLabel is the label deployd puts on everything of a service.
const serviceLabel = "deployd.service"

// SwarmLockPath is the file the swarm's users lock.
func SwarmLockPath() string { return filepath.Join(os.TempDir(), "deployd-test-swarm.lock") }

// Lock modes of a SwarmLease.
const (
	lockShared    = syscall.LOCK_SH
	lockExclusive = syscall.LOCK_EX
)

// lockPoll is how often a wait for the lock tries again. flock(2) cannot
// be interrupted by a context, so a wait polls instead of blocking: a
// waiter then gives up at its deadline rather than hanging with it.
const lockPoll = 100 * time.Millisecond

// engineCallTimeout bounds each engine call of JoinSwarm on its own, apart
// from the wait for the lock, which may take as long as another process
// (a benchmark run, another package's tests) uses the swarm.
const engineCallTimeout = time.Minute

// SwarmLease is one user's hold on the swarm lock, from JoinSwarm until
// Release.
type SwarmLease struct {
	f *os.File
	// held: f is locked, shared or exclusive.
	held bool
}

// OpenSwarmLock opens the lock file without locking it.
func OpenSwarmLock() (*SwarmLease, error) {
	f, err := openLockFile(SwarmLockPath())
	if err != nil {
		return nil, err
	}
	return &SwarmLease{f: f}, nil
}

// swarmGatePath is the lock a lease passes on its way to the swarm lock.
// flock(2) lets new shared holders in while an exclusive one waits, and a
// package of tests keeps the swarm held shared for minutes, one test
// after another: a test that needs the swarm alone would wait for all of
// them. So a waiter for an exclusive hold closes the gate (holds it
// exclusively) until it has the lock, and shared holders pass it (hold it
// shared) only on their way in: once the holders inside are done, the
// exclusive waiter is next.
func swarmGatePath() string { return SwarmLockPath() + ".gate" }

func openLockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open swarm lock: %w", err)
	}
	return f, nil
}

// LockShared waits for a shared hold and LockExclusive for an exclusive
// one, until ctx is done; TryExclusive takes an exclusive hold only if
// nobody holds the lock and otherwise returns an error wrapping
// syscall.EWOULDBLOCK. Changing a hold drops the old one first (flock's
// rule), so two holders upgrading at once do not deadlock; a change of
// hold does not pass the gate, since a holder waiting there would keep
// the gate's exclusive waiter out of the lock.
func (l *SwarmLease) LockShared(ctx context.Context) error    { return l.wait(ctx, lockShared) }
func (l *SwarmLease) LockExclusive(ctx context.Context) error { return l.wait(ctx, lockExclusive) }
func (l *SwarmLease) TryExclusive() error {
	if err := flockNow(l.f, lockExclusive); err != nil {
		return err
	}
	l.held = true
	return nil
}

func (l *SwarmLease) wait(ctx context.Context, how int) error {
	if !l.held {
		gate, err := openLockFile(swarmGatePath())
		if err != nil {
			return err
		}
		// Closing the file drops the gate, once the lock is had (or not).
		defer func() { _ = gate.Close() }()
		if err := flockWait(ctx, gate, how); err != nil {
			return err
		}
	}
	if err := flockWait(ctx, l.f, how); err != nil {
		return err
	}
	l.held = true
	return nil
}

// flockWait takes how on f, trying every lockPoll until ctx is done.
func flockWait(ctx context.Context, f *os.File, how int) error {
	tick := time.NewTicker(lockPoll)
	defer tick.Stop()
	for {
		err := flockNow(f, how)
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s (another test package or benchmark run uses the swarm): %w", f.Name(), ctx.Err())
		case <-tick.C:
		}
	}
}

// flockNow takes how on f if it can at once; an error wrapping
// syscall.EWOULDBLOCK when another holder is in the way.
func flockNow(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			if err != nil {
				return fmt.Errorf("lock %s: %w", f.Name(), err)
			}
			return nil
		}
	}
}

// Release drops the hold by closing the file (the lock goes with it).
func (l *SwarmLease) Release() error { return l.f.Close() }

// JoinSwarm makes sure the engine behind cli is a swarm manager and
// returns the caller's hold on the swarm lock: shared, or exclusive for a
// user that disturbs every task of the swarm (draining its only node).
// The local engine is initialised as a single-node swarm (listening on
// 127.0.0.1:2377, labelled SwarmLabel=true) when it is in none; a swarm
// left behind by a crashed run is reused. ctx bounds the whole, waits for
// the lock included; each engine call is bounded on its own as well. The
// caller keeps the hold while it uses the swarm, and then calls Release
// and LeaveSwarmIfLast. Errors about the engine wrap ErrSwarmUnavailable.
func JoinSwarm(ctx context.Context, cli *client.Client, exclusive bool) (*SwarmLease, error) {
	hold := lockShared
	if exclusive {
		hold = lockExclusive
	}
	lease, err := OpenSwarmLock()
	if err != nil {
		return nil, err
	}
	if err := joinSwarm(ctx, cli, lease, hold); err != nil {
		_ = lease.Release()
		return nil, err
	}
	return lease, nil
}

func joinSwarm(ctx context.Context, cli *client.Client, lease *SwarmLease, hold int) error {
	if err := lease.wait(ctx, hold); err != nil {
		return err
	}
	state, err := swarmState(ctx, cli)
	if err != nil {
		return err
	}
	if state == swarm.LocalNodeStateActive {
		return requireManager(ctx, cli)
	}
	// Exclusive to init: no other process is using a swarm now.
	if err := lease.wait(ctx, lockExclusive); err != nil {
		return err
	}
	if state, err = swarmState(ctx, cli); err != nil {
		return err
	}
	if state != swarm.LocalNodeStateActive {
		initCtx, cancel := context.WithTimeout(ctx, engineCallTimeout)
		defer cancel()
		_, err := cli.SwarmInit(initCtx, swarm.InitRequest{
			ListenAddr:    "127.0.0.1:2377",
			AdvertiseAddr: "127.0.0.1",
			Spec:          swarm.Spec{Annotations: swarm.Annotations{Labels: map[string]string{SwarmLabel: "true"}}},
		})
		if err != nil {
			return fmt.Errorf("%w: init a swarm on %s: %w", ErrSwarmUnavailable, cli.DaemonHost(), err)
		}
	}
	if err := lease.wait(ctx, hold); err != nil {
		return err
	}
	return requireManager(ctx, cli)
}

func swarmState(ctx context.Context, cli *client.Client) (swarm.LocalNodeState, error) {
	ctx, cancel := context.WithTimeout(ctx, engineCallTimeout)
	defer cancel()
	info, err := cli.Info(ctx)
	if err != nil {
		return "", fmt.Errorf("%w: docker info: %w", ErrSwarmUnavailable, err)
	}
	return info.Swarm.LocalNodeState, nil
}

func requireManager(ctx context.Context, cli *client.Client) error {
	ctx, cancel := context.WithTimeout(ctx, engineCallTimeout)
	defer cancel()
	if _, err := cli.SwarmInspect(ctx); err != nil {
		return fmt.Errorf("%w: the engine at %s is in a swarm but not a manager: %w", ErrSwarmUnavailable, cli.DaemonHost(), err)
	}
	return nil
}

// swarmKeepPath is the lock a KeepSwarm holds shared for a whole run of
// several processes (make test): while anyone holds it, LeaveSwarmIfLast
// leaves nothing. It is not the swarm lock itself, so that a user who
// needs the swarm alone is not kept waiting by the keeper.
func swarmKeepPath() string { return SwarmLockPath() + ".keep" }

// SwarmKeep is a hold that keeps the swarm up between its users.
type SwarmKeep struct{ f *os.File }

// KeepSwarm makes sure the engine behind cli is a swarm manager, as
// JoinSwarm does, and keeps it one until Release: the test packages that
// use the swarm then find it there and none of them leaves it, so no
// swarm is set up or left while other packages' containers run (an init
// or a leave can break their name resolution for a moment). Errors about
// the engine wrap ErrSwarmUnavailable.
func KeepSwarm(ctx context.Context, cli *client.Client) (*SwarmKeep, error) {
	f, err := openLockFile(swarmKeepPath())
	if err != nil {
		return nil, err
	}
	// Held before the swarm is joined: a user leaving meanwhile sees it.
	if err := flockWait(ctx, f, lockShared); err != nil {
		_ = f.Close()
		return nil, err
	}
	lease, err := JoinSwarm(ctx, cli, false)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	if err := lease.Release(); err != nil {
		_ = f.Close()
		return nil, err
	}
	return &SwarmKeep{f: f}, nil
}

// Release drops the hold and leaves the swarm if nobody else uses or
// keeps it and it is the tests' own; it reports whether it left.
func (k *SwarmKeep) Release(ctx context.Context, cli *client.Client) (bool, error) {
	if err := k.f.Close(); err != nil {
		return false, fmt.Errorf("release swarm keep: %w", err)
	}
	return LeaveSwarmIfLast(ctx, cli)
}

// LeaveSwarmIfLast leaves the swarm when no process holds the swarm lock
// (the caller must have released its own) or keeps the swarm (KeepSwarm),
// and the swarm carries SwarmLabel. It reports whether it left. A swarm
// still in use, or one that is not ours, is no error.
func LeaveSwarmIfLast(ctx context.Context, cli *client.Client) (bool, error) {
	lease, err := OpenSwarmLock()
	if err != nil {
		return false, err
	}
	defer func() { _ = lease.Release() }()
	if err := lease.TryExclusive(); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return false, nil // another process still uses it; the last one leaves
		}
		return false, err
	}
	keep, err := openLockFile(swarmKeepPath())
	if err != nil {
		return false, err
	}
	defer func() { _ = keep.Close() }()
	if err := flockNow(keep, lockExclusive); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return false, nil // kept for a run; its keeper leaves
		}
		return false, err
	}
	sw, err := cli.SwarmInspect(ctx)
	if err != nil {
		// Not a manager, or in no swarm at all: nothing of ours to leave.
		return false, nil
	}
	if sw.Spec.Labels[SwarmLabel] != "true" {
		return false, nil // someone's real swarm
	}
	if err := cli.SwarmLeave(ctx, true); err != nil {
		return false, fmt.Errorf("swarm leave: %w", err)
	}
	return true, nil
}

// CreateOverlay creates an attachable overlay network named
// <prefix><8 random hex digits>, labelled SwarmLabel=true and with the
// given labels, and returns its name and id. The caller removes it with
// RemoveNetwork, after the services and containers on it.
func CreateOverlay(ctx context.Context, cli *client.Client, prefix string, labels map[string]string) (name, id string, err error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("random network name: %w", err)
	}
	name = prefix + hex.EncodeToString(b[:])
	all := map[string]string{SwarmLabel: "true"}
	maps.Copy(all, labels)
	resp, err := cli.NetworkCreate(ctx, name, network.CreateOptions{
		Driver:     "overlay",
		Attachable: true,
		Labels:     all,
	})
	if err != nil {
		return "", "", fmt.Errorf("create overlay network %s: %w", name, err)
	}
	return name, resp.ID, nil
}

// networkRemovePolling is how often RemoveNetwork tries again while the
// swarm detaches the tasks of removed services.
const networkRemovePolling = 250 * time.Millisecond

// RemoveNetwork removes a network, trying again until ctx ends while it is
// still in use (the swarm takes a moment to detach removed tasks). A
// network already gone is no error.
func RemoveNetwork(ctx context.Context, cli *client.Client, id string) error {
	for {
		err := cli.NetworkRemove(ctx, id)
		if err == nil || cerrdefs.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("remove network %s: %w", id, err)
		case <-time.After(networkRemovePolling):
		}
	}
}

// RemoveSwarmServices removes every swarm service labelled
// deployd.service=<service> and waits, until ctx ends, for their tasks to
// be gone or ended (the tasks of a removed job linger, complete, until
// Swarm reaps them) and for the tasks' containers to be gone: a task is
// shut down a moment before the engine removes its container.
func RemoveSwarmServices(ctx context.Context, cli *client.Client, service string) error {
	f := filters.NewArgs(filters.Arg("label", serviceLabel+"="+service))
	list, err := cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: f})
	if err != nil {
		return fmt.Errorf("list swarm services of %s: %w", service, err)
	}
	var errs []error
	for _, s := range list {
		if err := cli.ServiceRemove(ctx, s.ID); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove swarm service %s: %w", s.Spec.Name, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for {
		tasks, err := cli.TaskList(ctx, swarm.TaskListOptions{Filters: f})
		if err == nil && LiveTasks(tasks) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("tasks of %s still there after removing its services (last error %v): %w", service, err, ctx.Err())
		case <-time.After(networkRemovePolling):
		}
	}
	// Task containers carry the swarm's service id label; a container of
	// the same service that no task made is not the swarm's to remove.
	cf := filters.NewArgs(filters.Arg("label", serviceLabel+"="+service), filters.Arg("label", "com.docker.swarm.service.id"))
	for {
		list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: cf})
		if err == nil && len(list) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d task containers of %s still there after removing its services (last error %v): %w", len(list), service, err, ctx.Err())
		case <-time.After(networkRemovePolling):
		}
	}
}

// LiveTasks counts the tasks that may still hold a container.
func LiveTasks(tasks []swarm.Task) int {
	n := 0
	for _, t := range tasks {
		switch t.Status.State {
		case swarm.TaskStateComplete, swarm.TaskStateFailed, swarm.TaskStateRejected, swarm.TaskStateShutdown, swarm.TaskStateOrphaned:
		default:
			n++
		}
	}
	return n
}
