package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Steps a deploy runs around StepPreDeploy when the service reads its
// schema (ServiceSpec.Schema): the state before shows what the pre-deploy
// command found, the state after is what the deployment records.
const (
	StepSchemaBefore = "schema_before"
	StepSchemaAfter  = "schema_after"
)

// SchemaState is a schema as a schema command reports it.
type SchemaState struct {
	// Applied lists the applied migrations in the order printed, each
	// once.
	Applied []string
	// Version is a short hash of the sorted Applied list.
	Version string
}

// ParseSchemaState reduces a schema command's output to the applied
// migrations. A line starting with "[X]" or "[x]" (after leading blanks)
// names an applied migration by the rest of the line; "[ ]" names a
// pending one. Output without any such line (a plain list) is read as one
// applied migration per non-empty line. It is what Django's `showmigrations
// --plan` prints, and a shape any other tool's output is easily put in.
func ParseSchemaState(output string) SchemaState {
	lines := strings.Split(output, "\n")
	checklist := false
	for _, line := range lines {
		if _, _, ok := checkbox(line); ok {
			checklist = true
			break
		}
	}
	var applied []string
	seen := map[string]bool{}
	for _, line := range lines {
		name := strings.TrimSpace(line)
		if checklist {
			var done, ok bool
			if name, done, ok = checkbox(line); !ok || !done {
				continue
			}
		}
		if name == "" || seen[name] {
			continue
		}
		seen[name] = true
		applied = append(applied, name)
	}
	return SchemaState{Applied: applied, Version: schemaVersion(applied)}
}

// checkbox reads a "[X] name" or "[ ] name" line: the name, whether it is
// checked, and whether the line has that shape at all.
func checkbox(line string) (name string, checked, ok bool) {
	line = strings.TrimSpace(line)
	if len(line) < 3 || line[0] != '[' || line[2] != ']' {
		return "", false, false
	}
	switch line[1] {
	case 'X', 'x':
		checked = true
	case ' ':
	default:
		return "", false, false
	}
	return strings.TrimSpace(line[3:]), checked, true
}

// schemaVersion is the first 12 hex digits of the SHA-256 of the sorted
// names, one per line.
func schemaVersion(applied []string) string {
	sorted := slices.Clone(applied)
	slices.Sort(sorted)
	sum := sha256.Sum256([]byte(strings.Join(sorted, "\n")))
	return hex.EncodeToString(sum[:])[:12]
}

// missing returns the names of a that b lacks, in a's order.
func missing(a, b []string) []string {
	var out []string
	for _, name := range a {
		if !slices.Contains(b, name) {
			out = append(out, name)
		}
	}
	return out
}

// schemaOutputLimit is how much of a schema command's output a step keeps.
const schemaOutputLimit = 16 << 10

// readSchema runs the service's schema command in a one-off of the
// deployment's image, with the pre-deploy command's environment, and
// parses what it prints. A non-zero exit or a timeout is an error.
func (r *deployRun) readSchema(ctx context.Context, env []string, phase string, s *Step) (SchemaState, error) {
	sc := r.spec.Schema
	tctx, cancel := context.WithTimeout(ctx, sc.Timeout)
	defer cancel()
	res, err := r.rt.RunOneOff(tctx, OneOffSpec{
		Name:       fmt.Sprintf("%s-schema-%s-%s", r.spec.Name, phase, shortID(r.d.ID)),
		Image:      r.d.Image,
		Service:    r.spec.Name,
		Deployment: r.d.ID,
		Command:    sc.Command,
		Env:        env,
		Network:    r.spec.Network,
		Limits:     r.spec.Limits,
	})
	s.Output = tail(res.Output, schemaOutputLimit)
	cmd := strings.Join(sc.Command, " ")
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return SchemaState{}, fmt.Errorf("schema command %q timed out after %s", cmd, sc.Timeout)
		}
		return SchemaState{}, fmt.Errorf("schema command %q: %w", cmd, err)
	}
	if res.ExitCode != 0 {
		for _, line := range OutputLines(s.Output) {
			r.logLine("%s", line)
		}
		return SchemaState{}, fmt.Errorf("schema command %q exited with code %d", cmd, res.ExitCode)
	}
	return ParseSchemaState(res.Output), nil
}

// schemaBefore reads the schema before the pre-deploy command, as its own
// step. It returns nil, and records no step, when the service reads no
// schema.
func (r *deployRun) schemaBefore(ctx context.Context, env []string) (*SchemaState, error) {
	if len(r.spec.Schema.Command) == 0 {
		return nil, nil
	}
	var before SchemaState
	err := r.step(ctx, StepSchemaBefore, func(ctx context.Context, s *Step) (string, error) {
		var err error
		if before, err = r.readSchema(ctx, env, "before", s); err != nil {
			return "", err
		}
		return fmt.Sprintf("schema %s: %d migration(s) applied", before.Version, len(before.Applied)), nil
	})
	return &before, err
}

