package controller

import (
	"strconv"
	"strings"
	"time"
)

// PullPolicy says when the runtime fetches an image from its registry.
type PullPolicy string

const (
	PullAlways  PullPolicy = "always"
	PullMissing PullPolicy = "missing"
	PullNever   PullPolicy = "never"
)

// StandbyMode says what happens to the old color after a switch.
type StandbyMode string

const (
	// StandbyRunning keeps the old color's containers running so a rollback
	// is only a health check and an nginx switch.
	StandbyRunning StandbyMode = "running"
	// StandbyStopped stops (but keeps) the old color's containers.
	StandbyStopped StandbyMode = "stopped"
)

// DeployStandbyMode says what a deploy does with the standby it replaces
// while the new containers start.
type DeployStandbyMode string

const (
	// DeployStandbyKeep keeps the old standby running beside the new
	// containers until they have taken traffic, so a failed, cancelled or
	// interrupted deploy leaves it exactly as it was. For a moment three
	// sets of replicas run: active, standby and new.
	DeployStandbyKeep DeployStandbyMode = "keep"
	// DeployStandbyRemove removes the old standby before the new
	// containers start, for hosts that cannot run three sets at once; a
	// deploy that then fails leaves no warm standby.
	DeployStandbyRemove DeployStandbyMode = "remove"
)

// HealthSpec says how a replica is judged healthy.
type HealthSpec struct {
	Path             string
	Interval         time.Duration
	Timeout          time.Duration
	HealthyThreshold int
	StartTimeout     time.Duration
	// ExpectStatus is the exact HTTP status wanted; 0 accepts any 2xx.
	ExpectStatus int
	// ExpectBody, when set, must appear in the response body.
	ExpectBody string
}

// PreDeploySpec is the one-off command run in the new image before any
// replica starts (database migrations, typically).
type PreDeploySpec struct {
	Command []string
	Timeout time.Duration
}

// BackupSpec is the backup made before the pre-deploy command runs: a
// one-off of Image runs Command with the backup file's path in
// DEPLOYD_BACKUP_FILE, on a named volume that keeps the newest Keep
// files of the service.
type BackupSpec struct {
	// Image is a full reference (with its tag) of an image holding the
	// dump tool and sh (sh prunes old files).
	Image   string
	Command []string
	// Env and EnvFile are the one-off's environment (database address,
	// user, password), read at each deploy like the service's own.
	Env     map[string]string
	EnvFile string
	// Volume is the named volume mounted at BackupDir.
	Volume string
	// Keep is how many of the service's backup files the volume keeps.
	Keep int
	// Timeout bounds the whole step: the dump, its check and the prune.
	Timeout time.Duration
}

// SchemaSpec says how to read a service's schema state: Command runs in a
// one-off of a deployment's image, like the pre-deploy command, and prints
// the migrations (see ParseSchemaState).
type SchemaSpec struct {
	Command []string
	Timeout time.Duration
	// Compatible, when set, is a regular expression (unanchored) matching
	// the names of expand-only migrations, which old code runs against. A
	// rollback across any other migration needs a confirmation.
	Compatible string
}

