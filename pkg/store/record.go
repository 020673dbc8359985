package store

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

// The stored records. The file holds these types' JSON, never the
// controller's types, so a field renamed in controller changes nothing on
// disk. Each type is named for the schema version that introduced its
// current form (schemaVersion, migrate.go); changing a stored form means a
// new type with the next version's suffix and a migration that rewrites the
// old records, while the old type stays to read them.
//
// Schema 1 is the JSON the store wrote when it stored controller's types as
// they were; testdata/schema1.db is such a file, and schema1_test.go proves
// these types read it and write the same bytes back. Enumerations (colors,
// kinds, statuses) are stored as their controller names; that test reads
// every one of them from the old file, so renaming one fails it.

// serviceV1 is a controller.ServiceState, keyed by the service's name in
// the services bucket.
type serviceV1 struct {
	Name              string           `json:"name"`
	ActiveColor       controller.Color `json:"active_color"`
	ActiveImage       string           `json:"active_image"`
	StandbyColor      controller.Color `json:"standby_color"`
	StandbyImage      string           `json:"standby_image"`
	ActiveDeployment  string           `json:"active_deployment,omitempty"`
	StandbyDeployment string           `json:"standby_deployment,omitempty"`
	UpdatedAt         time.Time        `json:"updated_at"`
}

func newServiceV1(st controller.ServiceState) serviceV1 {
	return serviceV1{
		Name:              st.Name,
		ActiveColor:       st.ActiveColor,
		ActiveImage:       st.ActiveImage,
		StandbyColor:      st.StandbyColor,
		StandbyImage:      st.StandbyImage,
		ActiveDeployment:  st.ActiveDeployment,
		StandbyDeployment: st.StandbyDeployment,
		UpdatedAt:         st.UpdatedAt,
	}
}

func (r serviceV1) state() controller.ServiceState {
	return controller.ServiceState{
		Name:              r.Name,
		ActiveColor:       r.ActiveColor,
		ActiveImage:       r.ActiveImage,
		StandbyColor:      r.StandbyColor,
		StandbyImage:      r.StandbyImage,
		ActiveDeployment:  r.ActiveDeployment,
		StandbyDeployment: r.StandbyDeployment,
		UpdatedAt:         r.UpdatedAt,
	}
}

// deploymentV1 is a controller.Deployment, keyed by its id in the
// deployments bucket. Steps is null for a deployment whose steps were nil
// and [] for an empty list; both are kept as they were.
type deploymentV1 struct {
	ID         string            `json:"id"`
	Service    string            `json:"service"`
	Kind       controller.Kind   `json:"kind"`
	Image      string            `json:"image"`
	FromColor  controller.Color  `json:"from_color"`
	ToColor    controller.Color  `json:"to_color"`
	Status     controller.Status `json:"status"`
	Error      string            `json:"error"`
	Steps      []stepV1          `json:"steps"`
	Trigger    triggerV1         `json:"trigger"`
	CreatedAt  time.Time         `json:"created_at"`
	FinishedAt *time.Time        `json:"finished_at"`
	// Schema and SchemaChange came after schema 1: records without them
	// read as no schema known, and omitempty keeps those records' bytes
	// as they were.
	Schema       *schemaRecordV1 `json:"schema,omitempty"`
	SchemaChange *schemaChangeV1 `json:"schema_change,omitempty"`
}

// schemaRecordV1 is a controller.SchemaRecord.
type schemaRecordV1 struct {
	Version  string   `json:"version"`
	Applied  []string `json:"applied"`
	Migrated []string `json:"migrated"`
}

// schemaChangeV1 is a controller.SchemaChange.
type schemaChangeV1 struct {
	Breaking   bool     `json:"breaking"`
	Migrations []string `json:"migrations"`
	Message    string   `json:"message"`
	Confirmed  bool     `json:"confirmed,omitempty"`
}

type stepV1 struct {
	Name       string                `json:"name"`
	Status     controller.StepStatus `json:"status"`
	StartedAt  time.Time             `json:"started_at"`
	FinishedAt *time.Time            `json:"finished_at"`
	Message    string                `json:"message"`
	Output     string                `json:"output,omitempty"`
}

