package api

import (
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

// The API's response bodies: the schemas of openapi.yaml as Go types, each
// named as its schema. They are the public contract, apart from the
// controller's types, so that a renamed domain field changes no answer;
// TestResponses_FieldsMatchTheDocument keeps them and the document in step.
// Colors, kinds and statuses are the controller's words (their
// MarshalText), which the document lists as enums.

// Service is a service as GET /api/v1/services/{name} shows it.
type Service struct {
	Name         string           `json:"name"`
	ActiveColor  controller.Color `json:"active_color"`
	ActiveImage  string           `json:"active_image"`
	StandbyColor controller.Color `json:"standby_color"`
	StandbyImage string           `json:"standby_image"`
	Colors       Colors           `json:"colors"`
	StandbyWarm  bool             `json:"standby_warm"`
	// StandbyState is what a rollback returns to: warm, cold or none.
	StandbyState string `json:"standby_state"`
	// ActiveDeployment is the deploy that put the active image in place,
	// nil when unknown.
	ActiveDeployment *Deployment `json:"active_deployment"`
	// StandbyDeployment is the deploy that put the standby image in place,
	// nil when unknown.
	StandbyDeployment *Deployment `json:"standby_deployment"`
	// LastFailure is the newest failed or interrupted deploy since the last
	// successful one, nil when there is none.
	LastFailure *Deployment `json:"last_failure"`
	// LastSwitch is the newest deploy or rollback that moved traffic.
	LastSwitch *Deployment `json:"last_switch"`
	// Deployment is the running deployment, else the last one, else nil.
	Deployment    *Deployment `json:"deployment"`
	RepositoryURL string      `json:"repository_url,omitempty"`
	// Traffic is nil in reload mode, where nginx sends requests straight
	// to the containers.
	Traffic *Traffic `json:"traffic"`
	// RollbackSchemaChange is the schema change a rollback to the standby
	// would cross; nil when there is none or it is unknown.
	RollbackSchemaChange *SchemaChange `json:"rollback_schema_change"`
}

// SchemaChange is the migrations a rollback goes back across: those the
// active deployment's schema has that the standby's lacked.
type SchemaChange struct {
	// Breaking: some of Migrations are not compatible (expand-only), so
	// the rollback needs confirm_schema_change.
	Breaking   bool     `json:"breaking"`
	Migrations []string `json:"migrations"`
	Message    string   `json:"message"`
	// Confirmed is set on a rollback that was confirmed across a breaking
	// change.
	Confirmed bool `json:"confirmed,omitempty"`
}

// SchemaRecord is the schema state a deploy left.
type SchemaRecord struct {
	Version  string   `json:"version"`
	Applied  []string `json:"applied"`
	Migrated []string `json:"migrated"`
}

// Traffic is a service's pause, maintenance and requests through deployd's
// switch; the answer of pause, resume and maintenance too.
type Traffic struct {
	Mode             string     `json:"mode"`
	Paused           bool       `json:"paused"`
	PausedSince      *time.Time `json:"paused_since"`
	Held             int        `json:"held"`
	MaxHeld          int        `json:"max_held"`
	MaxHoldSeconds   float64    `json:"max_hold_seconds"`
	Maintenance      bool       `json:"maintenance"`
	MaintenanceSince *time.Time `json:"maintenance_since"`
	Message          string     `json:"message"`
	InFlight         int        `json:"in_flight"`
}

// Colors holds both colors of a service, deployed or not.
type Colors struct {
	Blue  ColorView `json:"blue"`
	Green ColorView `json:"green"`
}

// ColorView is one color of a service. Containers and Others are never
// null.
type ColorView struct {
	Image      string      `json:"image"`
	Containers []Container `json:"containers"`
	Others     []Container `json:"others"`
}

// Container is a container of a service's color.
type Container struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	State     string    `json:"state"`
	Health    string    `json:"health"`
	Address   string    `json:"address"`
	Restarts  int       `json:"restarts"`
	StartedAt time.Time `json:"started_at"`
	// Node is the cluster node the replica runs on; absent on the
	// single-host runtime, which has no nodes.
	Node string `json:"node,omitempty"`
}