// ServiceSpec is a service's configuration, validated by the caller.
type ServiceSpec struct {
	Name string
	// Image is the repository that every deployed image must belong to,
	// e.g. "registry.example.com/team/web" or "demoapp".
	Image    string
	Replicas int
	Port     int
	Env      map[string]string
	// EnvFile is read at each deploy, so edits apply to the next one.
	EnvFile       string
	Network       string
	RestartPolicy string // as ParseRestartPolicy reads it
	Pull          PullPolicy
	Health        HealthSpec
	PreDeploy     PreDeploySpec
	// Backup, when set, makes a backup right before PreDeploy runs.
	Backup  *BackupSpec
	Drain   time.Duration
	Standby StandbyMode
	// StandbyDuringDeploy says whether a deploy keeps the standby it
	// replaces until the new color has taken traffic (the default) or
	// removes it first.
	StandbyDuringDeploy DeployStandbyMode
	// RepositoryURL is the http(s) address of the source repository; the
	// status page links commits to <RepositoryURL>/commit/<sha>.
	RepositoryURL string
	// Bake, when positive, is how long a new color is watched after the
	// switch; a failure then switches back to the previous color.
	Bake time.Duration
	// BakeTraffic fails the bake at once when the new color's share of
	// 5xx answers goes above its limit.
	BakeTraffic TrafficRule
	// AutoRollback lets the watchdog roll back to a healthy warm standby
	// when the active color stays unhealthy.
	AutoRollback bool
	// AllowedRefs, when not empty, lists the git refs a webhook deploy may
	// come from (e.g. refs/heads/main).
	AllowedRefs []string
	// AllowedTags, when set, is a regular expression every deployed tag
	// must match in full (see AllowedTag); references with a digest pass.
	AllowedTags string
	// Limits apply to every container of the service, its pre-deploy
	// one-offs included.
	Limits ContainerLimits
	// Schema, when its Command is set, is read before and after the
	// pre-deploy command and guards rollbacks.
	Schema SchemaSpec
	// Runtime is what runs the service's containers: the local Docker
	// engine (RuntimeDocker, the default) or a Swarm (RuntimeSwarm).
	Runtime RuntimeKind
	// Placement says where a cluster runtime (Swarm) may run the replicas;
	// a single-host runtime ignores it.
	Placement Placement
}

// RuntimeKind names a runtime a service may run on.
type RuntimeKind string

const (
	// RuntimeDocker runs replicas as containers of the local engine.
	RuntimeDocker RuntimeKind = "docker"
	// RuntimeSwarm runs each color's replicas as a Swarm service.
	RuntimeSwarm RuntimeKind = "swarm"
)

// Placement is where a cluster runtime schedules a color's replicas, in
// Swarm's own terms, and what each replica reserves on its node.
type Placement struct {
	// Constraints are Swarm placement constraints, e.g. "node.role==worker"
	// or "node.labels.zone==a"; every one must hold.
	Constraints []string
	// Spread lists node labels to spread the replicas over evenly
	// ("node.labels.zone"), in order of preference.
	Spread []string
	// Reservations are what a node must have free for each replica.
	Reservations Resources
}

// Resources is an amount of memory and CPU.
type Resources struct {
	Memory   int64 // bytes
	NanoCPUs int64 // billionths of a CPU
}

// ContainerLimits bound what a container may use and do. Zero values mean
// no limit and the image's own user; NoNewPrivileges false leaves setuid
// binaries working.
type ContainerLimits struct {
	// Memory is the memory limit in bytes.
	Memory int64
	// NanoCPUs is the CPU quota in billionths of a CPU.
	NanoCPUs int64
	// PidsLimit bounds the container's processes and threads.
	PidsLimit int64
	// CapDrop and CapAdd change the engine's default capability set
	// ("ALL" or names such as NET_RAW).
	CapDrop, CapAdd []string
	// NoNewPrivileges stops the container's processes from gaining
	// privileges through setuid binaries or file capabilities.
	NoNewPrivileges bool
	// ReadOnly mounts the root filesystem read-only, with a private tmpfs
	// on /tmp.
	ReadOnly bool
	// User is the user (and group) the container's process runs as:
	// "name", "uid" or "uid:gid".
	User string
}

// ContainerSpec is everything the runtime needs to start one replica.
type ContainerSpec struct {
	Name          string
	Image         string
	Service       string
	Color         Color
	Deployment    string
	Port          int
	Env           []string // KEY=VALUE
	Network       string
	RestartPolicy string // as ParseRestartPolicy reads it; "" means no
	Limits        ContainerLimits
	// Replicas is how many replicas the set this one belongs to has (the
	// color's of Deployment), and Placement where they may run: a
	// cluster runtime runs the set as one scheduled unit.
	Replicas  int
	Placement Placement
}

// RestartPolicy is what the runtime does when a replica's process exits.
type RestartPolicy struct {
	// Name is no, always, unless-stopped or on-failure.
	Name string
	// MaxRetries bounds on-failure's restarts; 0 means no bound.
	MaxRetries int
}

