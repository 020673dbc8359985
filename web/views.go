package web

import (
	"fmt"
	"strings"
	"time"

	"github.com/deployd/deployd/pkg/auth"
	"github.com/deployd/deployd/pkg/controller"
)

// The views below are what the templates render: the controller's values
// plus the words and permissions the page derives from them. Buttons appear
// only for roles the API would let through; the API checks again anyway.

// cardView is one service card.
type cardView struct {
	controller.ServiceView
	Now time.Time

	Commit    string
	CommitURL string
	Actor     string
	// OnBehalfOf is the deploy's unverified claim, shown marked as such.
	OnBehalfOf string
	DeployedAt time.Time
	// StandbyState is controller.StandbyWarm, StandbyCold or StandbyNone.
	StandbyState string
	// StandbyBeside says what else runs in the standby's color, so the new
	// containers of a deploy are never taken for the standby: "beside it:
	// 1 new container of the deploy of app:v3, not the standby".
	StandbyBeside string
	Tables        []colorTable
	// ShowNodes adds a Node column to both tables when any container of
	// the service has a node, so the columns line up and a single host
	// gets no empty column.
	ShowNodes bool

	// State is the card's one sentence of state: "LIVE green · app:v2
	// @9f8e7d6a1b2c · since 17:36 UTC · rolled back by oncall-admin".
	State string
	// Failure is the last deploy's failure, kept on the card until a
	// deploy of the service succeeds; nil when there is none.
	Failure *failureView

	// Live is the running (or queued) deployment, if any.
	Live          *controller.Deployment
	CanCancel     bool
	CancelConfirm string

	CanRollback     bool
	RollbackConfirm string
	// RollbackSchema, when set, says what schema change a rollback
	// crosses; RollbackSchemaAck, set when the change is breaking, is what
	// the operator must tick before the dialog's yes button works: "I
	// understand: app:v1 ran against the old schema".
	RollbackSchema    string
	RollbackSchemaAck string
	// RollbackTarget is where a rollback goes: "BLUE: app:v1 @3f2c1e9a7b5d".
	RollbackTarget string
	// StandbyCommit is the standby's commit; CompareURL links the changes
	// from it to the active commit when a repository is configured.
	StandbyCommit string
	CompareURL    string
	// RollbackBusy, when set, says why the rollback button is disabled:
	// "busy: deploy of app:v3 running, started 40 s ago by ci".
	RollbackBusy string
	// RollbackNone, when set, says why there is nothing to roll back to
	// (StandbyState "none"): the button is shown disabled with it instead
	// of opening a dialog that could promise nothing.
	RollbackNone string

	// HeldText says how many requests a pause holds ("3 requests held").
	HeldText string
	// CanTraffic shows the pause and maintenance buttons: operators, in
	// switch mode.
	CanTraffic            bool
	PauseConfirm          string
	ResumeConfirm         string
	MaintenanceOnConfirm  string
	MaintenanceOffConfirm string
}

// failureView is a failed deploy as the card states it: "last deploy
// failed: <reason>, <when>, by <who>".
type failureView struct {
	ID     string
	Image  string
	Reason string
	At     time.Time
	Actor  string
}

func newFailureView(d *controller.Deployment) *failureView {
	if d == nil {
		return nil
	}
	f := &failureView{ID: d.ID, Image: d.Image, Reason: d.Error, At: d.CreatedAt, Actor: d.Trigger.Actor}
	if d.FinishedAt != nil {
		f.At = *d.FinishedAt
	}
	if f.Reason == "" {
		f.Reason = d.Status.String()
	}
	return f
}

// colorTable is one color's containers.
type colorTable struct {
	Color      controller.Color
	Role       string // "active", "standby" or ""
	Image      string
	Containers []controller.Container
	// Others are the color's containers outside its set: a running
	// deploy's new replicas beside the standby's, or a failed one's.
	Others []controller.Container
	// Nodes sums up the table's rows per node, set only when the
	// service's replicas span more than one node.
	Nodes []nodeCount
}

