package dockerx

import (
	"context"
	"errors"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"
	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/internal/engine"
	"github.com/deployd/deployd/pkg/controller"
	"github.com/deployd/deployd/pkg/workload"
)

// ensureVolumes creates the named volumes of spec's mounts that do not
// exist yet, labelled as deployd's with the service that first needed
// them. Docker would create a missing one at the container's create, but
// without labels; an existing volume is used as it is.
func (c *Client) ensureVolumes(ctx context.Context, spec controller.OneOffSpec) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	for _, m := range spec.Mounts {
		_, err := c.api.VolumeInspect(ctx, m.Volume)
		if err == nil {
			continue
		}
		if !cerrdefs.IsNotFound(err) {
			return engine.WrapErr("inspect volume "+m.Volume, err)
		}
		_, err = c.api.VolumeCreate(ctx, volume.CreateOptions{
			Name:   m.Volume,
			Labels: map[string]string{workload.LabelManaged: "true", workload.LabelService: spec.Service},
		})
		// A concurrent create of the same name is no failure: the engine
		// answers with the volume that now exists.
		if err != nil {
			return engine.WrapErr("create volume "+m.Volume, err)
		}
		c.log.WithFields(logrus.Fields{"service": spec.Service, "volume": m.Volume}).Info("volume created")
	}
	return nil
}

// volumeMounts turns spec's mounts into the engine's.
func volumeMounts(spec controller.OneOffSpec) []mount.Mount {
	var ms []mount.Mount
	for _, m := range spec.Mounts {
		ms = append(ms, mount.Mount{Type: mount.TypeVolume, Source: m.Volume, Target: m.Target})
	}
	return ms
}

// errNotRegular says a path FileSize was asked about is a directory,
// link or device.
var errNotRegular = errors.New("not a regular file")

// FileSize creates, and never starts, a container of spec's image with
// spec's mounts, and stats path in it through the engine's archive API
// (what `docker cp` uses): the engine reads the container's filesystem
// and volumes itself, so the image needs no shell or stat. The container
// is removed before FileSize returns. A missing path wraps
// controller.ErrNotFound.
func (c *Client) FileSize(ctx context.Context, spec controller.OneOffSpec, path string) (int64, error) {
	log := c.log.WithFields(logrus.Fields{"service": spec.Service, "deployment": spec.Deployment, "container": spec.Name})
	if err := c.ensureVolumes(ctx, spec); err != nil {
		return 0, fmt.Errorf("stat %s: %w", path, err)
	}
	cfg := &container.Config{
		Image: spec.Image,
		// Never run; set so that create accepts an image without an
		// entrypoint or command of its own (FROM scratch ones).
		Entrypoint: []string{"/deployd-never-started"},
		Labels:     oneOffLabels(spec),
	}
	hostCfg := &container.HostConfig{Mounts: volumeMounts(spec)}
	id, err := c.create(ctx, cfg, hostCfg, nil, spec.Name)
	if err != nil {
		return 0, fmt.Errorf("stat %s: %w", path, err)
	}
	defer c.removeQuietly(ctx, id, log)

	sctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	st, err := c.api.ContainerStatPath(sctx, id, path)
	if err != nil {
		return 0, engine.WrapErr("stat "+path, err)
	}
	if !st.Mode.IsRegular() {
		return 0, fmt.Errorf("stat %s: %w (mode %s)", path, errNotRegular, st.Mode)
	}
	return st.Size, nil
}