type triggerV1 struct {
	Source string `json:"source"`
	Actor  string `json:"actor"`
	// OnBehalfOf came after schema 1; records without it read as no
	// claim, and omitempty keeps those records' bytes as they were.
	OnBehalfOf string `json:"on_behalf_of,omitempty"`
	Commit     string `json:"commit"`
	Ref        string `json:"ref,omitempty"`
	Delivery   string `json:"delivery,omitempty"`
}

func newDeploymentV1(d controller.Deployment) deploymentV1 {
	r := deploymentV1{
		ID:        d.ID,
		Service:   d.Service,
		Kind:      d.Kind,
		Image:     d.Image,
		FromColor: d.FromColor,
		ToColor:   d.ToColor,
		Status:    d.Status,
		Error:     d.Error,
		Trigger: triggerV1{
			Source: d.Trigger.Source, Actor: d.Trigger.Actor, OnBehalfOf: d.Trigger.OnBehalfOf, Commit: d.Trigger.Commit,
			Ref: d.Trigger.Ref, Delivery: d.Trigger.Delivery,
		},
		CreatedAt:  d.CreatedAt,
		FinishedAt: d.FinishedAt,
	}
	if sr := d.Schema; sr != nil {
		r.Schema = &schemaRecordV1{Version: sr.Version, Applied: sr.Applied, Migrated: sr.Migrated}
	}
	if ch := d.SchemaChange; ch != nil {
		r.SchemaChange = &schemaChangeV1{Breaking: ch.Breaking, Migrations: ch.Migrations, Message: ch.Message, Confirmed: ch.Confirmed}
	}
	if d.Steps != nil {
		r.Steps = make([]stepV1, len(d.Steps))
		for i, s := range d.Steps {
			r.Steps[i] = stepV1{Name: s.Name, Status: s.Status, StartedAt: s.StartedAt,
				FinishedAt: s.FinishedAt, Message: s.Message, Output: s.Output}
		}
	}
	return r
}

func (r deploymentV1) deployment() controller.Deployment {
	d := controller.Deployment{
		ID:        r.ID,
		Service:   r.Service,
		Kind:      r.Kind,
		Image:     r.Image,
		FromColor: r.FromColor,
		ToColor:   r.ToColor,
		Status:    r.Status,
		Error:     r.Error,
		Trigger: controller.Trigger{
			Source: r.Trigger.Source, Actor: r.Trigger.Actor, OnBehalfOf: r.Trigger.OnBehalfOf, Commit: r.Trigger.Commit,
			Ref: r.Trigger.Ref, Delivery: r.Trigger.Delivery,
		},
		CreatedAt:  r.CreatedAt,
		FinishedAt: r.FinishedAt,
	}
	if sr := r.Schema; sr != nil {
		d.Schema = &controller.SchemaRecord{Version: sr.Version, Applied: sr.Applied, Migrated: sr.Migrated}
	}
	if ch := r.SchemaChange; ch != nil {
		d.SchemaChange = &controller.SchemaChange{Breaking: ch.Breaking, Migrations: ch.Migrations, Message: ch.Message, Confirmed: ch.Confirmed}
	}
	if r.Steps != nil {
		d.Steps = make([]controller.Step, len(r.Steps))
		for i, s := range r.Steps {
			d.Steps[i] = controller.Step{Name: s.Name, Status: s.Status, StartedAt: s.StartedAt,
				FinishedAt: s.FinishedAt, Message: s.Message, Output: s.Output}
		}
	}
	return d
}

// auditV1 is a controller.AuditEntry, keyed by the audit bucket's sequence.
type auditV1 struct {
	ID           string    `json:"id"`
	Time         time.Time `json:"time"`
	Actor        string    `json:"actor"`
	Action       string    `json:"action"`
	Target       string    `json:"target"`
	Address      string    `json:"address"`
	Result       string    `json:"result"`
	Status       int       `json:"status"`
	DeploymentID string    `json:"deployment_id,omitempty"`
	RequestID    string    `json:"request_id,omitempty"`
}

func newAuditV1(e controller.AuditEntry) auditV1 {
	return auditV1{
		ID: e.ID, Time: e.Time, Actor: e.Actor, Action: e.Action, Target: e.Target, Address: e.Address,
		Result: e.Result, Status: e.Status, DeploymentID: e.DeploymentID, RequestID: e.RequestID,
	}
}