func newCardView(v controller.ServiceView, role auth.Role, now time.Time) cardView {
	cv := cardView{ServiceView: v, Now: now, StandbyState: v.Standby(), Failure: newFailureView(v.LastFailure)}
	cv.State = stateSentence(v, now)
	cv.StandbyBeside = standbyBeside(v)
	if d := v.StandbyDeployment; d != nil {
		cv.StandbyCommit = d.Trigger.Commit
	}
	cv.RollbackTarget = colorLabel(v.StandbyColor)
	if v.StandbyImage != "" {
		cv.RollbackTarget += ": " + v.StandbyImage
	}
	if cv.StandbyCommit != "" {
		cv.RollbackTarget += " @" + shortCommit(cv.StandbyCommit)
	}
	if d := v.ActiveDeployment; d != nil {
		cv.Commit = d.Trigger.Commit
		cv.Actor = d.Trigger.Actor
		cv.OnBehalfOf = d.Trigger.OnBehalfOf
		cv.DeployedAt = d.CreatedAt
		cv.CommitURL = commitURL(v.RepositoryURL, cv.Commit)
	}
	cv.CompareURL = compareURL(v.RepositoryURL, cv.StandbyCommit, cv.Commit)
	nodes := serviceNodes(v)
	cv.ShowNodes = nodes > 0
	for _, col := range []controller.Color{controller.Blue, controller.Green} {
		t := colorTable{Color: col, Image: v.Colors[col].Image, Containers: v.Colors[col].Containers, Others: v.Colors[col].Others}
		if nodes > 1 {
			t.Nodes = perNode(t.Containers, t.Others)
		}
		switch col {
		case v.ActiveColor:
			t.Role = "active"
		case v.StandbyColor:
			t.Role = "standby"
		}
		cv.Tables = append(cv.Tables, t)
	}
	if d := v.Deployment; d != nil && !d.Status.Done() {
		cv.Live = d
		cv.CanCancel = role >= auth.RoleOperator
		cv.CancelConfirm = cancelConfirm(*d, v.ActiveColor)
	}
	if role >= auth.RoleOperator && cv.StandbyState == controller.StandbyNone {
		cv.RollbackNone = noStandbyText(v)
	}
	if role >= auth.RoleOperator && cv.StandbyState != controller.StandbyNone {
		cv.CanRollback = true
		cv.RollbackConfirm = rollbackConfirm(v)
		if ch := v.RollbackSchema; ch != nil {
			cv.RollbackSchema = ch.Message
			if ch.Breaking {
				cv.RollbackSchemaAck = fmt.Sprintf("I understand: %s ran against the old schema", v.StandbyImage)
			}
		}
		if cv.Live != nil {
			cv.RollbackBusy = busyText(*cv.Live, now)
		}
	}
	if t := v.Traffic; t != nil {
		cv.HeldText = heldText(t.Held)
		if role >= auth.RoleOperator {
			cv.CanTraffic = true
			cv.PauseConfirm = fmt.Sprintf("Pause %s? New requests wait until you resume, each for a limited time and in a limited number; past either they get 503 with Retry-After. Requests already running finish.", v.Name)
			cv.ResumeConfirm = fmt.Sprintf("Resume %s? Requests held now (%d) and new ones go on to %s at once.", v.Name, t.Held, activeName(v))
			cv.MaintenanceOnConfirm = fmt.Sprintf("Put %s in maintenance? Every request gets 503 with the message below until you end it.", v.Name)
			cv.MaintenanceOffConfirm = fmt.Sprintf("End maintenance of %s? Requests go on to %s again.", v.Name, activeName(v))
		}
	}
	return cv
}

// stateSentence says in one line what serves, since when, and who made it
// so. A rollback says so, and names who rolled back, not who deployed.
func stateSentence(v controller.ServiceView, now time.Time) string {
	if !v.ActiveColor.Valid() {
		return "NOT DEPLOYED · requests get the placeholder"
	}
	word := "LIVE"
	if t := v.Traffic; t != nil && t.Maintenance {
		word = "MAINTENANCE"
	} else if t != nil && t.Paused {
		word = "PAUSED"
	}
	parts := []string{word + " " + colorKey(v.ActiveColor)}
	what := v.ActiveImage
	if d := v.ActiveDeployment; d != nil && d.Trigger.Commit != "" {
		what += " @" + shortCommit(d.Trigger.Commit)
	}
	parts = append(parts, what)
	if sw := v.LastSwitch; sw != nil {
		at := sw.CreatedAt
		if sw.FinishedAt != nil {
			at = *sw.FinishedAt
		}
		parts = append(parts, "since "+sinceClock(now, at))
		switch {
		case sw.Kind == controller.KindRollback:
			parts = append(parts, "rolled back by "+actorOf(*sw))
		case sw.Status == controller.StatusRolledBack:
			parts = append(parts, fmt.Sprintf("%s failed its bake and was rolled back automatically", sw.Image))
		default:
			parts = append(parts, "deployed by "+actorOf(*sw))
		}
	}
	return strings.Join(parts, " · ")
}

func standbyBeside(v controller.ServiceView) string {
	if !v.StandbyColor.Valid() {
		return ""
	}
	n := len(v.Colors[v.StandbyColor].Others)
	if n == 0 {
		return ""
	}
	noun := "containers"
	if n == 1 {
		noun = "container"
	}
	if d := v.Deployment; d != nil && !d.Status.Done() {
		return fmt.Sprintf("beside it: %d new %s of the %s of %s, not the standby", n, noun, d.Kind, d.Image)
	}
	return fmt.Sprintf("beside it: %d %s left by another deployment, not the standby", n, noun)
}

