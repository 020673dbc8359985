package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
)

// saveTimeout bounds each write of a deployment record. Records are written
// with a context detached from the deploy's, so that a deploy cancelled by
// shutdown still leaves its final state on disk.
const saveTimeout = 10 * time.Second

// deployRun is one deployment being executed by its goroutine; only that
// goroutine touches it.
type deployRun struct {
	c     *Controller
	lease *lease
	spec  ServiceSpec
	// rt runs the service's containers (see Controller.runtime).
	rt     Runtime
	d      Deployment
	log    logrus.FieldLogger
	events *eventLog
	// switched is set once traffic has moved: from then on a failure must
	// not remove the new color's containers.
	switched bool
	// bakedOut is set when the bake failed and traffic went back to the
	// previous color: the deployment ends rolled back.
	bakedOut bool
}

// execute runs a recorded deployment, holding l, to its end and saves the
// outcome.
func (c *Controller) execute(l *lease, spec ServiceSpec, d Deployment) {
	ctx := l.ctx
	r := &deployRun{c: c, lease: l, spec: spec, rt: c.runtime(spec.Name), d: d, events: c.events.open(d.ID),
		log: c.log.WithFields(logrus.Fields{
			"service": spec.Name, "deployment": d.ID, "kind": string(d.Kind), "color": string(d.ToColor),
		})}
	r.d.Status = StatusRunning
	r.save()
	r.emit(Event{Type: EventStatus, Status: StatusRunning.String()})
	r.log.WithField("image", d.Image).Info("deployment started")
	if d.Kind == KindRollback {
		c.notifyf(NotifyDeployStarted, r.d, d.Trigger.Actor, "rollback of %s to %s (%s)%s started",
			d.Service, d.ToColor, d.Image, schemaNote(d))
	} else {
		c.notifyf(NotifyDeployStarted, r.d, d.Trigger.Actor, "deploy of %s to %s started", d.Image, d.ToColor)
	}

	var err error
	switch d.Kind {
	case KindRollback:
		err = r.rollback(ctx)
	default:
		err = r.deploy(ctx)
	}
	r.finish(ctx, err)
}

// finish sets the final status and, for a failure before the switch,
// removes what the deployment created.
func (r *deployRun) finish(ctx context.Context, err error) {
	now := r.c.now().UTC()
	switch {
	case r.bakedOut:
		r.d.Status = StatusRolledBack
		r.d.Error = err.Error()
	case err == nil:
		r.d.Status = StatusSucceeded
	case errors.Is(context.Cause(ctx), errCancelled) && !r.switched:
		r.d.Status = StatusCancelled
		r.d.Error = "cancelled by request during step " + r.lastStep()
	case ctx.Err() != nil && !r.switched:
		r.d.Status = StatusInterrupted
		r.d.Error = "interrupted by shutdown: " + err.Error()
	default:
		r.d.Status = StatusFailed
		r.d.Error = err.Error()
	}
	if err != nil && !r.switched && r.d.Kind == KindDeploy {
		r.removeOwnContainers()
	}
	r.d.FinishedAt = &now
	// From the final record on, a client may see the deployment as ended
	// and ask for the next one: that request waits for the release rather
	// than being refused as busy.
	r.c.enterFinish(r.lease)
	r.save()
	final := Event{Time: now, Type: EventStatus, Status: r.d.Status.String(), Message: r.d.Error}
	r.events.append(final, true)
	r.c.publishDeployment(r.d, final)
	r.c.events.retire(r.d.ID)
	r.c.observer.DeploymentFinished(r.d)
	r.notifyEnd()
	if r.switched || r.bakedOut {
		// Traffic moved to other containers: the watchdog's count so far
		// was about the ones it left.
		r.c.watch.reset(r.spec.Name)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
	r.c.publishState(sctx, r.spec.Name)
	cancel()
	entry := r.log.WithField("status", r.d.Status.String())
	if err != nil {
		entry.WithError(err).Warn("deployment ended")
		return
	}
	entry.Info("deployment ended")
}

// notifyEnd tells people how the deployment ended.
func (r *deployRun) notifyEnd() {
	d, actor := r.d, r.d.Trigger.Actor
	switch {
	case d.Status == StatusRolledBack:
		r.c.notifyf(NotifyRolledBack, d, "bake", "deploy of %s rolled back by bake: %s", d.Image, d.Error)
	case d.Status == StatusSucceeded && d.Kind == KindRollback:
		r.c.notifyf(NotifyRolledBack, d, actor, "%s rolled back to %s (%s) by %s%s",
			d.Service, d.ToColor, d.Image, orUnknown(actor), schemaNote(d))
	case d.Status == StatusSucceeded:
		r.c.notifyf(NotifyDeploySucceeded, d, actor, "%s deployed to %s", d.Image, d.ToColor)
	case d.Status == StatusInterrupted:
		r.c.notifyf(NotifyDeployInterrupted, d, actor, "%s of %s interrupted: %s", d.Kind, d.Image, d.Error)
	default:
		r.c.notifyf(NotifyDeployFailed, d, actor, "%s of %s %s: %s", d.Kind, d.Image, d.Status, d.Error)
	}
}

func orUnknown(actor string) string {
	if actor == "" {
		return "unknown"
	}
	return actor
}

// removeOwnContainers removes the containers this deployment created. It
// runs on a detached context: it is the cleanup for a cancelled deploy too.
func (r *deployRun) removeOwnContainers() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.lease.ctx), time.Minute)
	defer cancel()
	cs, err := r.rt.Containers(ctx, r.spec.Name)
	if err != nil {
		r.log.WithError(err).Error("list containers to clean up failed; leftovers are removed by the next deploy")
		return
	}
	for _, ct := range cs {
		if ct.Deployment != r.d.ID {
			continue
		}
		if err := r.rt.RemoveContainer(ctx, ct.ID); err != nil {
			r.log.WithError(err).WithField("container", ct.Name).Error("remove container of failed deployment")
		}
	}
}

