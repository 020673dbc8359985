package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"

	"github.com/deployd/deployd/internal/lab"
	"github.com/deployd/deployd/pkg/controller"
)

// runDeployd deploys v2 and rolls back, K times, through d (the reload or
// the switch mode's deployd), while sampling the memory and CPU of d's
// processes (the daemon, and switchd in switch mode) over the whole phase
// and timing GET /api/v1/services/{name} during the switches.
func (w *world) runDeployd(ctx context.Context, strategy, load string, dut deploydUnderTest) (*phase, error) {
	d := dut.client()
	fp, err := newFootprint(ctx, dut)
	if err != nil {
		return nil, err
	}
	// Idle: before the load starts. In switch mode switchd carries the
	// load, so its RSS is sampled from the first request on.
	if err := fp.begin(); err != nil {
		return nil, err
	}

	sctx, stopSampling := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var pollOnce sync.Once
	wg.Add(1)
	go func() {
		defer wg.Done()
		sampleRSS(sctx, fp)
	}()
	pctx, stopPolling := context.WithCancel(sctx)
	defer func() {
		stopPolling()
		stopSampling()
		wg.Wait()
	}()

	p, err := w.runPhase(ctx, strategy, load, w.serviceURL(d.svc), 2*w.opts.K, func(ctx context.Context, i int, start time.Time) (switchEvent, error) {
		// The status poller runs from the first switch to the last.
		pollOnce.Do(func() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pollStatus(pctx, d, fp)
			}()
		})
		ev := switchEvent{Label: "deploy", Call: int64(time.Since(start))}
		var id string
		var err error
		if i%2 == 0 {
			id, err = d.deploy(ctx, "v2")
		} else {
			ev.Label = "rollback"
			id, err = d.rollback(ctx)
		}
		if err != nil {
			return ev, err
		}
		dep, err := d.waitSucceeded(ctx, id)
		if err != nil {
			return ev, fmt.Errorf("%w\ndeployd log:\n%s", err, dut.failureLog(ctx))
		}
		fp.Deployments++
		ev.DeploymentID = dep.ID
		ev.From, ev.To = colorName(dep.FromColor), colorName(dep.ToColor)
		ev.StepsMs = map[string]float64{}
		for _, s := range dep.Steps {
			if s.FinishedAt == nil {
				continue
			}
			ev.StepsMs[s.Name] += ms(int64(s.FinishedAt.Sub(s.StartedAt)))
			switch s.Name {
			case controller.StepSwitch:
				ev.Start = int64(s.StartedAt.Sub(start))
				ev.End = int64(s.FinishedAt.Sub(start))
			case controller.StepHealth:
				ev.HealthNs = int64(s.FinishedAt.Sub(s.StartedAt))
			case controller.StepDrain:
				ev.DrainNs = int64(s.FinishedAt.Sub(s.StartedAt))
			}
		}
		if dep.FinishedAt != nil {
			ev.TotalNs = int64(dep.FinishedAt.Sub(dep.CreatedAt))
		}
		if ev.Start == 0 {
			return ev, fmt.Errorf("deployment %s has no finished %s step", dep.ID, controller.StepSwitch)
		}
		if i == 2*w.opts.K-1 {
			stopPolling()
		}
		return ev, nil
	})
	// The load has stopped: stop sampling before reading the CPU, so the
	// samplers' own requests are not counted after the phase.
	stopPolling()
	stopSampling()
	wg.Wait()
	if err != nil {
		return nil, err
	}
	if err := fp.end(); err != nil {
		return nil, err
	}
	if fp.Switchd != nil {
		// After an upgrade the old switchd lives on for its handoff, so
		// end reads its CPU time; the new one's would be missing.
		if pid, err := dut.switchdPID(ctx, 0); err != nil || pid != fp.Switchd.PID {
			return nil, fmt.Errorf("switchd pid %d at the phase's start, %d (%v) at its end: it was restarted during the phase", fp.Switchd.PID, pid, err)
		}
	}
	if tc, ok := dut.(interface {
		appTasks(ctx context.Context) (int, error)
	}); ok {
		if fp.AppTasks, err = tc.appTasks(ctx); err != nil {
			return nil, err
		}
	}
	p.Footprint = fp
	return p, nil
}

// pollStatus times GET /api/v1/services/{name} every sampleEvery, like a
// status page or a script watching a deploy would.
func pollStatus(ctx context.Context, d *apiClient, fp *footprint) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		t0 := time.Now()
		err := d.call(ctx, http.MethodGet, "/api/v1/services/"+d.svc, nil, http.StatusOK, nil)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			fp.StatusErrs++
		} else {
			fp.StatusLatMs = append(fp.StatusLatMs, float64(time.Since(t0).Microseconds())/1000)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// The recreate strategy's container: one, on a fixed host port, replaced
// in place like `docker compose up -d` does.
const rcContainerPort = "8000/tcp"

// startRecreate runs the first recreate container (v1, blue) and points
// the recreate upstream at its fixed port.
func (w *world) startRecreate(ctx context.Context) error {
	port, err := lab.FreePort()
	if err != nil {
		return err
	}
	w.rcPort = port
	if _, err := w.runRecreateContainer(ctx, "v1", colorBlue); err != nil {
		return err
	}
	// The same upstream shape deployd renders, so only the switch differs.
	conf := fmt.Sprintf("upstream %s {\n    server 127.0.0.1:%d max_fails=0;\n    keepalive 16;\n}\n", w.rcSvc, port)
	path := filepath.Join(w.ng.UpstreamDir, w.rcSvc+".conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return fmt.Errorf("write recreate upstream: %w", err)
	}
	if err := w.ng.Reload(ctx); err != nil {
		return err
	}
	// The reload is asynchronous: until the old workers have gone, a new
	// connection may still meet the placeholder upstream's 502.
	return waitAnswers(ctx, w.serviceURL(w.rcSvc), 5)
}

// waitAnswers polls url on fresh connections until it answers 200 n times
// in a row, for at most 10 s.
func waitAnswers(ctx context.Context, url string, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	for ok := 0; ok < n; {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("request %s: %w", url, err)
		}
		if resp, err := hc.Do(req); err == nil && resp.StatusCode == http.StatusOK {
			resp.Body.Close()
			ok++
		} else {
			if err == nil {
				resp.Body.Close()
			}
			ok = 0
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return fmt.Errorf("%s does not answer 200 %d times in a row: %w", url, n, err)
		}
	}
	return nil
}

