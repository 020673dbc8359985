package notify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/pkg/controller"
)

// DefaultMaxAge is how old a notification found in the outbox at start may
// be and still be sent: a day covers a daemon stopped overnight, while news
// older than that would mislead more than it informs. Older ones are given
// up (logged and counted).
const DefaultMaxAge = 24 * time.Hour

// Outbox keeps notifications until each target has them, so that a
// restart, or a crash, loses none. Implementations must be safe for
// concurrent use; their errors are logged, never returned to the
// controller.
type Outbox interface {
	// AddNotification stores n as pending for every one of targets under
	// one new id and returns the id. Ids sort in the order they were
	// added, across restarts too.
	AddNotification(ctx context.Context, targets []string, n controller.Notification) (string, error)
	// DeleteNotification forgets target's copy of notification id: it was
	// delivered or given up. A missing one is no error.
	DeleteNotification(ctx context.Context, target, id string) error
	// PendingNotifications returns every stored notification by target,
	// then by id.
	PendingNotifications(ctx context.Context) (map[string]map[string]controller.Notification, error)
}

// restore reads what the outbox kept from earlier runs into each worker's
// backlog, oldest first. Notifications for targets no longer configured, or
// older than the max age, are given up; ones whose kind the target no
// longer wants are forgotten. A failing outbox is logged, not fatal: what
// it holds stays there for the next start.
func (n *Notifier) restore(ctx context.Context) {
	if n.outbox == nil {
		return
	}
	pending, err := n.outbox.PendingNotifications(ctx)
	if err != nil {
		n.log.WithError(err).Error("notifications kept from an earlier run could not be read; they stay in the store")
		return
	}
	byName := map[string]*worker{}
	for _, w := range n.workers {
		byName[w.Name] = w
	}
	now := n.s.now()
	for target, notes := range pending {
		w := byName[target]
		ids := make([]string, 0, len(notes))
		for id := range notes {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			it := item{id: id, note: notes[id]}
			switch age := now.Sub(it.note.Time); {
			case w == nil:
				n.giveUp(target, it, errors.New("kept from an earlier run for a target no longer configured"))
			case age > n.s.maxAge:
				n.giveUp(target, it, fmt.Errorf("kept from an earlier run %s ago, longer than the %s allowed", age.Round(time.Second), n.s.maxAge))
			case !w.wants(it.note.Kind):
				n.log.WithFields(logrus.Fields{"target": target, "kind": it.note.Kind, "service": it.note.Service}).
					Info("notification kept from an earlier run forgotten: the target no longer wants its kind")
				n.forget(target, it)
			default:
				w.backlog = append(w.backlog, it)
			}
		}
	}
	for _, w := range n.workers {
		if len(w.backlog) > 0 {
			n.log.WithFields(logrus.Fields{"target": w.Name, "count": len(w.backlog)}).
				Info("sending notifications kept from an earlier run")
		}
	}
}

// forget deletes target's copy of it from the outbox.
func (n *Notifier) forget(target string, it item) {
	if n.outbox == nil || it.id == "" {
		return
	}
	if err := n.outbox.DeleteNotification(n.storeCtx, target, it.id); err != nil {
		n.log.WithError(err).WithFields(logrus.Fields{"target": target, "kind": it.note.Kind, "service": it.note.Service}).
			Warn("notification not removed from the store; it may be sent again after a restart")
	}
}
