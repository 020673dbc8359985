package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/sirupsen/logrus"
)

// RepairActiveRestarted is the repair kind of an active color brought back
// after all its containers stopped or vanished.
const RepairActiveRestarted = "active_restarted"

// restartActive brings back the active color of st, none of whose
// containers cs runs and which no automatic rollback can replace (why
// says what stands in the way, for the repair's message), exactly as it
// was recorded: stopped replicas are started again, and replicas that are
// gone, or cannot be started, are created again from the active image
// with the service's current spec. No other version is chosen: which
// version serves is a person's call, or an automatic rollback's, never a
// repair's. It returns how many replicas run again; the repair is logged,
// notified, counted and audited. The caller holds the service and
// rewrites the upstream afterwards, since replicas come back on new
// addresses.
func (c *Controller) restartActive(ctx context.Context, spec ServiceSpec, st ServiceState, cs []Container,
	why string, log logrus.FieldLogger) (int, error) {
	log = log.WithField("color", string(st.ActiveColor))
	// By number, not by name: replicas named before they were named by
	// deployment are still the active color's.
	byNum := make(map[int]Container, len(cs))
	for _, ct := range cs {
		if n, ok := replicaNumber(ct.Name); ok {
			byNum[n] = ct
		}
	}
	var errs []error
	restarted := 0
	var missing []int
	for n := 1; n <= spec.Replicas; n++ {
		ct, ok := byNum[n]
		if !ok {
			missing = append(missing, n)
			continue
		}
		if _, err := c.runtime(spec.Name).StartExisting(ctx, ct.ID); err != nil {
			// A container the engine will not start again (dead, its
			// config broken) is replaced rather than left in the way.
			log.WithError(err).WithField("container", ct.Name).Warn("reconcile: start stopped replica failed; creating it again")
			if err := c.runtime(spec.Name).RemoveContainer(ctx, ct.ID); err != nil {
				errs = append(errs, fmt.Errorf("remove unstartable replica %s: %w", ct.Name, err))
				continue
			}
			missing = append(missing, n)
			continue
		}
		restarted++
	}
	created := 0
	if len(missing) > 0 {
		n, err := c.recreateReplicas(ctx, spec, st, missing)
		created = n
		if err != nil {
			errs = append(errs, err)
		}
	}
	up := restarted + created
	err := errors.Join(errs...)
	entry := AuditEntry{Actor: SourceReconciler, Action: "repair", Target: spec.Name, Result: "ok",
		DeploymentID: st.ActiveDeployment}
	if up == 0 {
		entry.Result = ErrorCode(err)
	} else {
		var parts []string
		if restarted > 0 {
			parts = append(parts, fmt.Sprintf("started %d stopped", restarted))
		}
		if created > 0 {
			parts = append(parts, fmt.Sprintf("created %d missing", created))
		}
		c.repaired(st, RepairActiveRestarted, fmt.Sprintf(
			"active color %s of %s had no running containers and no automatic rollback was possible (%s): %s replica(s) from %s",
			st.ActiveColor, spec.Name, why, strings.Join(parts, " and "), st.ActiveImage), log)
	}
	if aerr := c.RecordAudit(ctx, entry); aerr != nil {
		log.WithError(aerr).Error("record repair in the audit trail")
	}
	if err != nil {
		return up, fmt.Errorf("restart active color %s of %s: %w", st.ActiveColor, spec.Name, err)
	}
	return up, nil
}

// recreateReplicas creates the given replica numbers of the active color
// from its recorded image, pulling it first if the pull policy says so.
func (c *Controller) recreateReplicas(ctx context.Context, spec ServiceSpec, st ServiceState, nums []int) (int, error) {
	if err := c.runtime(spec.Name).EnsureImage(ctx, st.ActiveImage, spec.Pull, func(string) {}); err != nil {
		return 0, err
	}
	env, err := specEnv(spec)
	if err != nil {
		return 0, err
	}
	cs, err := c.startReplicas(ctx, spec, st.ActiveColor, st.ActiveImage, st.ActiveDeployment, env, nums)
	if err != nil {
		return 0, err
	}
	return len(cs), nil
}