// schemaAfter reads the schema after the pre-deploy command and records
// it on the deployment, with what the command applied. before is
// schemaBefore's result; nil means the service reads no schema.
func (r *deployRun) schemaAfter(ctx context.Context, env []string, before *SchemaState) error {
	if before == nil {
		return nil
	}
	return r.step(ctx, StepSchemaAfter, func(ctx context.Context, s *Step) (string, error) {
		after, err := r.readSchema(ctx, env, "after", s)
		if err != nil {
			return "", err
		}
		rec := &SchemaRecord{Version: after.Version, Applied: after.Applied, Migrated: missing(after.Applied, before.Applied)}
		r.d.Schema = rec
		if len(rec.Migrated) == 0 {
			return fmt.Sprintf("schema %s unchanged (%d migration(s) applied)", rec.Version, len(rec.Applied)), nil
		}
		return fmt.Sprintf("schema %s: applied %s", rec.Version, strings.Join(rec.Migrated, ", ")), nil
	})
}

// schemaChange is the change a rollback from the active deployment to the
// standby's crosses: the migrations active's schema has that standby's
// lacked. It is nil when either record has no schema, or nothing is
// missing.
func schemaChange(spec ServiceSpec, st ServiceState, active, standby *Deployment) *SchemaChange {
	if active == nil || standby == nil || active.Schema == nil || standby.Schema == nil ||
		active.Schema.Version == standby.Schema.Version {
		return nil
	}
	ms := missing(active.Schema.Applied, standby.Schema.Applied)
	if len(ms) == 0 {
		return nil
	}
	breaking := breakingOf(spec.Schema, ms)
	ch := &SchemaChange{Breaking: len(breaking) > 0, Migrations: ms}
	if ch.Breaking {
		ch.Message = fmt.Sprintf("%s's active %s applied %s; the standby %s ran against the old schema and may fail. "+
			"Roll back with confirm_schema_change to do it anyway.",
			spec.Name, st.ActiveImage, strings.Join(breaking, ", "), st.StandbyImage)
	} else {
		ch.Message = fmt.Sprintf("%s's active %s applied %s, all compatible: the standby %s runs against them.",
			spec.Name, st.ActiveImage, strings.Join(ms, ", "), st.StandbyImage)
	}
	return ch
}

// breakingOf returns the migrations of ms that do not match the spec's
// compatible pattern: all of them when there is none.
func breakingOf(sc SchemaSpec, ms []string) []string {
	// Validated at startup; a pattern that does not compile matches
	// nothing, so every migration counts as breaking.
	compatible, err := regexp.Compile(sc.Compatible)
	var breaking []string
	for _, m := range ms {
		if sc.Compatible == "" || err != nil || !compatible.MatchString(m) {
			breaking = append(breaking, m)
		}
	}
	return breaking
}

// rollbackSchema reads the deployments of st's colors and returns the
// schema change a rollback would cross (see schemaChange). A deployment
// record that cannot be read counts as no schema known.
func (c *Controller) rollbackSchema(ctx context.Context, spec ServiceSpec, st ServiceState) (*SchemaChange, error) {
	if st.ActiveDeployment == "" || st.StandbyDeployment == "" {
		return nil, nil
	}
	get := func(id string) (*Deployment, error) {
		d, err := c.store.GetDeployment(ctx, id)
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read deployment %s: %w", id, err)
		}
		return &d, nil
	}
	active, err := get(st.ActiveDeployment)
	if err != nil {
		return nil, err
	}
	standby, err := get(st.StandbyDeployment)
	if err != nil {
		return nil, err
	}
	return schemaChange(spec, st, active, standby), nil
}

// schemaGuard checks a planned rollback against the schema: it refuses
// with ESCHEMACHANGE a breaking change the request did not confirm, and
// otherwise notes the change on the rollback's record.
func (c *Controller) schemaGuard(ctx context.Context, spec ServiceSpec, st ServiceState, confirmed bool, d *Deployment) error {
	ch, err := c.rollbackSchema(ctx, spec, st)
	if err != nil || ch == nil {
		return err
	}
	if ch.Breaking && !confirmed {
		return Errorf(ESCHEMACHANGE, "%s", ch.Message)
	}
	ch.Confirmed = ch.Breaking
	d.SchemaChange = ch
	return nil
}

// standbySchemaUnfit says why an automatic rollback must not cross the
// schema change, or "" when it may.
func (c *Controller) standbySchemaUnfit(ctx context.Context, spec ServiceSpec, st ServiceState) string {
	ch, err := c.rollbackSchema(ctx, spec, st)
	if err != nil {
		return "read the schema records: " + err.Error()
	}
	if ch == nil || !ch.Breaking {
		return ""
	}
	return fmt.Sprintf("the standby %s ran against the old schema (%s applied since)",
		st.StandbyImage, strings.Join(breakingOf(spec.Schema, ch.Migrations), ", "))
}

// schemaNote is what a rollback's notifications add about the schema
// change it crosses: "" when none.
func schemaNote(d Deployment) string {
	ch := d.SchemaChange
	switch {
	case ch == nil:
		return ""
	case ch.Confirmed:
		return fmt.Sprintf(" across a breaking schema change, confirmed by %s (%s)",
			orUnknown(d.Trigger.Actor), strings.Join(ch.Migrations, ", "))
	case ch.Breaking:
		return fmt.Sprintf(" across a breaking schema change (%s)", strings.Join(ch.Migrations, ", "))
	default:
		return fmt.Sprintf(" across compatible migrations (%s)", strings.Join(ch.Migrations, ", "))
	}
}
