package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/sirupsen/logrus"
)

// Retain runs one retention pass over the audit trail and every configured
// service, and returns how many audit entries, containers and images it
// removed. The audit trail loses its entries beyond Retention's
// AuditMaxAge and AuditMaxEntries. Per service, holding its lock
// as Reconcile does (so the image a deploy has just pulled is never taken
// from under it), it removes
//   - stopped containers of a color that is neither active nor standby;
//   - images of the service's repository beyond the newest
//     Options.Retention.Images, never the active or standby image and never
//     one a container still uses (the runtime refuses those with
//     ErrConflict, which is skipped).
//
// Retention.Images <= 0 keeps every image. Nothing is removed for a
// service without a recorded active color: the store cannot say then what
// is still wanted.
func (c *Controller) Retain(ctx context.Context) (int, error) {
	total, err := c.retainAudit(ctx)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for _, name := range c.names {
		n, err := c.retainService(ctx, c.services[name])
		total += n
		if err != nil {
			errs = append(errs, fmt.Errorf("retain %s: %w", name, err))
		}
		if ctx.Err() != nil {
			break
		}
	}
	return total, errors.Join(errs...)
}

func (c *Controller) retainService(ctx context.Context, spec ServiceSpec) (int, error) {
	release, ok := c.hold(spec.Name)
	if !ok {
		return 0, nil
	}
	defer release()
	log := c.log.WithField("service", spec.Name)

	st, err := c.state(ctx, spec.Name)
	if err != nil {
		return 0, err
	}
	if !st.ActiveColor.Valid() {
		return 0, nil
	}
	all, err := c.runtime(spec.Name).Containers(ctx, spec.Name)
	if err != nil {
		return 0, unavailable("list containers of "+spec.Name, err)
	}
	removed := 0
	var errs []error
	keep := map[string]bool{}
	for _, color := range []Color{st.ActiveColor, st.StandbyColor} {
		if color.Valid() {
			for _, ct := range members(all, spec.Name, color, st.deploymentOf(color)) {
				keep[ct.ID] = true
			}
		}
	}
	for _, ct := range all {
		if ct.Running() || keep[ct.ID] {
			continue
		}
		if err := c.runtime(spec.Name).RemoveContainer(ctx, ct.ID); err != nil {
			errs = append(errs, fmt.Errorf("remove stopped container %s: %w", ct.Name, err))
			continue
		}
		removed++
		log.WithFields(logrus.Fields{"container": ct.Name, "color": string(ct.Color), "deployment": ct.Deployment}).
			Info("retention: removed stopped container")
	}
	if c.retain.Images > 0 {
		n, err := c.retainImages(ctx, spec, st, all, log)
		removed += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}

// retainImages removes the service's images beyond the newest
// Retention.Images, counting neither the protected ones (active, standby,
// used by a container) nor those the runtime refuses as in use.
func (c *Controller) retainImages(ctx context.Context, spec ServiceSpec, st ServiceState, all []Container, log logrus.FieldLogger) (int, error) {
	imgs, err := c.runtime(spec.Name).Images(ctx, spec.Image)
	if err != nil {
		return 0, unavailable("list images of "+spec.Image, err)
	}
	protected := []string{st.ActiveImage, st.StandbyImage}
	for _, ct := range all {
		protected = append(protected, ct.Image)
	}
	kept, removed := 0, 0
	var errs []error
	for _, img := range imgs {
		if slices.ContainsFunc(protected, func(p string) bool {
			return p != "" && (p == img.ID || slices.Contains(img.Tags, p))
		}) {
			continue
		}
		if kept < c.retain.Images {
			kept++
			continue
		}
		ilog := log.WithFields(logrus.Fields{"image": img.ID, "tags": img.Tags})
		err := c.runtime(spec.Name).RemoveImage(ctx, img.ID)
		switch {
		case errors.Is(err, ErrConflict):
			ilog.WithError(err).Debug("retention: image in use, kept")
		case err != nil:
			errs = append(errs, fmt.Errorf("remove image %s: %w", img.ID, err))
		default:
			removed++
			ilog.Info("retention: removed old image")
		}
	}
	return removed, errors.Join(errs...)
}
