package dockerx

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/go-connections/nat"

	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/workload"
)

func TestContainers_FiltersByServiceLabelAndMapsFields(t *testing.T) {
	f := newFakeEngine(t)
	f.handle("GET /containers/json", fixture(t, "containers_list.json"))
	f.handle("GET /containers/aaa111/json", fixture(t, "inspect_aaa111.json"))
	f.handle("GET /containers/bbb222/json", fixture(t, "inspect_bbb222.json"))
	// ddd444 is listed but gone by the time it is inspected: no route, 404.
	c, _ := f.client(true)

	got, err := c.Containers(context.Background(), "web")
	if err != nil {
		t.Fatalf("Containers: %v", err)
	}

	list := f.requests("GET /containers/json")
	if len(list) != 1 {
		t.Fatalf("list requests = %d, want 1", len(list))
	}
	if all := list[0].Query.Get("all"); all != "1" {
		t.Errorf("all = %q, want 1 (stopped containers are listed too)", all)
	}
	var filters map[string]map[string]bool
	if err := json.Unmarshal([]byte(list[0].Query.Get("filters")), &filters); err != nil {
		t.Fatalf("filters %q: %v", list[0].Query.Get("filters"), err)
	}
	wantLabels := map[string]bool{"deployd.managed=true": true, "deployd.service=web": true}
	if len(filters["label"]) != len(wantLabels) {
		t.Errorf("label filters = %v, want %v", filters["label"], wantLabels)
	}
	for l := range wantLabels {
		if !filters["label"][l] {
			t.Errorf("label filter %q missing from %v", l, filters["label"])
		}
	}
	for _, r := range f.requests("GET /containers/ccc333/json") {
		t.Errorf("one-off container was inspected: %v", r.Path)
	}

	want := []controller.Container{
		{
			ID: "aaa111", Name: "web-blue-1", Service: "web", Color: controller.Blue, Deployment: "d1",
			Image: "demoapp:v1", State: "running", Health: "healthy", Address: "127.0.0.1:49153",
			Restarts: 2, StartedAt: time.Date(2025, 3, 1, 10, 0, 0, 123456789, time.UTC),
		},
		{
			ID: "bbb222", Name: "web-green-1", Service: "web", Color: controller.Green, Deployment: "d2",
			Image: "demoapp:v2", State: "exited", ExitCode: 137,
			StartedAt: time.Date(2025, 3, 1, 11, 0, 0, 0, time.UTC),
		},
	}
	if len(got) != len(want) {
		t.Fatalf("containers = %+v, want %+v", got, want)
	}
	for i := range want {
		if !got[i].StartedAt.Equal(want[i].StartedAt) {
			t.Errorf("[%d] StartedAt = %v, want %v", i, got[i].StartedAt, want[i].StartedAt)
		}
		got[i].StartedAt, want[i].StartedAt = time.Time{}, time.Time{}
		if got[i] != want[i] {
			t.Errorf("[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestContainers_DockerModeAddressIsNameAndPort(t *testing.T) {
	f := newFakeEngine(t)
	f.handle("GET /containers/aaa111/json", fixture(t, "inspect_aaa111.json"))
	c, _ := f.client(false)

	got, err := c.InspectContainer(context.Background(), "aaa111")
	if err != nil {
		t.Fatalf("InspectContainer: %v", err)
	}
	if want := "web-blue-1:8000"; got.Address != want {
		t.Errorf("Address = %q, want %q", got.Address, want)
	}
}

func TestInspectContainer_MissingIsErrNotFound(t *testing.T) {
	f := newFakeEngine(t)
	c, _ := f.client(true)
	_, err := c.InspectContainer(context.Background(), "nope")
	if !errorsIs(err, controller.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

func TestRemoveContainer_MissingIsNoError(t *testing.T) {
	f := newFakeEngine(t)
	c, _ := f.client(true)
	if err := c.RemoveContainer(context.Background(), "gone"); err != nil {
		t.Fatalf("RemoveContainer of a missing container: %v, want nil", err)
	}
	reqs := f.requests("DELETE /containers/gone")
	if len(reqs) != 1 || reqs[0].Query.Get("force") != "1" {
		t.Fatalf("remove requests = %+v, want one with force=1", reqs)
	}
}

func TestRemoveContainer_RemovalByAnotherCallIsWaitedFor(t *testing.T) {
	const inProgress = "removal of container web-blue-1 is already in progress"
	cases := []struct {
		name string
		// status and message of the engine's answer to the remove.
		status int
		msg    string
		// inspectsLeft is how many inspects still find the container.
		inspectsLeft int32
		// inspectFails: the engine answers every inspect with a 500.
		inspectFails bool
		// inspectHangs: after its first 500 the engine answers no inspect
		// at all, so the wait's deadline cuts the last one short.
		inspectHangs bool
		timeout      time.Duration
		wantErr      string
		// wantInspects < 0: as many as the timeout allows.
		wantInspects int
	}{
		{name: "gone after a while", status: http.StatusConflict, msg: inProgress,
			inspectsLeft: 3, timeout: 5 * time.Second, wantInspects: 4},
		{name: "never gone", status: http.StatusConflict, msg: inProgress,
			inspectsLeft: 1 << 30, timeout: 200 * time.Millisecond, wantErr: "still there after waiting for its removal",
			wantInspects: -1},
		{name: "engine stops answering", status: http.StatusConflict, msg: inProgress,
			inspectFails: true, timeout: 200 * time.Millisecond, wantErr: "last inspect: Error response from daemon: engine gone",
			wantInspects: -1},
		{name: "engine hangs after an error", status: http.StatusConflict, msg: inProgress,
			inspectFails: true, inspectHangs: true, timeout: 200 * time.Millisecond,
			wantErr: "last inspect: Error response from daemon: engine gone", wantInspects: 2},
		{name: "another conflict is not waited for", status: http.StatusConflict, msg: "some other conflict",
			timeout: 5 * time.Second, wantErr: "some other conflict", wantInspects: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeEngine(t)
			c, _ := f.client(true)
			f.handle("DELETE /containers/web-blue-1", func(w http.ResponseWriter, _ *http.Request) {
				writeEngineError(w, tc.status, tc.msg)
			})
			left := atomic.Int32{}
			left.Store(tc.inspectsLeft)
			var inspects atomic.Int32
			f.handle("GET /containers/web-blue-1/json", func(w http.ResponseWriter, r *http.Request) {
				if tc.inspectHangs && inspects.Add(1) > 1 {
					<-r.Context().Done()
					return
				}
				if tc.inspectFails {
					writeEngineError(w, http.StatusInternalServerError, "engine gone")
					return
				}
				if left.Add(-1) < 0 {
					writeEngineError(w, http.StatusNotFound, "No such container: web-blue-1")
					return
				}
				writeJSON(w, container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{
					ID: "web-blue-1", State: &container.State{Status: "removing"}}})
			})
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			err := c.RemoveContainer(ctx, "web-blue-1")
			if tc.wantErr == "" && err != nil {
				t.Fatalf("RemoveContainer: %v, want nil once the container is gone", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("RemoveContainer: %v, want an error saying %q", err, tc.wantErr)
			}
			if got := len(f.requests("GET /containers/web-blue-1/json")); tc.wantInspects >= 0 && got != tc.wantInspects {
				t.Fatalf("inspects = %d, want %d", got, tc.wantInspects)
			}
		})
	}
}

func TestStartContainer_SendsLabelsEnvPortsAndWaitsForHostPort(t *testing.T) {
	f := newFakeEngine(t)
	f.handle("POST /containers/create", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusCreated)
		writeJSON(w, container.CreateResponse{ID: "new1"})
	})
	f.handle("POST /containers/new1/start", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	var inspects atomic.Int32
	f.handle("GET /containers/new1/json", func(w http.ResponseWriter, _ *http.Request) {
		ports := nat.PortMap{}
		if inspects.Add(1) > 2 {
			// The engine reports the published port only after a moment.
			ports["8000/tcp"] = []nat.PortBinding{{HostIP: "127.0.0.1", HostPort: "40001"}}
		}
		writeJSON(w, map[string]any{
			"Id": "new1", "Name": "/web-green-1",
			"State":           map[string]any{"Status": "running", "Running": true, "StartedAt": "2025-03-01T12:00:00Z"},
			"Config":          map[string]any{"Image": "demoapp:v2", "Labels": replicaLabels(controller.ContainerSpec{Service: "web", Color: "green", Deployment: "d2", Port: 8000})},
			"NetworkSettings": map[string]any{"Ports": ports},
		})
	})
	c, _ := f.client(true)

	got, err := c.StartContainer(context.Background(), controller.ContainerSpec{
		Name: "web-green-1", Image: "demoapp:v2", Service: "web", Color: controller.Green, Deployment: "d2",
		Port: 8000, Env: []string{"APP_VERSION=v2"}, Network: "webnet", RestartPolicy: "on-failure:3",
	})
	if err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	if want := "127.0.0.1:40001"; got.Address != want {
		t.Errorf("Address = %q, want %q", got.Address, want)
	}
	if got.ID != "new1" || got.Color != controller.Green {
		t.Errorf("container = %+v, want ID new1, color green", got)
	}

	creates := f.requests("POST /containers/create")
	if len(creates) != 1 {
		t.Fatalf("create requests = %d, want 1", len(creates))
	}
	if name := creates[0].Query.Get("name"); name != "web-green-1" {
		t.Errorf("name = %q, want web-green-1", name)
	}
	var body struct {
		container.Config
		HostConfig       container.HostConfig
		NetworkingConfig network.NetworkingConfig
	}
	if err := json.Unmarshal(creates[0].Body, &body); err != nil {
		t.Fatalf("create body: %v", err)
	}
	wantLabels := map[string]string{
		"deployd.managed": "true", "deployd.service": "web", "deployd.color": "green",
		"deployd.deployment": "d2", "deployd.port": "8000",
	}
	for k, v := range wantLabels {
		if body.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, body.Labels[k], v)
		}
	}
	if _, ok := body.Labels[workload.LabelOneOff]; ok {
		t.Errorf("replica carries the one-off label")
	}
	for _, e := range []string{"APP_VERSION=v2", "DEPLOYD_SERVICE=web", "DEPLOYD_COLOR=green", "DEPLOYD_DEPLOYMENT=d2"} {
		if !slices.Contains(body.Env, e) {
			t.Errorf("env %v lacks %q", body.Env, e)
		}
	}
	if _, ok := body.ExposedPorts["8000/tcp"]; !ok {
		t.Errorf("ExposedPorts = %v, want 8000/tcp", body.ExposedPorts)
	}
	b := body.HostConfig.PortBindings["8000/tcp"]
	if len(b) != 1 || b[0].HostIP != "127.0.0.1" || b[0].HostPort != "" {
		t.Errorf("PortBindings = %v, want one ephemeral binding on 127.0.0.1", body.HostConfig.PortBindings)
	}
	if rp := body.HostConfig.RestartPolicy; rp.Name != "on-failure" || rp.MaximumRetryCount != 3 {
		t.Errorf("RestartPolicy = %+v, want on-failure:3", rp)
	}
	if body.HostConfig.NetworkMode != "webnet" {
		t.Errorf("NetworkMode = %q, want webnet", body.HostConfig.NetworkMode)
	}
	ep := body.NetworkingConfig.EndpointsConfig["webnet"]
	if ep == nil || !slices.Contains(ep.Aliases, "web-green-1") {
		t.Errorf("EndpointsConfig = %+v, want webnet with alias web-green-1", body.NetworkingConfig.EndpointsConfig)
	}
}

func TestStartContainer_FailedStartRemovesTheContainer(t *testing.T) {
	f := newFakeEngine(t)
	f.handle("POST /containers/create", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusCreated)
		writeJSON(w, container.CreateResponse{ID: "bad1"})
	})
	f.handle("POST /containers/bad1/start", func(w http.ResponseWriter, _ *http.Request) {
		writeEngineError(w, http.StatusInternalServerError, "driver failed programming external connectivity")
	})
	f.handle("DELETE /containers/bad1", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	c, _ := f.client(true)

	_, err := c.StartContainer(context.Background(), controller.ContainerSpec{
		Name: "web-blue-1", Image: "demoapp:v1", Service: "web", Color: controller.Blue, Port: 8000,
	})
	if err == nil {
		t.Fatal("StartContainer succeeded, want the start error")
	}
	if got := len(f.requests("DELETE /containers/bad1")); got != 1 {
		t.Errorf("remove requests = %d, want 1", got)
	}
}