// Deployment is one deploy or rollback. Steps is never null.
type Deployment struct {
	ID         string            `json:"id"`
	Service    string            `json:"service"`
	Kind       controller.Kind   `json:"kind"`
	Image      string            `json:"image"`
	FromColor  controller.Color  `json:"from_color"`
	ToColor    controller.Color  `json:"to_color"`
	Status     controller.Status `json:"status"`
	Error      string            `json:"error"`
	Steps      []Step            `json:"steps"`
	Trigger    Trigger           `json:"trigger"`
	CreatedAt  time.Time         `json:"created_at"`
	FinishedAt *time.Time        `json:"finished_at"`
	// Schema is set on deploys of a service with schema.command.
	Schema *SchemaRecord `json:"schema,omitempty"`
	// SchemaChange is set on rollbacks that crossed a schema change.
	SchemaChange *SchemaChange `json:"schema_change,omitempty"`
}

// Step is one step of a deployment.
type Step struct {
	Name       string                `json:"name"`
	Status     controller.StepStatus `json:"status"`
	StartedAt  time.Time             `json:"started_at"`
	FinishedAt *time.Time            `json:"finished_at"`
	Message    string                `json:"message"`
	Output     string                `json:"output,omitempty"`
}

// Trigger says who or what asked for a deployment.
type Trigger struct {
	Source string `json:"source"`
	Actor  string `json:"actor"`
	// OnBehalfOf is what the caller claimed; nothing verified it.
	OnBehalfOf string `json:"on_behalf_of,omitempty"`
	Commit     string `json:"commit"`
	Ref        string `json:"ref,omitempty"`
	Delivery   string `json:"delivery,omitempty"`
}

// WebhookAccepted answers POST /hooks/deploy.
type WebhookAccepted struct {
	Deployment Deployment `json:"deployment"`
	URL        string     `json:"url"`
}

// Event is one entry of a deployment's event stream, the data of one
// Server-Sent Event.
type Event struct {
	Seq     int       `json:"seq"`
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	Step    string    `json:"step,omitempty"`
	Status  string    `json:"status,omitempty"`
	Message string    `json:"message,omitempty"`
}