// step records a step's start, runs fn and records its end. fn returns a
// message for the record; errSkipped marks the step skipped.
func (r *deployRun) step(ctx context.Context, name string, fn func(ctx context.Context, s *Step) (string, error)) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	r.d.Steps = append(r.d.Steps, Step{Name: name, Status: StepRunning, StartedAt: r.c.now().UTC()})
	i := len(r.d.Steps) - 1
	r.save()
	r.emit(Event{Type: EventStep, Step: name, Status: StepRunning.String()})
	log := r.log.WithField("step", name)
	log.Debug("step started")

	s := r.d.Steps[i]
	msg, err := fn(ctx, &s)
	now := r.c.now().UTC()
	s.FinishedAt = &now
	s.Message = msg
	switch {
	case errors.Is(err, errSkipped):
		s.Status, err = StepSkipped, nil
	case err != nil:
		s.Status = StepFailed
		if s.Message == "" {
			s.Message = err.Error()
		}
		err = fmt.Errorf("%s: %w", name, err)
	default:
		s.Status = StepSucceeded
	}
	r.d.Steps[i] = s
	r.save()
	r.emit(Event{Type: EventStep, Step: name, Status: s.Status.String(), Message: s.Message})
	log.WithField("took", now.Sub(s.StartedAt).Round(time.Millisecond).String()).
		WithField("status", s.Status.String()).Info(msg)
	return err
}

var errSkipped = errors.New("skipped")

// emit adds an event to the deployment's progress stream.
func (r *deployRun) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = r.c.now().UTC()
	}
	r.events.append(e, false)
	r.c.publishDeployment(r.d, e)
}

// lastStep names the step the deployment is in or ended at.
func (r *deployRun) lastStep() string {
	if n := len(r.d.Steps); n > 0 {
		return r.d.Steps[n-1].Name
	}
	return "queued"
}

// progress passes a port's progress lines into the stream.
func (r *deployRun) progress(line string) { r.logLine("%s", line) }

// logLine adds a line of the running step's output to the progress stream.
func (r *deployRun) logLine(format string, args ...any) {
	r.emit(Event{Type: EventLog, Step: r.lastStep(), Message: fmt.Sprintf(format, args...)})
}

// save writes the deployment record. A failed write is logged, not fatal:
// the deploy itself must still reach a safe state.
func (r *deployRun) save() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.lease.ctx), saveTimeout)
	defer cancel()
	if err := r.c.store.PutDeployment(ctx, r.d); err != nil {
		r.log.WithError(err).Error("save deployment record")
	}
}