// sinceClock is t's UTC clock time, with its date when t is not today.
func sinceClock(now, t time.Time) string {
	if now.UTC().Format(time.DateOnly) == t.UTC().Format(time.DateOnly) {
		return clockUTC(t)
	}
	return t.UTC().Format("Jan 2 15:04 UTC")
}

func actorOf(d controller.Deployment) string {
	if d.Trigger.Actor == "" {
		return "nobody recorded"
	}
	return d.Trigger.Actor
}

// activeName is where requests go: "green", or "the replicas" before
// the first deploy.
func activeName(v controller.ServiceView) string {
	if v.ActiveColor.Valid() {
		return colorKey(v.ActiveColor)
	}
	return "the replicas"
}

func heldText(n int) string {
	switch n {
	case 0:
		return "no requests held"
	case 1:
		return "1 request held"
	}
	return fmt.Sprintf("%d requests held", n)
}

// noStandbyText says why a service without a standby cannot roll back.
func noStandbyText(v controller.ServiceView) string {
	if !v.ActiveColor.Valid() {
		return "no standby to roll back to: nothing is deployed yet"
	}
	return fmt.Sprintf("no standby to roll back to: %s (%s) is the only color deployed so far", colorLabel(v.ActiveColor), v.ActiveImage)
}

// rollbackConfirm says exactly what a rollback will do, and how long it
// will take: a warm standby only needs a probe and a switch; a cold one
// is started and checked first, which took as long as the start and
// health steps of the deploy that put it there.
func rollbackConfirm(v controller.ServiceView) string {
	how := "is warm: traffic moves in about a second."
	if !v.StandbyWarm {
		how = "is cold: its containers are started and checked first, which takes longer."
		if est, ok := coldEstimate(v.StandbyDeployment); ok {
			how = fmt.Sprintf("is cold: its containers are started and checked first, about %s (as when it was deployed).", duration(est))
		}
	}
	return fmt.Sprintf("Switch %s from %s (%s) back to %s (%s)? %s %s",
		v.Name, colorKey(v.ActiveColor), v.ActiveImage, colorKey(v.StandbyColor), v.StandbyImage,
		colorName(v.StandbyColor), how)
}

// coldEstimate is how long d's start and health steps took; false when d
// did not record both.
func coldEstimate(d *controller.Deployment) (time.Duration, bool) {
	if d == nil {
		return 0, false
	}
	var total time.Duration
	seen := 0
	for _, s := range d.Steps {
		if (s.Name == controller.StepStart || s.Name == controller.StepHealth) && s.FinishedAt != nil {
			total += s.FinishedAt.Sub(s.StartedAt)
			seen++
		}
	}
	return total, seen == 2
}

// busyText says why a rollback cannot start now.
func busyText(d controller.Deployment, now time.Time) string {
	by := ""
	if d.Trigger.Actor != "" {
		by = " by " + d.Trigger.Actor
	}
	return fmt.Sprintf("busy: %s of %s %s, started %s ago%s", d.Kind, d.Image, d.Status, uptime(now, d.CreatedAt), by)
}

func cancelConfirm(d controller.Deployment, active controller.Color) string {
	stays := "Traffic stays where it is."
	if active.Valid() {
		stays = fmt.Sprintf("Traffic stays on %s.", colorKey(active))
	}
	return fmt.Sprintf("Cancel the running %s of %s (%s to %s)? %s",
		d.Kind, d.Service, d.Image, colorKey(d.ToColor), stays)
}

func redeployConfirm(d controller.Deployment) string {
	return fmt.Sprintf("Deploy %s to %s again? It starts on the standby color, and traffic switches only once it is healthy.",
		d.Image, d.Service)
}

// historyView is the history table.
type historyView struct {
	Now  time.Time
	Rows []historyRow
}

type historyRow struct {
	controller.Deployment
	Duration        string
	CanRedeploy     bool
	RedeployConfirm string
	// RedeployLabel is "Retry" for a deploy that did not stick, else
	// "Redeploy".
	RedeployLabel string
	// DetailsName and RedeployName are the row's link and button as a
	// screen reader names them: which deployment, of what, to where, and
	// when, since the same image may be in the history twice.
	DetailsName  string
	RedeployName string
}