// AuditEntry is one entry of the audit trail.
type AuditEntry struct {
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

// ServiceList answers GET /api/v1/services.
type ServiceList struct {
	Services []Service `json:"services"`
}

// DeploymentList answers GET /api/v1/deployments.
type DeploymentList struct {
	Deployments []Deployment `json:"deployments"`
}

// AuditList answers GET /api/v1/audit.
type AuditList struct {
	Entries []AuditEntry `json:"entries"`
	// Next is the before parameter of the following, older page, set when
	// this page is full; walking on until a page has no next reaches every
	// retained entry.
	Next string `json:"next,omitempty"`
}

// serviceOf fills the gaps a client should not have to handle: both
// colors are present and lists are [] rather than null.
func serviceOf(v controller.ServiceView) Service {
	s := Service{
		Name:          v.Name,
		ActiveColor:   v.ActiveColor,
		ActiveImage:   v.ActiveImage,
		StandbyColor:  v.StandbyColor,
		StandbyImage:  v.StandbyImage,
		Colors:        Colors{Blue: colorViewOf(v.Colors[controller.Blue]), Green: colorViewOf(v.Colors[controller.Green])},
		StandbyWarm:   v.StandbyWarm,
		RepositoryURL: v.RepositoryURL,
	}
	s.StandbyState = v.Standby()
	s.ActiveDeployment = deploymentOrNil(v.ActiveDeployment)
	s.StandbyDeployment = deploymentOrNil(v.StandbyDeployment)
	s.Deployment = deploymentOrNil(v.Deployment)
	s.LastFailure = deploymentOrNil(v.LastFailure)
	s.LastSwitch = deploymentOrNil(v.LastSwitch)
	if v.Traffic != nil {
		t := trafficOf(*v.Traffic)
		s.Traffic = &t
	}
	s.RollbackSchemaChange = schemaChangeOf(v.RollbackSchema)
	return s
}

// schemaChangeOf keeps Migrations a list, never null.
func schemaChangeOf(ch *controller.SchemaChange) *SchemaChange {
	if ch == nil {
		return nil
	}
	return &SchemaChange{Breaking: ch.Breaking, Migrations: orEmpty(ch.Migrations), Message: ch.Message, Confirmed: ch.Confirmed}
}

func orEmpty(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}

func deploymentOrNil(d *controller.Deployment) *Deployment {
	if d == nil {
		return nil
	}
	out := deploymentOf(*d)
	return &out
}

// trafficOf leaves the limits and times out when they do not apply: a
// service that is not paused holds nothing.
func trafficOf(v controller.TrafficView) Traffic {
	t := Traffic{Mode: v.Mode, Paused: v.Paused, Held: v.Held, Maintenance: v.Maintenance, Message: v.Message, InFlight: v.InFlight}
	if v.Paused {
		t.PausedSince, t.MaxHeld, t.MaxHoldSeconds = timeOrNil(v.PausedSince), v.MaxHeld, v.MaxHold.Seconds()
	}
	if v.Maintenance {
		t.MaintenanceSince = timeOrNil(v.MaintenanceSince)
	}
	return t
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func colorViewOf(v controller.ColorView) ColorView {
	return ColorView{Image: v.Image, Containers: containersOf(v.Containers), Others: containersOf(v.Others)}
}

func containersOf(cs []controller.Container) []Container {
	out := make([]Container, len(cs))
	for i, c := range cs {
		out[i] = Container{ID: c.ID, Name: c.Name, State: c.State, Health: c.Health,
			Address: c.Address, Restarts: c.Restarts, StartedAt: c.StartedAt, Node: c.Node}
	}
	return out
}

func deploymentOf(d controller.Deployment) Deployment {
	out := Deployment{
		ID:        d.ID,
		Service:   d.Service,
		Kind:      d.Kind,
		Image:     d.Image,
		FromColor: d.FromColor,
		ToColor:   d.ToColor,
		Status:    d.Status,
		Error:     d.Error,
		Steps:     make([]Step, len(d.Steps)),
		Trigger: Trigger{Source: d.Trigger.Source, Actor: d.Trigger.Actor, OnBehalfOf: d.Trigger.OnBehalfOf, Commit: d.Trigger.Commit,
			Ref: d.Trigger.Ref, Delivery: d.Trigger.Delivery},
		CreatedAt:  d.CreatedAt,
		FinishedAt: d.FinishedAt,
	}
	for i, s := range d.Steps {
		out.Steps[i] = Step{Name: s.Name, Status: s.Status, StartedAt: s.StartedAt, FinishedAt: s.FinishedAt,
			Message: s.Message, Output: s.Output}
	}
	if sr := d.Schema; sr != nil {
		out.Schema = &SchemaRecord{Version: sr.Version, Applied: orEmpty(sr.Applied), Migrated: orEmpty(sr.Migrated)}
	}
	out.SchemaChange = schemaChangeOf(d.SchemaChange)
	return out
}

func eventOf(e controller.Event) Event {
	return Event{Seq: e.Seq, Time: e.Time, Type: e.Type, Step: e.Step, Status: e.Status, Message: e.Message}
}

func auditEntryOf(e controller.AuditEntry) AuditEntry {
	return AuditEntry{ID: e.ID, Time: e.Time, Actor: e.Actor, Action: e.Action, Target: e.Target,
		Address: e.Address, Result: e.Result, Status: e.Status, DeploymentID: e.DeploymentID, RequestID: e.RequestID}
}