// maxRestartRetries keeps on-failure's count to six digits.
const maxRestartRetries = 999999

// ParseRestartPolicy reads a restart policy as docker run --restart takes
// it: no, always, unless-stopped or on-failure[:N] with N from 1 to
// 999999. It is the one rule for the config and the runtime. on-failure:0
// is refused: Docker reads a count of 0 as "no limit", the opposite of what
// it says; plain on-failure means that. Errors are EINVALID.
func ParseRestartPolicy(s string) (RestartPolicy, error) {
	name, count, hasCount := strings.Cut(s, ":")
	switch name {
	case "no", "always", "unless-stopped", "on-failure":
	default:
		return RestartPolicy{}, Errorf(EINVALID, "unknown restart policy %q (want no, always, unless-stopped or on-failure[:N])", s)
	}
	p := RestartPolicy{Name: name}
	if !hasCount {
		return p, nil
	}
	n, err := strconv.Atoi(count)
	if name != "on-failure" || err != nil || n < 1 || n > maxRestartRetries || count != strconv.Itoa(n) {
		return RestartPolicy{}, Errorf(EINVALID,
			"invalid restart policy %q: only on-failure takes a retry count, from 1 to %d", s, maxRestartRetries)
	}
	p.MaxRetries = n
	return p, nil
}

// OneOffSpec describes a short-lived container, such as the pre-deploy
// command, whose output and exit code are wanted.
type OneOffSpec struct {
	Name       string
	Image      string
	Service    string
	Deployment string
	Command    []string
	Env        []string
	Network    string
	Limits     ContainerLimits
	// Mounts are named volumes mounted into the container; the runtime
	// creates a missing one.
	Mounts []VolumeMount
}

// VolumeMount mounts the named volume Volume at Target, read-write.
type VolumeMount struct {
	Volume string
	Target string
}

// OneOffResult is how a one-off container ended.
type OneOffResult struct {
	ExitCode int
	// Output is the tail of stdout and stderr, interleaved.
	Output string
}

// WatchSpec is how the watchdog judges an active color after its deploy.
type WatchSpec struct {
	// UnhealthyThreshold is how many consecutive failed probe rounds make
	// a color unhealthy.
	UnhealthyThreshold int
	// Interval is the time between probe rounds during bake (the
	// scheduler sets it for the regular watchdog runs).
	Interval time.Duration
	// Traffic fails a watchdog round of every service's active color whose
	// share of 5xx answers is above its limit.
	Traffic TrafficRule
}

// TrafficRule judges a color by the requests it answered recently, as a
// TrafficReader counts them: health endpoints often say "ok" while real
// requests fail. It needs a TrafficReader; without one it is off.
type TrafficRule struct {
	// MaxErrorRate is the largest share of 5xx answers (0 < x <= 1) a color
	// may give; 0 turns the rule off. A share exactly at the limit passes.
	MaxErrorRate float64
	// MinRequests is how many requests the window must hold before the
	// share counts, so that two failures of three requests do not decide;
	// less than 1 means 1.
	MinRequests int
}

// On reports whether the rule judges anything.
func (r TrafficRule) On() bool { return r.MaxErrorRate > 0 }

// RetentionSpec bounds what old images and stopped containers are kept,
// and how much of the audit trail.
type RetentionSpec struct {
	// Images is how many of a service's images to keep besides the active
	// and standby ones.
	Images int
	// AuditMaxAge drops audit entries older than this; 0 keeps them.
	AuditMaxAge time.Duration
	// AuditMaxEntries drops the oldest audit entries beyond this many; 0
	// keeps them.
	AuditMaxEntries int
}

// ReplicaEnv is what every replica and one-off is told about itself,
// after the service's own environment, whatever runs it: its service, its
// color (none for a one-off) and the deployment that created it.
func ReplicaEnv(service string, color Color, deployment string) []string {
	env := []string{"DEPLOYD_SERVICE=" + service}
	if color != NoColor {
		env = append(env, "DEPLOYD_COLOR="+string(color))
	}
	return append(env, "DEPLOYD_DEPLOYMENT="+deployment)
}
