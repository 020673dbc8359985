package controller

import (
	"context"
	"time"
)

// Runtime runs containers. dockerx implements it on the Docker Engine API.
// Methods return errors wrapping ErrNotFound when an image or container does
// not exist and ErrUnavailable when the engine cannot be reached.
type Runtime interface {
	// EnsureImage makes ref present locally according to policy; pulls are
	// retried with backoff. A ref that exists nowhere wraps ErrNotFound.
	// progress, when not nil, receives the pull's status lines.
	EnsureImage(ctx context.Context, ref string, policy PullPolicy, progress func(string)) error
	// RunOneOff creates a container, runs it to completion and removes it.
	// It blocks until the command ends or ctx is done; on ctx's end the
	// container is killed and removed and ctx's error is returned.
	RunOneOff(ctx context.Context, spec OneOffSpec) (OneOffResult, error)
	// FileSize returns the size in bytes of the regular file at path as a
	// container of spec sees it (its image and Mounts), without running
	// anything of the image: it works with images that hold no shell.
	// A missing path wraps ErrNotFound; a path that is not a regular file
	// is an error too.
	FileSize(ctx context.Context, spec OneOffSpec, path string) (int64, error)
	// StartContainer creates and starts one replica and returns it with
	// the address nginx and the prober reach it at.
	StartContainer(ctx context.Context, spec ContainerSpec) (Container, error)
	// Containers lists the service's deployd-managed containers, running or
	// not, of every color, with their addresses when they run.
	Containers(ctx context.Context, service string) ([]Container, error)
	// InspectContainer returns one container's current state.
	InspectContainer(ctx context.Context, id string) (Container, error)
	// LastExitCode returns the exit code of the container's most recent
	// death. Container.ExitCode cannot tell it once a restart policy has
	// started the container again: it is then the new process's (0 while
	// it runs). It wraps ErrNotFound when the container is gone, never
	// died, or the runtime no longer remembers the death.
	LastExitCode(ctx context.Context, id string) (int, error)
	// StartExisting starts a stopped container and returns its new state
	// (the published port may have changed).
	StartExisting(ctx context.Context, id string) (Container, error)
	// StopContainer stops a container, giving it timeout to exit cleanly.
	StopContainer(ctx context.Context, id string, timeout time.Duration) error
	// RemoveContainer force-removes a container; a missing one is no error.
	RemoveContainer(ctx context.Context, id string) error
	// Ping reports whether the engine answers; ErrUnavailable when not.
	Ping(ctx context.Context) error
	// OneOffs lists the service's one-off containers (pre-deploy runs)
	// that still exist, for the reconciler to sweep.
	OneOffs(ctx context.Context, service string) ([]Container, error)
	// Images lists the local images of a repository, newest first.
	Images(ctx context.Context, repository string) ([]Image, error)
	// RemoveImage removes an image by id; one still used by a container
	// is not removed and wraps ErrConflict.
	RemoveImage(ctx context.Context, id string) error
}

// ImagePinner is a Runtime that runs images by digest: a cluster's nodes
// each pull for themselves, and must all run the same bytes whatever a tag
// points at by then. The deploy's pull step resolves the image with it, and
// the deployment records (and a rollback runs) the pinned reference.
type ImagePinner interface {
	// PinImage returns ref with the registry's digest of it. Errors: an
	// image the registry lacks wraps ErrNotFound, a registry that does not
	// answer wraps ErrUnavailable, a ref that names no registry is
	// EINVALID.
	PinImage(ctx context.Context, ref string) (string, error)
}

// ExitFeed reports, as they happen, that containers of deployd's services
// stopped. dockerx implements it on the Engine's event stream.
type ExitFeed interface {
	// FollowExits calls fn with the service of each replica (one-offs
	// excepted) that dies or is removed, until ctx ends or the stream
	// breaks. It blocks; it returns ctx's error after ctx ends, otherwise
	// the stream's error. fn must not block.
	FollowExits(ctx context.Context, fn func(service string)) error
}

// Image is a local image of a service's repository.
type Image struct {
	ID      string
	Tags    []string // full references, e.g. "demoapp:v2"
	Created time.Time
}

