// Package controller owns deployd's deploy and rollback state machine: which
// color of each service is active, how a new color is brought up, checked,
// switched to and kept as a standby. It talks to the outside world only
// through the small interfaces declared in ports.go.
package controller

import (
	"fmt"
	"regexp"
	"time"
)

// Color is one of the two slots a service's containers live in.
type Color string

const (
	NoColor Color = ""
	Blue    Color = "blue"
	Green   Color = "green"
)

// Other returns the color a deploy targets when c is active. With no active
// color the first deploy goes to blue.
func (c Color) Other() Color {
	if c == Blue {
		return Green
	}
	return Blue
}

// Valid reports whether c names a real color.
func (c Color) Valid() bool { return c == Blue || c == Green }

// Kind says what a deployment does.
type Kind string

const (
	KindDeploy   Kind = "deploy"
	KindRollback Kind = "rollback"
)

// Status is the life cycle of a deployment.
type Status int

const (
	StatusQueued Status = iota
	StatusRunning
	StatusSucceeded
	StatusFailed
	StatusInterrupted
	StatusCancelled
	// StatusRolledBack: the deploy switched traffic, then its new color
	// failed during bake and traffic went back to the previous color.
	StatusRolledBack
)

var statusNames = [...]string{"queued", "running", "succeeded", "failed", "interrupted", "cancelled", "rolled_back"}

func (s Status) String() string {
	if s < 0 || int(s) >= len(statusNames) {
		return fmt.Sprintf("status(%d)", int(s))
	}
	return statusNames[s]
}

// Done reports whether the deployment has reached a final status.
func (s Status) Done() bool { return s >= StatusSucceeded }

func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s *Status) UnmarshalText(b []byte) error {
	for i, n := range statusNames {
		if n == string(b) {
			*s = Status(i)
			return nil
		}
	}
	return fmt.Errorf("unknown deployment status %q", b)
}

// StepStatus is the life cycle of one step of a deployment.
type StepStatus int

const (
	StepRunning StepStatus = iota
	StepSucceeded
	StepFailed
	StepSkipped
)

var stepStatusNames = [...]string{"running", "succeeded", "failed", "skipped"}

func (s StepStatus) String() string {
	if s < 0 || int(s) >= len(stepStatusNames) {
		return fmt.Sprintf("step_status(%d)", int(s))
	}
	return stepStatusNames[s]
}

func (s StepStatus) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s *StepStatus) UnmarshalText(b []byte) error {
	for i, n := range stepStatusNames {
		if n == string(b) {
			*s = StepStatus(i)
			return nil
		}
	}
	return fmt.Errorf("unknown step status %q", b)
}

// Step names, in the order a deploy runs them.
const (
	StepPull    = "pull"
	StepCleanup = "cleanup"
	// StepBackup makes a backup before the pre-deploy command
	// (ServiceSpec.Backup).
	StepBackup    = "backup"
	StepPreDeploy = "pre_deploy"
	StepStart     = "start"
	StepHealth    = "health"
	StepSwitch    = "switch"
	StepRecord    = "record"
	// StepBake watches the new color after the switch (ServiceSpec.Bake).
	StepBake = "bake"
	// StepRetire removes the standby a deploy replaced, once the new color
	// has taken traffic (ServiceSpec.StandbyDuringDeploy).
	StepRetire  = "retire"
	StepDrain   = "drain"
	StepStandby = "standby"
)

// Step is one recorded step of a deployment.
type Step struct {
	Name       string
	Status     StepStatus
	StartedAt  time.Time
	FinishedAt *time.Time
	Message    string
	// Output holds the tail of a command's output (the pre-deploy step).
	Output string
}

// Sources of deployments deployd starts by itself: their actor is the
// same word.
const (
	SourceWatchdog   = "watchdog"
	SourceReconciler = "reconciler"
)

// Trigger says who or what asked for a deployment.
type Trigger struct {
	Source string // api, webhook, cli, or SourceWatchdog or SourceReconciler
	// Actor is who authenticated: the token's name, "webhook", or the
	// source of an automatic deployment. Callers never choose it.
	Actor string
	// OnBehalfOf is free text the caller claims, such as the GitHub user a
	// CI job runs for. Nothing verifies it, so it is shown beside Actor,
	// marked as claimed, and never in its place.
	OnBehalfOf string
	Commit     string
	// Ref and Delivery come with webhook deploys: the git ref that was
	// built and the delivery id that asked for it.
	Ref      string
	Delivery string
}

// Automatic reports whether deployd started the deployment by itself.
func (t Trigger) Automatic() bool {
	return t.Source == SourceWatchdog || t.Source == SourceReconciler
}

// AuditEntry records one state-changing request: who asked for what, from
// where, and what came of it. Entries are only ever appended.
type AuditEntry struct {
	ID           string
	Time         time.Time
	Actor        string // a token name, or "webhook:<delivery>"
	Action       string // deploy, rollback, cancel, ...
	Target       string // the service or deployment acted on
	Address      string // the client's address
	Result       string // "ok", or the error code
	Status       int    // the HTTP status answered
	DeploymentID string
	RequestID    string
}

// Deployment is the record of one deploy or rollback.
type Deployment struct {
	ID         string
	Service    string
	Kind       Kind
	Image      string
	FromColor  Color
	ToColor    Color
	Status     Status
	Error      string
	Steps      []Step
	Trigger    Trigger
	CreatedAt  time.Time
	FinishedAt *time.Time
	// Schema is the schema state a deploy left (ServiceSpec.Schema); nil
	// when the service reads none, and for rollbacks.
	Schema *SchemaRecord
	// SchemaChange is, for a rollback, the migrations it went back
	// across; nil when the schema did not differ.
	SchemaChange *SchemaChange
}

