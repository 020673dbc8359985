package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/sirupsen/logrus"
)

// jobRunner is what the scheduled jobs call; *controller.Controller fits.
type jobRunner interface {
	// Watch runs one watchdog round over every service.
	Watch(ctx context.Context) error
	// Reconcile runs one reconciler pass and says how many repairs it made.
	Reconcile(ctx context.Context) (int, error)
	// Retain runs one retention pass and says how much it removed.
	Retain(ctx context.Context) (int, error)
	// FollowExits reacts to container exits until ctx ends.
	FollowExits(ctx context.Context)
	// FollowContainers keeps the services' container view until ctx ends.
	FollowContainers(ctx context.Context)
}

// jobIntervals are the periods of the scheduled jobs.
type jobIntervals struct {
	Watch, Reconcile, Retain time.Duration
}

// jobsStopTimeout bounds how long shutdown waits for a run that ignores its
// cancelled context; runs normally end as soon as it is cancelled.
const jobsStopTimeout = 10 * time.Second

// Jobs runs the watchdog, the reconciler and retention on their intervals,
// and follows container exits and changes between them. Each scheduled job runs as a
// singleton: a run still going when the next is due makes that next one be
// skipped, never run alongside. Close stops them all.
type Jobs struct {
	sched gocron.Scheduler
	// cancel ends the context of every run, so Close need not wait for a
	// long pass to finish on its own.
	cancel context.CancelFunc
	log    logrus.FieldLogger
	// followed is closed when the exit and container followers have
	// returned.
	followed chan struct{}
}

// StartJobs schedules and starts the jobs; the first runs come one interval
// after the start (the controller's Start has just done the work a first
// run would). ran, when not nil, is told how long each run took (by job
// name: watchdog, reconcile, retention); it must not block.
func StartJobs(r jobRunner, iv jobIntervals, ran func(job string, took time.Duration), log logrus.FieldLogger) (*Jobs, error) {
	sched, err := gocron.NewScheduler(
		gocron.WithLogger(gocronLogger{log: log.WithField("component", "scheduler")}),
		gocron.WithStopTimeout(jobsStopTimeout),
	)
	if err != nil {
		return nil, fmt.Errorf("create scheduler: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	j := &Jobs{sched: sched, cancel: cancel, log: log, followed: make(chan struct{})}

	jobs := []struct {
		name     string
		interval time.Duration
		run      func(ctx context.Context, log logrus.FieldLogger)
	}{
		{"watchdog", iv.Watch, func(ctx context.Context, log logrus.FieldLogger) {
			if err := r.Watch(ctx); err != nil {
				j.logError(ctx, log, err, "watchdog round failed")
			}
		}},
		{"reconcile", iv.Reconcile, func(ctx context.Context, log logrus.FieldLogger) {
			n, err := r.Reconcile(ctx)
			if n > 0 {
				log.WithField("repairs", n).Info("reconciler made repairs")
			}
			if err != nil {
				j.logError(ctx, log, err, "reconciler pass failed")
			}
		}},
		{"retention", iv.Retain, func(ctx context.Context, log logrus.FieldLogger) {
			n, err := r.Retain(ctx)
			if n > 0 {
				log.WithField("removed", n).Info("retention removed old audit entries, images and containers")
			}
			if err != nil {
				j.logError(ctx, log, err, "retention pass failed")
			}
		}},
	}
	for _, job := range jobs {
		jobLog := log.WithField("job", job.name)
		name, run, interval := job.name, job.run, job.interval
		_, err := sched.NewJob(
			gocron.DurationJob(job.interval),
			gocron.NewTask(func(ctx context.Context) {
				started := time.Now()
				run(ctx, jobLog)
				took := time.Since(started)
				if ran != nil {
					ran(name, took)
				}
				// A run longer than its interval makes the next one be
				// skipped: the operator should hear of it, not only a
				// histogram.
				if took > interval && ctx.Err() == nil {
					jobLog.WithFields(logrus.Fields{"took": took.Round(time.Millisecond).String(), "interval": interval.String()}).
						Warn("run took longer than its interval; the run that fell due meanwhile was skipped")
				}
			}),
			gocron.WithName(job.name),
			gocron.WithContext(ctx),
			gocron.WithSingletonMode(gocron.LimitModeReschedule),
		)
		if err != nil {
			cancel()
			// Nothing was started, so shutting down cannot block.
			_ = sched.Shutdown()
			return nil, fmt.Errorf("schedule %s every %s: %w", job.name, job.interval, err)
		}
	}
	sched.Start()
	var followers sync.WaitGroup
	followers.Go(func() { r.FollowExits(ctx) })
	followers.Go(func() { r.FollowContainers(ctx) })
	go func() {
		defer close(j.followed)
		followers.Wait()
	}()
	return j, nil
}

// logError logs a run's error; one caused by shutdown is expected and
// logged at debug.
func (j *Jobs) logError(ctx context.Context, log logrus.FieldLogger, err error, msg string) {
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		log.WithError(err).Debug(msg + " (stopping)")
		return
	}
	log.WithError(err).Warn(msg)
}

// Close cancels running jobs and stops the scheduler, waiting for runs to
// return until ctx ends. No job runs after it returns nil.
func (j *Jobs) Close(ctx context.Context) error {
	j.cancel()
	if err := j.sched.ShutdownWithContext(ctx); err != nil {
		return fmt.Errorf("stop scheduler: %w", err)
	}
	select {
	case <-j.followed:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop following container exits and changes: %w", ctx.Err())
	}
}

// gocronLogger routes the scheduler's own logging into logrus at debug: it
// reports scheduling mechanics, and jobs log their outcomes themselves.
type gocronLogger struct {
	log logrus.FieldLogger
}

func (l gocronLogger) Debug(msg string, args ...any) { l.with(args).Debug(msg) }
func (l gocronLogger) Info(msg string, args ...any)  { l.with(args).Debug(msg) }
func (l gocronLogger) Warn(msg string, args ...any)  { l.with(args).Debug(msg) }
func (l gocronLogger) Error(msg string, args ...any) { l.with(args).Debug(msg) }

func (l gocronLogger) with(args []any) logrus.FieldLogger {
	if len(args) == 0 {
		return l.log
	}
	fields := logrus.Fields{}
	for i := 0; i+1 < len(args); i += 2 {
		key, ok := args[i].(string)
		if !ok {
			key = fmt.Sprintf("arg%d", i)
		}
		fields[key] = args[i+1]
	}
	return l.log.WithFields(fields)
}