// Router sends a service's traffic to a set of addresses, the replicas of
// one color. nginxconf implements it by rendering an upstream file and
// reloading nginx; trafficswitch by switching its own forwarder.
type Router interface {
	// EnsurePlaceholder writes an upstream that answers 502 when the
	// service has none yet, so a site config may reference it from day one.
	// It does nothing when an upstream file already exists.
	EnsurePlaceholder(ctx context.Context, service string) error
	// Switch points the service at addrs and returns once nginx is proven
	// to serve the new configuration. On any failure the previous upstream
	// is restored (and nginx reloaded again if it had been) before the
	// error is returned, so traffic is untouched. Switching to the
	// addresses already in place does nothing. No addresses means the
	// placeholder upstream.
	Switch(ctx context.Context, service string, color Color, addrs []string) error
	// InSync reports whether the service's upstream file is exactly what
	// Switch(addrs) would write; a missing or hand-edited file is not.
	InSync(ctx context.Context, service string, color Color, addrs []string) (bool, error)
	// Drain returns once the requests that color was serving when traffic
	// left it have ended, or after timeout, whichever comes first, and
	// says what it waited for. A router that cannot count them waits the
	// whole timeout. It returns ctx's error when ctx ends first.
	Drain(ctx context.Context, service string, color Color, timeout time.Duration) (string, error)
	// Check runs nginx's config test, for readiness.
	Check(ctx context.Context) error
}

// TrafficControl holds or turns away a service's requests where they enter
// deployd's request-level switch. trafficswitch implements it; in reload
// mode (nginx sends requests straight to the containers) there is none.
// None of its methods blocks on requests; the switch may run in another
// process, so each call is bounded by ctx. Errors are *Error values:
// EINVALID for a limit that is not positive or a malformed maintenance
// message, ECONFLICT for Pause on a paused service or Resume on one that is
// not, ENOTFOUND for a service the switch does not serve, EUNAVAILABLE
// once the switch is closed or when its process does not answer.
type TrafficControl interface {
	// Pause holds the service's new requests until Resume: each waits at
	// most maxHold, at most maxHeld at once; past either a request gets a
	// 503 with Retry-After.
	Pause(ctx context.Context, service string, maxHold time.Duration, maxHeld int) error
	// Resume releases the held requests to the active color.
	Resume(ctx context.Context, service string) error
	// Maintenance turns the 503 page with message on ("" is the switch's
	// default text) or off; on again replaces the message.
	Maintenance(ctx context.Context, service string, on bool, message string) error
	// Status reports the service's pause, maintenance and requests.
	Status(ctx context.Context, service string) (TrafficStatus, error)
}

// TrafficReader reports what a color's replicas recently answered, for
// the traffic rule of bake and the watchdog (TrafficRule). trafficswitch
// implements it; in reload mode (nginx sends requests straight to the
// containers) nothing counts them, there is none and the rule is off.
type TrafficReader interface {
	// Window returns how many requests the color's current replicas
	// answered over the last Span, and how many of those were 5xx. A color
	// whose addresses changed counts from that change on, so a new
	// deployment is judged on its own traffic. Both are 0 for a service or
	// color the reader does not know. It must be cheap; the switch may run
	// in another process, so it is bounded by ctx and fails (EUNAVAILABLE)
	// when that process does not answer: a failed read is no reading, and
	// must never be taken for a quiet or a failing color.
	Window(ctx context.Context, service string, color Color) (requests, errors int, err error)
	// Span is how far back Window counts.
	Span() time.Duration
}

// Prober checks one replica's health endpoint once.
type Prober interface {
	// Probe returns nil when addr answers spec's path with the expected
	// status and body within spec.Timeout, and an error saying what was
	// wrong otherwise.
	Probe(ctx context.Context, addr string, spec HealthSpec) error
}

// Store keeps services' state and deployments. Reads of a missing record
// return an error wrapping ErrNotFound.
type Store interface {
	GetService(ctx context.Context, name string) (ServiceState, error)
	PutService(ctx context.Context, s ServiceState) error
	// PutDeployment creates or replaces a deployment record.
	PutDeployment(ctx context.Context, d Deployment) error
	// SaveSwitch records a new service state and its deployment in one
	// transaction, so a crash cannot leave one without the other.
	SaveSwitch(ctx context.Context, s ServiceState, d Deployment) error
	GetDeployment(ctx context.Context, id string) (Deployment, error)
	// ListDeployments returns deployments newest first; service "" means
	// all services.
	ListDeployments(ctx context.Context, service string, limit int) ([]Deployment, error)
	// UnfinishedDeployments returns every deployment still queued or
	// running, oldest first: after a crash these were interrupted.
	UnfinishedDeployments(ctx context.Context) ([]Deployment, error)
	// AppendAudit adds an entry to the audit trail, assigning its ID (the
	// trail's order).
	AppendAudit(ctx context.Context, e AuditEntry) error
	// ListAudit returns up to limit entries older than the entry whose ID
	// is before ("" for the newest), newest first.
	ListAudit(ctx context.Context, before string, limit int) ([]AuditEntry, error)
	// PruneAudit deletes the entries older than olderThan (when not zero)
	// and the oldest beyond the newest keep (when keep > 0), and says how
	// many it deleted.
	PruneAudit(ctx context.Context, olderThan time.Time, keep int) (int, error)
	// GetDelivery returns the deployment a webhook delivery started;
	// ErrNotFound when the delivery is new.
	GetDelivery(ctx context.Context, key string) (string, error)
	// PutDelivery remembers which deployment a delivery started.
	PutDelivery(ctx context.Context, key, deploymentID string) error
	// GetTraffic returns a service's stored pause and maintenance;
	// ErrNotFound when none was ever recorded.
	GetTraffic(ctx context.Context, service string) (TrafficState, error)
	// PutTraffic creates or replaces the record of s.Service.
	PutTraffic(ctx context.Context, s TrafficState) error
	// Ping reports whether the store is open and readable.
	Ping(ctx context.Context) error
}