// SchemaRecord is the schema state a deploy read after its pre-deploy
// command.
type SchemaRecord struct {
	// Version identifies Applied: a short hash of its sorted names.
	Version string
	// Applied lists every migration applied after the pre-deploy command.
	Applied []string
	// Migrated lists those the deploy's pre-deploy command applied.
	Migrated []string
}

// SchemaChange describes what a rollback crosses: the migrations the
// active deployment's schema has that the standby's lacked.
type SchemaChange struct {
	// Breaking says some of Migrations do not match the service's
	// compatible pattern: the standby's code may fail against them.
	Breaking bool
	// Migrations are the migrations the standby never ran against.
	Migrations []string
	// Message says so in a sentence.
	Message string
	// Confirmed is set on a rollback the requester confirmed across a
	// breaking change.
	Confirmed bool
}

// ServiceState is what the store keeps per service: which color serves
// traffic and which one waits as the standby.
type ServiceState struct {
	Name         string
	ActiveColor  Color
	ActiveImage  string
	StandbyColor Color
	StandbyImage string
	// ActiveDeployment and StandbyDeployment name the deploys that put each
	// color's image there (a rollback swaps them), so "who deployed what"
	// survives rollbacks.
	ActiveDeployment  string
	StandbyDeployment string
	UpdatedAt         time.Time
}

// Container is a container of a service as the runtime reports it.
type Container struct {
	ID         string
	Name       string
	Service    string
	Color      Color
	Deployment string
	Image      string
	State      string // created, running, restarting, exited, ...
	Health     string // the last probe's verdict as deployd saw it, or the runtime's
	Address    string
	Restarts   int
	StartedAt  time.Time
	ExitCode   int
	// Node is the cluster node the replica runs on (a Swarm node's
	// hostname); "" on a single host.
	Node string
}

// Running reports whether the container's process is up.
func (c Container) Running() bool { return c.State == "running" }

var serviceNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// ValidServiceName reports whether name may be used as a service name: it
// ends up in container names, labels and nginx config, so the grammar is
// deliberately narrow.
func ValidServiceName(name string) bool { return serviceNameRE.MatchString(name) }

// DeployRequest asks for a new image of a service. Image is a tag of the
// service's repository ("v2") or a full reference within it
// ("demoapp:v2", "demoapp@sha256:...").
type DeployRequest struct {
	Image   string
	Trigger Trigger
}

// RollbackRequest asks for a rollback to the standby.
type RollbackRequest struct {
	Trigger Trigger
	// ConfirmSchemaChange lets the rollback cross a breaking schema change
	// (see SchemaChange), which is refused without it.
	ConfirmSchemaChange bool
}

// ColorView is one color of a service: its image and its containers.
type ColorView struct {
	Image      string
	Containers []Container
	// Others are containers of the color that are not its recorded set: a
	// running deploy's new ones beside the standby's, or what a failed
	// deployment left for the reconciler. Sorted by name.
	Others []Container
}

// ServiceView is a service as the API shows it: stored state joined with the
// containers the runtime reports.
type ServiceView struct {
	Name         string
	ActiveColor  Color
	ActiveImage  string
	StandbyColor Color
	StandbyImage string
	Colors       map[Color]ColorView
	// StandbyWarm says the standby's containers all run, so a rollback is
	// only a probe and an nginx switch.
	StandbyWarm bool
	// ActiveDeployment is the deploy that put the active image in place:
	// who deployed it, when, from which commit.
	ActiveDeployment *Deployment
	// StandbyDeployment is the deploy that put the standby image in
	// place; its start and health steps say how long a cold rollback
	// takes.
	StandbyDeployment *Deployment
	// Deployment is the running deployment, else the last one, else nil.
	Deployment *Deployment
	// LastFailure is the newest deploy that failed or was interrupted
	// since the service's last successful deploy, else nil: a failure
	// stays visible until a deploy succeeds.
	LastFailure *Deployment
	// LastSwitch is the newest deploy or rollback that moved traffic and
	// finished (succeeded, or rolled back after its bake), else nil: when
	// the active color took over, and who made it so.
	LastSwitch *Deployment
	// RepositoryURL, when configured, is where commits link to.
	RepositoryURL string
	// Traffic is the service's pause, maintenance and requests in flight
	// through deployd's switch; nil in reload mode.
	Traffic *TrafficView
	// RollbackSchema is the schema change a rollback to the standby would
	// cross; nil when there is none, or when either side's schema is
	// unknown.
	RollbackSchema *SchemaChange
}

// What a rollback would return to (ServiceView.Standby).
const (
	// StandbyWarm: the standby's containers all run; a rollback is a probe
	// and a switch.
	StandbyWarm = "warm"
	// StandbyCold: a standby image is recorded but its containers do not
	// all run; a rollback starts and checks them first.
	StandbyCold = "cold"
	// StandbyNone: nothing to roll back to.
	StandbyNone = "none"
)

// Standby says what a rollback would return to: StandbyWarm, StandbyCold
// or StandbyNone.
func (v ServiceView) Standby() string {
	switch {
	case !v.StandbyColor.Valid() || v.StandbyImage == "":
		return StandbyNone
	case v.StandbyWarm:
		return StandbyWarm
	default:
		return StandbyCold
	}
}