func (r auditV1) entry() controller.AuditEntry {
	return controller.AuditEntry{
		ID: r.ID, Time: r.Time, Actor: r.Actor, Action: r.Action, Target: r.Target, Address: r.Address,
		Result: r.Result, Status: r.Status, DeploymentID: r.DeploymentID, RequestID: r.RequestID,
	}
}

// trafficV1 is a controller.TrafficState, keyed by the service's name in
// the traffic bucket. Durations are nanoseconds.
type trafficV1 struct {
	Service          string    `json:"service"`
	Paused           bool      `json:"paused"`
	PausedSince      time.Time `json:"paused_since"`
	MaxHoldNanos     int64     `json:"max_hold_ns"`
	MaxHeld          int       `json:"max_held"`
	Maintenance      bool      `json:"maintenance"`
	MaintenanceSince time.Time `json:"maintenance_since"`
	Message          string    `json:"message"`
	UpdatedAt        time.Time `json:"updated_at"`
}

func newTrafficV1(st controller.TrafficState) trafficV1 {
	return trafficV1{
		Service: st.Service, Paused: st.Paused, PausedSince: st.PausedSince, MaxHoldNanos: int64(st.MaxHold),
		MaxHeld: st.MaxHeld, Maintenance: st.Maintenance, MaintenanceSince: st.MaintenanceSince,
		Message: st.Message, UpdatedAt: st.UpdatedAt,
	}
}

func (r trafficV1) state() controller.TrafficState {
	return controller.TrafficState{
		Service: r.Service, Paused: r.Paused, PausedSince: r.PausedSince, MaxHold: time.Duration(r.MaxHoldNanos),
		MaxHeld: r.MaxHeld, Maintenance: r.Maintenance, MaintenanceSince: r.MaintenanceSince,
		Message: r.Message, UpdatedAt: r.UpdatedAt,
	}
}

// deliveryV1 is one webhook delivery, keyed by its delivery key.
type deliveryV1 struct {
	DeploymentID string    `json:"deployment_id"`
	Time         time.Time `json:"time"`
}

// pendingV1 is one undelivered notification, keyed by its id in its
// target's bucket of the outbox.
type pendingV1 struct {
	Notification notificationV1 `json:"notification"`
	AddedAt      time.Time      `json:"added_at"`
}

type notificationV1 struct {
	Kind       string           `json:"kind"`
	Service    string           `json:"service"`
	Deployment string           `json:"deployment,omitempty"`
	Image      string           `json:"image,omitempty"`
	Color      controller.Color `json:"color,omitempty"`
	Actor      string           `json:"actor,omitempty"`
	OnBehalfOf string           `json:"on_behalf_of,omitempty"`
	Message    string           `json:"message"`
	Time       time.Time        `json:"time"`
}

func newNotificationV1(n controller.Notification) notificationV1 {
	return notificationV1{
		Kind: n.Kind, Service: n.Service, Deployment: n.Deployment, Image: n.Image,
		Color: n.Color, Actor: n.Actor, OnBehalfOf: n.OnBehalfOf, Message: n.Message, Time: n.Time,
	}
}

func (r notificationV1) notification() controller.Notification {
	return controller.Notification{
		Kind: r.Kind, Service: r.Service, Deployment: r.Deployment, Image: r.Image,
		Color: r.Color, Actor: r.Actor, OnBehalfOf: r.OnBehalfOf, Message: r.Message, Time: r.Time,
	}
}

// decodeDeployment is safe on bbolt's transaction-scoped v because
// json.Unmarshal copies every string it keeps.
func decodeDeployment(id string, v []byte) (controller.Deployment, error) {
	var r deploymentV1
	if err := json.Unmarshal(v, &r); err != nil {
		return controller.Deployment{}, fmt.Errorf("decode deployment %q: %w", id, err)
	}
	return r.deployment(), nil
}

func decodeService(name string, v []byte) (controller.ServiceState, error) {
	var r serviceV1
	if err := json.Unmarshal(v, &r); err != nil {
		return controller.ServiceState{}, fmt.Errorf("decode service %q: %w", name, err)
	}
	return r.state(), nil
}

func decodeAudit(key string, v []byte) (controller.AuditEntry, error) {
	var r auditV1
	if err := json.Unmarshal(v, &r); err != nil {
		return controller.AuditEntry{}, fmt.Errorf("decode audit entry %s: %w", key, err)
	}
	return r.entry(), nil
}
