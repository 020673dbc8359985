package dockerx

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"

	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/workload"
)

// removeServiceVolumes removes the volumes labelled with svc, which
// ensureVolumes creates for it.
func removeServiceVolumes(t *testing.T, c *Client, svc string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := c.api.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", workload.LabelService+"="+svc))})
	if err != nil {
		t.Errorf("list volumes of %s: %v", svc, err)
		return
	}
	for _, v := range list.Volumes {
		if err := c.api.VolumeRemove(ctx, v.Name, true); err != nil {
			t.Errorf("remove volume %s: %v", v.Name, err)
		}
	}
}

// A one-off writes into a named volume that did not exist; a second
// container of the same image, never started, sees the file through the
// archive API. The demo image is FROM scratch: no shell is involved.
func TestRunOneOff_VolumeMountOutlivesTheContainer(t *testing.T) {
	c, image, svc := realClient(t)
	t.Cleanup(func() { removeServiceVolumes(t, c, svc) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vol := svc + "-backups"
	mounts := []controller.VolumeMount{{Volume: vol, Target: "/backups"}}

	res, err := c.RunOneOff(ctx, controller.OneOffSpec{
		Name: svc + "-backup", Image: image, Service: svc, Deployment: "dep-1",
		Command: []string{"backup-fake"}, Mounts: mounts,
		Env: []string{"DEPLOYD_BACKUP_FILE=/backups/" + svc + "-dep-1.dump", "BACKUP_FAKE_BYTES=12345"},
	})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("RunOneOff: exit %d, err %v; output:\n%s", res.ExitCode, err, res.Output)
	}

	v, err := c.api.VolumeInspect(ctx, vol)
	if err != nil {
		t.Fatalf("volume %s after the one-off: %v", vol, err)
	}
	if v.Labels[workload.LabelManaged] != "true" || v.Labels[workload.LabelService] != svc {
		t.Errorf("volume labels = %v, want %s=true and %s=%s", v.Labels, workload.LabelManaged, workload.LabelService, svc)
	}

	check := controller.OneOffSpec{Name: svc + "-backupcheck", Image: image, Service: svc, Deployment: "dep-1", Mounts: mounts}
	size, err := c.FileSize(ctx, check, "/backups/"+svc+"-dep-1.dump")
	if err != nil || size != 12345 {
		t.Fatalf("FileSize = %d, %v; want 12345", size, err)
	}
	if _, err := c.FileSize(ctx, check, "/backups/missing.dump"); !errors.Is(err, controller.ErrNotFound) {
		t.Errorf("FileSize of a missing file: err = %v, want ErrNotFound", err)
	}
	if _, err := c.FileSize(ctx, check, "/backups"); !errors.Is(err, errNotRegular) {
		t.Errorf("FileSize of a directory: err = %v, want errNotRegular", err)
	}
	left, err := c.OneOffs(ctx, svc)
	if err != nil || len(left) != 0 {
		t.Errorf("one-offs left = %+v, %v; want none", left, err)
	}
}