func newHistoryView(ds []controller.Deployment, role auth.Role, now time.Time) historyView {
	h := historyView{Now: now}
	for _, d := range ds {
		r := historyRow{Deployment: d, Duration: deploymentDuration(d, now)}
		started := clockExact(now, d.CreatedAt)
		r.DetailsName = fmt.Sprintf("Details of %s %s of %s, started %s", d.Kind, d.Image, d.Service, started)
		if role >= auth.RoleDeployer && d.Image != "" && d.Status.Done() {
			r.CanRedeploy = true
			r.RedeployConfirm = redeployConfirm(d)
			r.RedeployLabel = "Redeploy"
			r.RedeployName = fmt.Sprintf("Redeploy %s to %s, as deployed %s", d.Image, d.Service, started)
			if d.Kind == controller.KindDeploy && d.Status != controller.StatusSucceeded {
				r.RedeployLabel = "Retry"
				r.RedeployName = fmt.Sprintf("Retry %s %s of %s, started %s", d.Kind, d.Image, d.Service, started)
				r.RedeployConfirm = fmt.Sprintf("Retry the %s deploy of %s to %s? It starts on the standby color, and traffic switches only once it is healthy.",
					d.Status, d.Image, d.Service)
			}
		}
		h.Rows = append(h.Rows, r)
	}
	return h
}

// deploymentDuration is how long d took, or has taken so far.
func deploymentDuration(d controller.Deployment, now time.Time) string {
	end := now
	if d.FinishedAt != nil {
		end = *d.FinishedAt
	} else if d.Status.Done() {
		return "–"
	}
	return duration(end.Sub(d.CreatedAt))
}

// stepView is one step of a deployment as the step list shows it.
type stepView struct {
	Name       string
	Status     string
	Message    string
	StartedAt  time.Time
	FinishedAt time.Time
	Finished   bool
	Elapsed    string
}

func newStepView(now time.Time, s controller.Step) stepView {
	v := stepView{Name: s.Name, Status: s.Status.String(), Message: s.Message, StartedAt: s.StartedAt}
	end := now
	if s.FinishedAt != nil {
		v.Finished = true
		v.FinishedAt = *s.FinishedAt
		end = *s.FinishedAt
	}
	v.Elapsed = duration(end.Sub(s.StartedAt))
	return v
}

// deploymentView is the deployment page.
type deploymentView struct {
	controller.Deployment
	// Traffic says where traffic went: "GREEN → BLUE" only when it moved.
	Traffic       string
	CommitURL     string
	Duration      string
	Running       bool
	StepViews     []stepView
	LogLines      []string
	CanCancel     bool
	CancelConfirm string
}

func newDeploymentView(d controller.Deployment, repoURL string, role auth.Role, now time.Time) deploymentView {
	v := deploymentView{
		Deployment: d,
		CommitURL:  commitURL(repoURL, d.Trigger.Commit),
		Duration:   deploymentDuration(d, now),
		Running:    !d.Status.Done(),
		Traffic:    trafficText(d),
	}
	for _, s := range d.Steps {
		v.StepViews = append(v.StepViews, newStepView(now, s))
	}
	if v.Running {
		// The script streams the whole log, history first; rendering it
		// here too would show every line twice.
		v.CanCancel = role >= auth.RoleOperator
		v.CancelConfirm = cancelConfirm(d, d.FromColor)
		return v
	}
	v.LogLines = recordLog(d)
	return v
}

// trafficText draws an arrow only for traffic that moved: a deployment
// that failed, was cancelled or interrupted left it where it was.
func trafficText(d controller.Deployment) string {
	from, to := colorLabel(d.FromColor), colorLabel(d.ToColor)
	switch d.Status {
	case controller.StatusSucceeded:
		return from + " → " + to
	case controller.StatusRolledBack:
		return fmt.Sprintf("%s → %s → %s (moved, failed its bake, moved back)", from, to, from)
	case controller.StatusQueued, controller.StatusRunning:
		if !d.FromColor.Valid() {
			from = "the placeholder"
		}
		return fmt.Sprintf("on %s; %s is the target, traffic moves once it is healthy", from, to)
	}
	if !d.FromColor.Valid() {
		return fmt.Sprintf("did not move (%s was the target)", to)
	}
	return fmt.Sprintf("stayed on %s (%s was the target)", from, to)
}

// recordLog rebuilds a finished deployment's log from its record: each
// step's outcome and output, then the final status and error.
func recordLog(d controller.Deployment) []string {
	var lines []string
	for _, s := range d.Steps {
		line := fmt.Sprintf("[%s] %s", s.Name, s.Status)
		if s.Message != "" {
			line += ": " + s.Message
		}
		lines = append(lines, line)
		for _, out := range controller.OutputLines(s.Output) {
			lines = append(lines, fmt.Sprintf("[%s] %s", s.Name, out))
		}
	}
	final := d.Status.String()
	if d.Error != "" {
		final += ": " + d.Error
	}
	return append(lines, final)
}
