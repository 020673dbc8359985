package dockerx

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/workload"
)

func TestOneOffs_ListsOnlyTheServicesOneOffContainers(t *testing.T) {
	f := newFakeEngine(t)
	f.handle("GET /containers/json", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, []map[string]any{{
			"Id": "ccc333", "Names": []string{"/web-pre-d3"}, "Image": "demoapp:v3", "State": "exited",
			"Labels": map[string]string{workload.LabelManaged: "true", workload.LabelService: "web", workload.LabelDeployment: "d3", workload.LabelOneOff: "true"},
		}})
	})
	c, _ := f.client(true)

	got, err := c.OneOffs(context.Background(), "web")
	if err != nil {
		t.Fatalf("OneOffs: %v", err)
	}
	want := []controller.Container{{ID: "ccc333", Name: "web-pre-d3", Service: "web", Deployment: "d3", Image: "demoapp:v3", State: "exited"}}
	if !slices.Equal(got, want) {
		t.Errorf("OneOffs = %+v, want %+v", got, want)
	}
	reqs := f.requests("GET /containers/json")
	if len(reqs) != 1 {
		t.Fatalf("list requests = %d, want 1", len(reqs))
	}
	var filters map[string]map[string]bool
	if err := json.Unmarshal([]byte(reqs[0].Query.Get("filters")), &filters); err != nil {
		t.Fatalf("filters: %v", err)
	}
	for _, l := range []string{"deployd.managed=true", "deployd.service=web", "deployd.oneoff=true"} {
		if !filters["label"][l] {
			t.Errorf("label filter %q missing from %v", l, filters["label"])
		}
	}
	if all := reqs[0].Query.Get("all"); all != "1" {
		t.Errorf("all = %q, want 1 (exited one-offs are swept too)", all)
	}
}

func TestImages_NewestFirstWithOnlyTheRepositorysTags(t *testing.T) {
	f := newFakeEngine(t)
	f.handle("GET /images/json", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, []map[string]any{
			{"Id": "sha256:old", "Created": 100, "RepoTags": []string{"demoapp:v1"}},
			{"Id": "sha256:new", "Created": 300, "RepoTags": []string{"docker.io/library/demoapp:v3", "other:x"}},
			{"Id": "sha256:mid", "Created": 200, "RepoTags": []string{"demoapp:v2", "demoapp:latest"}},
			// The engine's glob filter can return another repository.
			{"Id": "sha256:foreign", "Created": 400, "RepoTags": []string{"demoapp-tools:v1"}},
		})
	})
	c, _ := f.client(true)

	got, err := c.Images(context.Background(), "demoapp")
	if err != nil {
		t.Fatalf("Images: %v", err)
	}
	want := []controller.Image{
		{ID: "sha256:new", Tags: []string{"demoapp:v3"}, Created: time.Unix(300, 0).UTC()},
		{ID: "sha256:mid", Tags: []string{"demoapp:v2", "demoapp:latest"}, Created: time.Unix(200, 0).UTC()},
		{ID: "sha256:old", Tags: []string{"demoapp:v1"}, Created: time.Unix(100, 0).UTC()},
	}
	if len(got) != len(want) {
		t.Fatalf("Images = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].ID != want[i].ID || !slices.Equal(got[i].Tags, want[i].Tags) || !got[i].Created.Equal(want[i].Created) {
			t.Errorf("[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	var filters map[string]map[string]bool
	if err := json.Unmarshal([]byte(f.requests("GET /images/json")[0].Query.Get("filters")), &filters); err != nil {
		t.Fatalf("filters: %v", err)
	}
	if !filters["reference"]["demoapp"] {
		t.Errorf("reference filter = %v, want demoapp", filters["reference"])
	}
}

func TestRemoveImage_MapsEngineAnswers(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		wantErr error
		wantNil bool
	}{
		{name: "removed", status: http.StatusOK, wantNil: true},
		{name: "missing is no error", status: http.StatusNotFound, wantNil: true},
		{name: "in use is a conflict", status: http.StatusConflict, wantErr: controller.ErrConflict},
		{name: "engine failure is an error", status: http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeEngine(t)
			f.handle("DELETE /images/sha256:abc", func(w http.ResponseWriter, _ *http.Request) {
				if tt.status == http.StatusOK {
					writeJSON(w, []map[string]string{{"Deleted": "sha256:abc"}})
					return
				}
				writeEngineError(w, tt.status, "image is being used by stopped container 123")
			})
			c, _ := f.client(true)

			err := c.RemoveImage(context.Background(), "sha256:abc")
			switch {
			case tt.wantNil:
				if err != nil {
					t.Fatalf("RemoveImage = %v, want nil", err)
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("RemoveImage = %v, want %v", err, tt.wantErr)
				}
			default:
				if err == nil || errors.Is(err, controller.ErrConflict) {
					t.Fatalf("RemoveImage = %v, want a plain error", err)
				}
			}
			reqs := f.requests("DELETE /images/sha256:abc")
			if len(reqs) != 1 {
				t.Fatalf("delete requests = %d, want 1", len(reqs))
			}
			if got := reqs[0].Query.Get("force"); got == "1" {
				t.Errorf("force = %q: an image in use must never be forced out", got)
			}
		})
	}
}

func TestRuntime_ImageInUseIsListedAndNotRemoved(t *testing.T) {
	c, image, svc := realClient(t)
	ctx := context.Background()
	if _, err := c.StartContainer(ctx, replicaSpec(svc, image, controller.Blue, 1)); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}

	imgs, err := c.Images(ctx, "deployd-dockerx-demo")
	if err != nil {
		t.Fatalf("Images: %v", err)
	}
	var id string
	for _, img := range imgs {
		if slices.Contains(img.Tags, image) {
			id = img.ID
		}
	}
	if id == "" {
		t.Fatalf("Images = %+v, want one tagged %s", imgs, image)
	}
	if err := c.RemoveImage(ctx, id); !errors.Is(err, controller.ErrConflict) {
		t.Fatalf("RemoveImage of an image a container runs = %v, want ErrConflict", err)
	}
	if err := c.RemoveImage(ctx, "sha256:"+strings.Repeat("0", 64)); err != nil {
		t.Fatalf("RemoveImage of a missing image = %v, want nil", err)
	}
}
