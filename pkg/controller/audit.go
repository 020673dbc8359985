package controller

import (
	"context"
	"fmt"
)

// RecordAudit appends an entry to the audit trail.
func (c *Controller) RecordAudit(ctx context.Context, e AuditEntry) error {
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
	es, err := c.store.ListAudit(ctx, limit)
	if err != nil {
		return nil, fmt.Errorf("list audit entries: %w", err)
	}
	if es == nil {
		es = []AuditEntry{}
	}
	return es, nil
}