// Notifier tells people about deploys and repairs. Notify must not block:
// implementations queue and deliver in the background, and a failed
// delivery never affects a deploy.
type Notifier interface {
	Notify(n Notification)
}

// Notification kinds.
const (
	NotifyDeployStarted   = "deploy_started"
	NotifyDeploySucceeded = "deploy_succeeded"
	NotifyDeployFailed    = "deploy_failed"
	// NotifyDeployInterrupted: deployd stopped (SIGTERM, a crash) before
	// the deployment ended; the deployment did not fail on its own.
	NotifyDeployInterrupted = "deploy_interrupted"
	NotifyRolledBack        = "rolled_back"
	NotifyServiceUnhealthy  = "service_unhealthy"
	NotifyRepair            = "repair"
)

// Notification is one event worth telling people about.
type Notification struct {
	Kind       string
	Service    string
	Deployment string
	Image      string
	Color      Color
	Actor      string
	// OnBehalfOf is the deployment's claimed requester (Trigger.OnBehalfOf)
	// when Actor is the deployment's own actor.
	OnBehalfOf string
	Message    string
	Time       time.Time
}

// Observer records what the controller does, for metrics. Its methods must
// be cheap and must not block.
type Observer interface {
	// DeploymentFinished is called once per deployment with its final
	// record (status, kind, steps with their times).
	DeploymentFinished(d Deployment)
	// Switched records how long a traffic switch took.
	Switched(service string, kind Kind, took time.Duration)
	// HealthCheckFailed counts a failed probe of a replica.
	HealthCheckFailed(service string)
	// ServiceState publishes the active color and whether a standby is
	// available, and whether the watchdog sees the active color healthy.
	ServiceState(service string, active Color, standbyAvailable, healthy bool)
	// Repaired counts a reconciler repair of the given kind.
	Repaired(service, kind string)
	// Unaudited counts a request refused before anyone was known to have
	// sent it (no valid credentials, or rate limited): such requests are
	// counted, not recorded. action is the audited route's action.
	Unaudited(action string, status int)
}

// Hook is called at named points of a deploy (see the Point constants).
// It exists so that fault-injection tests can stop the process at an exact
// step; production wiring leaves it nil.
type Hook func(point string)

// Points at which the Hook is called.
const (
	PointAfterStart   = "after-start"   // replicas started, before health checks
	PointDuringHealth = "during-health" // after the first health probe round
	PointBeforeSave   = "before-save"   // nginx switched, new state not yet recorded
)

// ContainerFeed reports, as they happen, that a container of deployd's
// services changed: created, started, died, removed, or its health
// changed. dockerx implements it on the Engine's event stream.
type ContainerFeed interface {
	// FollowContainers calls fn with the service of each replica (one-offs
	// excepted) that changed since since, the changes between since and
	// the call included (the engine replays them), until ctx ends or the
	// stream breaks. It blocks; it returns ctx's error after ctx ends,
	// otherwise the stream's error wrapping ErrUnavailable when the engine
	// went away. fn must not block.
	FollowContainers(ctx context.Context, since time.Time, fn func(service string)) error
}

// StateMirror is a Runtime that keeps a copy of each service's state in
// the cluster itself, so that a deployd started on another manager with
// an empty store finds which set serves and which is the standby. swarmx
// implements it with labels on the set services. The store stays the
// record deployd acts on; the mirror is what rebuilds it.
type StateMirror interface {
	// MirrorState records st's active and standby (color, image,
	// deployment) in the cluster, replacing what was recorded for
	// st.Name. It does not restart or move anything. A set that st names
	// but the cluster lacks wraps ErrNotFound (the others are recorded
	// all the same); an unreachable cluster wraps ErrUnavailable.
	MirrorState(ctx context.Context, st ServiceState) error
	// MirroredState returns what MirrorState last recorded for service;
	// false when the cluster holds nothing for it. Errors as MirrorState.
	MirroredState(ctx context.Context, service string) (ServiceState, bool, error)
}
