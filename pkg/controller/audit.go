package controller

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Audit actions that no API route names: the status page's sessions.
const (
	AuditLogin  = "login"
	AuditLogout = "logout"
)

// unauditedLogEvery is how often at most a line reports the requests that
// were counted instead of recorded; a flood of them is one line per period.
const unauditedLogEvery = 10 * time.Second

// RecordAudit appends e to the audit trail when the request came from
// someone known: e.Actor is a token's name (directly, through a session
// such as a login or logout, or a refused use of a known token's
// session), a verified webhook delivery, or deployd itself.
//
// An entry without an actor is a request refused before anyone was known
// to have sent it: no or unknown credentials, a bad webhook signature, a
// rate limit. It is counted (Observer.Unaudited, and a warning at most
// every 10 s that sums up the period) but not written, so that whoever can
// reach the port cannot grow the store or push real entries out of view.
func (c *Controller) RecordAudit(ctx context.Context, e AuditEntry) error {
	if e.Actor == "" {
		c.observer.Unaudited(e.Action, e.Status)
		c.unaudited.count(c.log, c.now(), e)
		return nil
	}
	if e.Time.IsZero() {
		e.Time = c.now().UTC()
	}
	if err := c.store.AppendAudit(ctx, e); err != nil {
		return fmt.Errorf("append audit entry: %w", err)
	}
	return nil
}

// Audit returns the newest audit entries first.
func (c *Controller) Audit(ctx context.Context, limit int) ([]AuditEntry, error) {
	return c.AuditBefore(ctx, "", limit)
}

// AuditBefore returns up to limit audit entries older than the entry with
// ID before, newest first; "" starts at the newest. Paging with the last
// ID of each page reaches every retained entry, however many are appended
// meanwhile. EINVALID for a before that is not an entry ID.
func (c *Controller) AuditBefore(ctx context.Context, before string, limit int) ([]AuditEntry, error) {
	if before != "" && !validAuditID(before) {
		return nil, Errorf(EINVALID, "before must be an audit entry id (digits), got %q", before)
	}
	es, err := c.store.ListAudit(ctx, before, limit)
	if err != nil {
		return nil, fmt.Errorf("list audit entries: %w", err)
	}
	if es == nil {
		es = []AuditEntry{}
	}
	return es, nil
}

// maxAuditIDLen is the width of the store's keys.
const maxAuditIDLen = 16

func validAuditID(id string) bool {
	if id == "" || len(id) > maxAuditIDLen {
		return false
	}
	_, err := strconv.ParseUint(id, 10, 64)
	return err == nil
}

// retainAudit drops the entries beyond Retention's age and count.
func (c *Controller) retainAudit(ctx context.Context) (int, error) {
	var olderThan time.Time
	if c.retain.AuditMaxAge > 0 {
		olderThan = c.now().Add(-c.retain.AuditMaxAge)
	}
	if olderThan.IsZero() && c.retain.AuditMaxEntries <= 0 {
		return 0, nil
	}
	n, err := c.store.PruneAudit(ctx, olderThan, c.retain.AuditMaxEntries)
	if err != nil {
		return n, fmt.Errorf("prune audit trail: %w", err)
	}
	if n > 0 {
		c.log.WithField("removed", n).Info("retention: removed old audit entries")
	}
	return n, nil
}

// unauditedLog sums up the requests RecordAudit counted instead of
// writing: the first of a period is logged at once, the rest with the next
// line. It owns no goroutine, so a quiet period ends in silence; the
// metric has the exact count.
type unauditedLog struct {
	mu       sync.Mutex
	lastLine time.Time
	// Since the last line: how many, by action and status, and the most
	// recent address.
	n        int
	byKind   map[string]int
	lastAddr string
}

func (u *unauditedLog) count(log logrus.FieldLogger, now time.Time, e AuditEntry) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.byKind == nil {
		u.byKind = map[string]int{}
	}
	u.n++
	u.byKind[e.Action+" "+strconv.Itoa(e.Status)]++
	u.lastAddr = e.Address
	if !u.lastLine.IsZero() && now.Sub(u.lastLine) < unauditedLogEvery {
		return
	}
	kinds := make([]string, 0, len(u.byKind))
	for k, n := range u.byKind {
		kinds = append(kinds, k+": "+strconv.Itoa(n))
	}
	sort.Strings(kinds)
	f := logrus.Fields{"count": u.n, "by_action_status": kinds, "last_address": u.lastAddr}
	if !u.lastLine.IsZero() {
		f["since"] = u.lastLine.UTC().Format(time.RFC3339)
	}
	log.WithFields(f).Warn("unauthenticated or rate-limited requests refused (counted, not audited)")
	u.lastLine, u.n, u.lastAddr = now, 0, ""
	clear(u.byKind)
}