// runRecreateContainer creates and starts the recreate container of tag
// with the given color and returns once it answers /health on its port.
func (w *world) runRecreateContainer(ctx context.Context, tag string, color uint8) (time.Time, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	created, err := w.cli.ContainerCreate(cctx,
		&container.Config{
			Image:        repository + ":" + tag,
			Env:          []string{"DEPLOYD_COLOR=" + colorNames[color], "DEPLOYD_SERVICE=" + w.rcSvc},
			Labels:       map[string]string{"deployd.service": w.rcSvc, "deployd.bench": "recreate"},
			ExposedPorts: nat.PortSet{rcContainerPort: struct{}{}},
		},
		&container.HostConfig{PortBindings: nat.PortMap{rcContainerPort: {{HostIP: "127.0.0.1", HostPort: strconv.Itoa(w.rcPort)}}}},
		nil, nil, w.rcSvc)
	if err != nil {
		return time.Time{}, fmt.Errorf("create recreate container: %w", err)
	}
	w.rcID, w.rcColor = created.ID, color
	if err := w.cli.ContainerStart(cctx, created.ID, container.StartOptions{}); err != nil {
		return time.Time{}, fmt.Errorf("start recreate container: %w", err)
	}
	started := time.Now()
	url := "http://127.0.0.1:" + strconv.Itoa(w.rcPort) + "/health"
	hc := &http.Client{Timeout: time.Second}
	for {
		req, err := http.NewRequestWithContext(cctx, http.MethodGet, url, nil)
		if err != nil {
			return started, fmt.Errorf("health request: %w", err)
		}
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Now(), nil
			}
		}
		if err := sleepCtx(cctx, 20*time.Millisecond); err != nil {
			return started, fmt.Errorf("recreate container never answered %s: %w", url, err)
		}
	}
}

// runRecreate stops and removes the running container and starts the
// other version on the same port, 2K times.
func (w *world) runRecreate(ctx context.Context, load string) (*phase, error) {
	return w.runPhase(ctx, strategyRecreate, load, w.serviceURL(w.rcSvc), 2*w.opts.K, func(ctx context.Context, i int, start time.Time) (switchEvent, error) {
		from := w.rcColor
		to, tag := colorGreen, "v2"
		if from == colorGreen {
			to, tag = colorBlue, "v1"
		}
		ev := switchEvent{Label: "recreate", From: colorNames[from], To: colorNames[to]}
		ev.Call = int64(time.Since(start))
		ev.Start = ev.Call
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		// compose's default stop grace is 10 s; the demo app exits on
		// SIGTERM at once.
		timeout := 10
		if err := w.cli.ContainerStop(cctx, w.rcID, container.StopOptions{Timeout: &timeout}); err != nil {
			return ev, fmt.Errorf("stop recreate container: %w", err)
		}
		if err := w.cli.ContainerRemove(cctx, w.rcID, container.RemoveOptions{Force: true}); err != nil {
			return ev, fmt.Errorf("remove recreate container: %w", err)
		}
		ready, err := w.runRecreateContainer(ctx, tag, to)
		if err != nil {
			return ev, err
		}
		ev.End = int64(ready.Sub(start))
		ev.Ready = ev.End
		return ev, nil
	})
}

// runReload sends `nginx -s reload` 2K times with nothing changed, under
// the load on deployd's reload-mode service: nginx talks to its containers
// directly.
func (w *world) runReload(ctx context.Context, load string) (*phase, error) {
	return w.runPhase(ctx, strategyReload, load, w.serviceURL(w.svc), 2*w.opts.K, func(ctx context.Context, i int, start time.Time) (switchEvent, error) {
		ev := switchEvent{Label: "reload", Call: int64(time.Since(start))}
		ev.Start = ev.Call
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := w.ng.Reload(rctx); err != nil {
			return ev, err
		}
		ev.End = int64(time.Since(start))
		return ev, nil
	})
}

// removeServiceContainers force-removes every container labelled
// deployd.service=<service>, running or not.
func removeServiceContainers(ctx context.Context, cli *client.Client, service string) error {
	list, err := cli.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", "deployd.service="+service)),
	})
	if err != nil {
		return fmt.Errorf("list containers of service %s: %w", service, err)
	}
	var errs []string
	for _, c := range list {
		err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err) {
			errs = append(errs, fmt.Sprintf("%s: %v", c.ID[:12], err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("remove containers of %s: %s", service, strings.Join(errs, "; "))
	}
	return nil
}