func TestParseRestartPolicy(t *testing.T) {
	tests := []struct {
		in      string
		want    container.RestartPolicy
		wantErr bool
	}{
		{in: "", want: container.RestartPolicy{Name: "no"}},
		{in: "no", want: container.RestartPolicy{Name: "no"}},
		{in: "always", want: container.RestartPolicy{Name: "always"}},
		{in: "unless-stopped", want: container.RestartPolicy{Name: "unless-stopped"}},
		{in: "on-failure", want: container.RestartPolicy{Name: "on-failure"}},
		{in: "on-failure:5", want: container.RestartPolicy{Name: "on-failure", MaximumRetryCount: 5}},
		{in: "on-failure:0", wantErr: true},
		{in: "on-failure:-1", wantErr: true},
		{in: "on-failure:x", wantErr: true},
		{in: "always:3", wantErr: true},
		{in: "sometimes", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseRestartPolicy(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("policy = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseRestartPolicy(f *testing.F) {
	for _, s := range []string{"", "no", "always", "unless-stopped", "on-failure", "on-failure:3", "on-failure:", ":1", "always:x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseRestartPolicy(s)
		if err != nil {
			return
		}
		// Whatever is accepted must be something the engine accepts too.
		if verr := container.ValidateRestartPolicy(p); verr != nil {
			t.Fatalf("parseRestartPolicy(%q) = %+v, which the engine rejects: %v", s, p, verr)
		}
	})
}
