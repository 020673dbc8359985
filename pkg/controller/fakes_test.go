package controller_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

// The fakes below keep everything in memory so the state machine can be
// driven through its failure paths quickly and deterministically. Every fake
// is safe for concurrent use: the controller calls them from its deploy
// goroutines while tests inspect them.

var (
	_ controller.Runtime = (*fakeRuntime)(nil)
	_ controller.Router  = (*fakeRouter)(nil)
	_ controller.Prober  = (*fakeProber)(nil)
	_ controller.Store   = (*memStore)(nil)
)

// fakeContainer is a container with what Docker would keep as labels and
// config.
type fakeContainer struct {
	controller.Container
	Spec        controller.ContainerSpec
	inspections int
}

// fakeRuntime is an in-memory controller.Runtime.
type fakeRuntime struct {
	mu         sync.Mutex
	images     map[string]bool
	containers map[string]*fakeContainer // by ID
	nextID     int
	nextAddr   int
	calls      []string

	// startFailAt makes the next start of replica number startFailAt
	// (see failStartAt) fail after creating the container, as Docker does
	// when create succeeds and start does not. Replicas start in parallel,
	// so the replica is named, not the call's position.
	startFailAt int
	// startHangsAt makes the next start of that replica number create it
	// and then wait until its context ends, as a cluster's runtime waits for
	// a task that never runs.
	startHangsAt int
	// oneOff decides how a one-off container ends; nil means exit 0. As
	// with dockerx, a one-off ended by its context yields no result.
	oneOff func(ctx context.Context, spec controller.OneOffSpec) (controller.OneOffResult, error)
	// oneOffs records every one-off spec run.
	oneOffs []controller.OneOffSpec
	// files are the backup volumes' files by path, with their sizes. A
	// one-off with DEPLOYD_BACKUP_FILE in its environment writes
	// backupSize bytes there, a prune one-off keeps the newest of its
	// service (see backupOneOff); FileSize reads them.
	files      map[string]int64
	backupSize int64
	// onInspect may change a container's state on its n-th inspection
	// (1-based), e.g. to make it exit or restart during the health wait.
	onInspect func(ct *controller.Container, n int)
	// deathCodes are, by replica name without its deployment
	// (byReplica), the exit codes LastExitCode
	// reports for running containers: of the death before their restart,
	// which Docker no longer shows in the container's state.
	deathCodes map[string]int
	// containersErr, when set, fails Containers (an unreachable engine).
	containersErr error
	// pingErr, when set, fails Ping (wrap controller.ErrUnavailable for
	// an unreachable engine).
	pingErr error
	// imageMeta holds the local images by id; every ref in images has one.
	imageMeta map[string]*controller.Image
	// oneOffLeft are one-off containers still present (see addOneOff).
	oneOffLeft []controller.Container
	// removeImageErr, when set, decides whether RemoveImage fails.
	removeImageErr func(id string) error
	// lists counts calls of Containers.
	lists atomic.Int64
}

func newFakeRuntime(images ...string) *fakeRuntime {
	rt := &fakeRuntime{images: map[string]bool{}, containers: map[string]*fakeContainer{},
		imageMeta: map[string]*controller.Image{}, files: map[string]int64{}, backupSize: 2516582}
	// Images given later are newer, as if built one after the other.
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, im := range images {
		rt.addImageLocked("sha256:"+im, base.Add(time.Duration(i)*time.Hour), im)
	}
	return rt
}

// addImage makes a local image with the given id, creation time and tags
// (full references such as "demoapp:v4").
func (rt *fakeRuntime) addImage(id string, created time.Time, tags ...string) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.addImageLocked(id, created, tags...)
}

func (rt *fakeRuntime) addImageLocked(id string, created time.Time, tags ...string) {
	rt.imageMeta[id] = &controller.Image{ID: id, Tags: slices.Clone(tags), Created: created}
	for _, t := range tags {
		rt.images[t] = true
	}
}

// addOneOff leaves a one-off container behind, as a crashed pre-deploy
// run would.
func (rt *fakeRuntime) addOneOff(service, name, deployment string) controller.Container {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.nextID++
	c := controller.Container{ID: fmt.Sprintf("c%03d", rt.nextID), Name: name, Service: service,
		Deployment: deployment, State: "exited"}
	rt.oneOffLeft = append(rt.oneOffLeft, c)
	return c
}

func (rt *fakeRuntime) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.logCall("Ping")
	if rt.pingErr != nil {
		return fmt.Errorf("ping docker: %w", rt.pingErr)
	}
	return nil
}

func (rt *fakeRuntime) OneOffs(ctx context.Context, service string) ([]controller.Container, error) {
	return rt.listOf(ctx, "one-offs", service, func() []controller.Container { return rt.oneOffLeft })
}

// listOf returns the containers of service among those all returns under
// rt.mu, or fails as an unreachable engine would (containersErr) to list
// what.
func (rt *fakeRuntime) listOf(ctx context.Context, what, service string, all func() []controller.Container) ([]controller.Container, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.containersErr != nil {
		return nil, fmt.Errorf("list %s of %s: %w", what, service, rt.containersErr)
	}
	var cs []controller.Container
	for _, c := range all() {
		if c.Service == service {
			cs = append(cs, c)
		}
	}
	return cs, nil
}

func (rt *fakeRuntime) Images(ctx context.Context, repository string) ([]controller.Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	var out []controller.Image
	for _, im := range rt.imageMeta {
		for _, t := range im.Tags {
			if repoOf(t) == repository {
				cp := *im
				cp.Tags = slices.Clone(im.Tags)
				out = append(out, cp)
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

// repoOf strips the tag or digest from a reference.
func repoOf(ref string) string {
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		ref = ref[:i]
	}
	return ref
}

func (rt *fakeRuntime) RemoveImage(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.logCall("RemoveImage %s", id)
	im, ok := rt.imageMeta[id]
	if !ok {
		return fmt.Errorf("remove image %s: %w", id, controller.ErrNotFound)
	}
	if rt.removeImageErr != nil {
		if err := rt.removeImageErr(id); err != nil {
			return fmt.Errorf("remove image %s: %w", id, err)
		}
	}
	for _, c := range rt.containers {
		if slices.Contains(im.Tags, c.Image) || c.Image == id {
			return fmt.Errorf("remove image %s: used by container %s: %w", id, c.Name, controller.ErrConflict)
		}
	}
	delete(rt.imageMeta, id)
	for _, t := range im.Tags {
		delete(rt.images, t)
	}
	return nil
}

// imageIDs returns the ids of the local images, sorted.
func (rt *fakeRuntime) imageIDs() []string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	var ids []string
	for id := range rt.imageMeta {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (rt *fakeRuntime) logCall(format string, args ...any) {
	rt.calls = append(rt.calls, fmt.Sprintf(format, args...))
}

// addr hands out a fresh address; the caller holds rt.mu.
func (rt *fakeRuntime) addr() string {
	rt.nextAddr++
	return fmt.Sprintf("10.0.0.%d:8000", rt.nextAddr)
}

func (rt *fakeRuntime) EnsureImage(ctx context.Context, ref string, policy controller.PullPolicy, progress func(string)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.logCall("EnsureImage %s %s", ref, policy)
	if !rt.images[ref] {
		return fmt.Errorf("pull %s: manifest unknown: %w", ref, controller.ErrNotFound)
	}
	if progress != nil {
		progress("image " + ref + " is present")
	}
	return nil
}

func (rt *fakeRuntime) RunOneOff(ctx context.Context, spec controller.OneOffSpec) (controller.OneOffResult, error) {
	if err := ctx.Err(); err != nil {
		return controller.OneOffResult{}, err
	}
	rt.mu.Lock()
	rt.logCall("RunOneOff %s", spec.Name)
	rt.oneOffs = append(rt.oneOffs, spec)
	fn := rt.oneOff
	rt.mu.Unlock()
	if fn == nil {
		return rt.backupOneOff(spec)
	}
	res, err := fn(ctx, spec)
	if err != nil && ctx.Err() != nil {
		// dockerx kills and removes a one-off whose context ends, and
		// reads neither its exit code nor its output.
		return controller.OneOffResult{}, fmt.Errorf("run %s: %w", spec.Name, ctx.Err())
	}
	return res, err
}

// backupOneOff is how a one-off ends by default: exit 0 with output
// "ok". A backup one-off also writes its file, a prune one-off removes its
// service's oldest backups beyond the kept count, and a clean-up one-off
// removes its file, as the real commands would in the volume.
func (rt *fakeRuntime) backupOneOff(spec controller.OneOffSpec) (controller.OneOffResult, error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for _, kv := range spec.Env {
		if file, ok := strings.CutPrefix(kv, "DEPLOYD_BACKUP_FILE="); ok {
			rt.files[file] = rt.backupSize
		}
	}
	switch {
	case strings.Contains(spec.Name, "-backupprune-"):
		// sh -c script name dir service keep
		dir, service, keep := spec.Command[4], spec.Command[5], spec.Command[6]
		n, err := strconv.Atoi(keep)
		if err != nil {
			return controller.OneOffResult{ExitCode: 2, Output: "bad keep\n"}, nil
		}
		var mine []string
		for f := range rt.files {
			// As the script's glob: <service>-<digit>*.dump.
			rest, ok := strings.CutPrefix(f, dir+"/"+service+"-")
			if ok && rest != "" && rest[0] >= '0' && rest[0] <= '9' && strings.HasSuffix(f, ".dump") {
				mine = append(mine, f)
			}
		}
		sort.Strings(mine)
		for len(mine) > n {
			delete(rt.files, mine[0])
			mine = mine[1:]
		}
		return controller.OneOffResult{Output: fmt.Sprintf("kept %d\n", len(mine))}, nil
	case strings.Contains(spec.Name, "-backupclean-"):
		delete(rt.files, spec.Command[len(spec.Command)-1])
	}
	return controller.OneOffResult{ExitCode: 0, Output: "ok\n"}, nil
}

func (rt *fakeRuntime) FileSize(ctx context.Context, spec controller.OneOffSpec, path string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.logCall("FileSize %s %s", spec.Name, path)
	size, ok := rt.files[path]
	if !ok {
		return 0, fmt.Errorf("stat %s: %w", path, controller.ErrNotFound)
	}
	return size, nil
}

// failStartAt makes the next start of replica n (1-based) fail.
func (rt *fakeRuntime) failStartAt(n int) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.startFailAt = n
}

// hangStartAt makes the next start of replica n (1-based) hang until its
// context ends.
func (rt *fakeRuntime) hangStartAt(n int) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.startHangsAt = n
}

func (rt *fakeRuntime) StartContainer(ctx context.Context, spec controller.ContainerSpec) (controller.Container, error) {
	c, hang, err := rt.startContainer(ctx, spec)
	if err != nil || !hang {
		return c, err
	}
	<-ctx.Done()
	return controller.Container{}, fmt.Errorf("start %s: task still starting: %w", spec.Name, ctx.Err())
}

// startContainer is StartContainer under the lock; hang says the start
// is to wait for ctx's end.
func (rt *fakeRuntime) startContainer(ctx context.Context, spec controller.ContainerSpec) (controller.Container, bool, error) {
	if err := ctx.Err(); err != nil {
		return controller.Container{}, false, err
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.logCall("StartContainer %s", spec.Name)
	if !rt.images[spec.Image] {
		return controller.Container{}, false, fmt.Errorf("create %s: no such image %s: %w", spec.Name, spec.Image, controller.ErrNotFound)
	}
	for _, c := range rt.containers {
		if c.Name == spec.Name {
			return controller.Container{}, false, fmt.Errorf("create %s: name already in use by %s", spec.Name, c.ID)
		}
	}
	rt.nextID++
	c := &fakeContainer{
		Container: controller.Container{
			ID:         fmt.Sprintf("c%03d", rt.nextID),
			Name:       spec.Name,
			Service:    spec.Service,
			Color:      spec.Color,
			Deployment: spec.Deployment,
			Image:      spec.Image,
			State:      "created",
		},
		Spec: spec,
	}
	c.Spec.Env = slices.Clone(spec.Env)
	rt.containers[c.ID] = c
	if rt.startFailAt > 0 && strings.HasSuffix(spec.Name, fmt.Sprintf("-%d", rt.startFailAt)) {
		rt.startFailAt = 0
		return controller.Container{}, false, fmt.Errorf("start %s: port is already allocated", spec.Name)
	}
	if rt.startHangsAt > 0 && strings.HasSuffix(spec.Name, fmt.Sprintf("-%d", rt.startHangsAt)) {
		rt.startHangsAt = 0
		return controller.Container{}, true, nil
	}
	c.State = "running"
	c.Address = rt.addr()
	c.StartedAt = time.Now()
	return c.Container, false, nil
}

func (rt *fakeRuntime) Containers(ctx context.Context, service string) ([]controller.Container, error) {
	rt.lists.Add(1)
	return rt.listOf(ctx, "containers", service, func() []controller.Container {
		// Map order on purpose: Docker promises no order either.
		cs := make([]controller.Container, 0, len(rt.containers))
		for _, c := range rt.containers {
			cs = append(cs, c.Container)
		}
		return cs
	})
}

func (rt *fakeRuntime) InspectContainer(ctx context.Context, id string) (controller.Container, error) {
	if err := ctx.Err(); err != nil {
		return controller.Container{}, err
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	c, ok := rt.containers[id]
	if !ok {
		return controller.Container{}, fmt.Errorf("inspect %s: %w", id, controller.ErrNotFound)
	}
	c.inspections++
	if rt.onInspect != nil {
		rt.onInspect(&c.Container, c.inspections)
	}
	return c.Container, nil
}

// LastExitCode reports a stopped container's ExitCode and a running one's
// deathCodes entry; ErrNotFound when there is none, as when the engine
// has forgotten the death.
func (rt *fakeRuntime) LastExitCode(ctx context.Context, id string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.logCall("LastExitCode %s", id)
	c, ok := rt.containers[id]
	if !ok {
		return 0, fmt.Errorf("last exit code of %s: %w", id, controller.ErrNotFound)
	}
	if !c.Running() {
		return c.ExitCode, nil
	}
	code, ok := rt.deathCodes[byReplica(c.Name)]
	if !ok {
		return 0, fmt.Errorf("last exit code of %s: no death on record: %w", id, controller.ErrNotFound)
	}
	return code, nil
}

func (rt *fakeRuntime) StartExisting(ctx context.Context, id string) (controller.Container, error) {
	if err := ctx.Err(); err != nil {
		return controller.Container{}, err
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.logCall("StartExisting %s", id)
	c, ok := rt.containers[id]
	if !ok {
		return controller.Container{}, fmt.Errorf("start %s: %w", id, controller.ErrNotFound)
	}
	if !c.Running() {
		// A restarted container gets a new published port, so a new
		// address: the controller must use the one returned here.
		c.State = "running"
		c.Address = rt.addr()
		c.StartedAt = time.Now()
	}
	return c.Container, nil
}

func (rt *fakeRuntime) StopContainer(ctx context.Context, id string, timeout time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.logCall("StopContainer %s", id)
	c, ok := rt.containers[id]
	if !ok {
		return fmt.Errorf("stop %s: %w", id, controller.ErrNotFound)
	}
	c.State, c.Address, c.ExitCode = "exited", "", 0
	return nil
}

func (rt *fakeRuntime) RemoveContainer(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.logCall("RemoveContainer %s", id)
	delete(rt.containers, id)
	return nil
}

// add puts a container in place as a previous process would have left it.
func (rt *fakeRuntime) add(service string, color controller.Color, i int, image, deployment string, isRunning bool) controller.Container {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.nextID++
	c := &fakeContainer{Container: controller.Container{
		ID:         fmt.Sprintf("c%03d", rt.nextID),
		Name:       fmt.Sprintf("%s-%s-%d", service, color, i),
		Service:    service,
		Color:      color,
		Deployment: deployment,
		Image:      image,
		State:      "exited",
	}}
	if isRunning {
		c.State = "running"
		c.Address = rt.addr()
	}
	rt.containers[c.ID] = c
	return c.Container
}

// list returns the service's containers sorted by name.
func (rt *fakeRuntime) list(service string) []controller.Container {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	var cs []controller.Container
	for _, c := range rt.containers {
		if c.Service == service {
			cs = append(cs, c.Container)
		}
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].Name < cs[j].Name })
	return cs
}

// spec returns the ContainerSpec a container was created with.
func (rt *fakeRuntime) spec(id string) controller.ContainerSpec {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if c, ok := rt.containers[id]; ok {
		return c.Spec
	}
	return controller.ContainerSpec{}
}

// nameAt returns the name of the container at addr, "" if none.
func (rt *fakeRuntime) nameAt(addr string) string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for _, c := range rt.containers {
		if c.Address == addr {
			return c.Name
		}
	}
	return ""
}

func (rt *fakeRuntime) callLog() []string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return slices.Clone(rt.calls)
}

// countCalls counts logged calls starting with prefix.
func (rt *fakeRuntime) countCalls(prefix string) int {
	n := 0
	for _, c := range rt.callLog() {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

func (rt *fakeRuntime) set(fn func(rt *fakeRuntime)) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	fn(rt)
}

// routerSwitch is one Switch call the fake router saw.
type routerSwitch struct {
	Service string
	Color   controller.Color
	Addrs   []string
	Err     error
}

// fakeRouter is an in-memory controller.Router. Like the real one, a
// failed Switch leaves the previous addresses in place.
type fakeRouter struct {
	mu           sync.Mutex
	addrs        map[string][]string // nil entry: the placeholder
	placeholders map[string]bool
	history      []routerSwitch
	// fail, when set, decides whether a Switch fails.
	fail func(service string, addrs []string) error
	// beforeSwitch, when set, runs at the start of each Switch outside the
	// lock, so a test can hold a deploy inside its switch.
	beforeSwitch func(service string)
	// edited marks upstreams changed by hand since the last Switch.
	edited map[string]bool
	// checkErr, when set, fails Check (nginx's config test).
	checkErr error
	// partial makes Switch succeed without changing anything, as a
	// router that could carry out only part of a switch.
	partial bool
}

// Drain waits the whole timeout, as the nginx router does.
func (r *fakeRouter) Drain(ctx context.Context, _ string, color controller.Color, timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-t.C:
		return fmt.Sprintf("waited %s for in-flight requests on %s", timeout, color), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func newFakeRouter() *fakeRouter {
	return &fakeRouter{addrs: map[string][]string{}, placeholders: map[string]bool{}, edited: map[string]bool{}}
}

// InSync is false for a service without an upstream, one edited by hand
// (see handEdit) or one pointing elsewhere.
func (r *fakeRouter) InSync(ctx context.Context, service string, _ controller.Color, addrs []string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, ok := r.addrs[service]
	if !ok || r.edited[service] {
		return false, nil
	}
	if len(addrs) == 0 {
		return cur == nil, nil
	}
	return slices.Equal(cur, addrs), nil
}

func (r *fakeRouter) Check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.checkErr != nil {
		return fmt.Errorf("nginx -t: %w", r.checkErr)
	}
	return nil
}

// handEdit simulates someone editing (or, with gone, deleting) the
// service's upstream file.
func (r *fakeRouter) handEdit(service string, gone bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if gone {
		delete(r.addrs, service)
		return
	}
	r.edited[service] = true
}

func (r *fakeRouter) setCheckErr(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checkErr = err
}

func (r *fakeRouter) EnsurePlaceholder(ctx context.Context, service string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.addrs[service]; !ok {
		r.addrs[service] = nil
		r.placeholders[service] = true
	}
	return nil
}

func (r *fakeRouter) Switch(ctx context.Context, service string, color controller.Color, addrs []string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	hook := r.beforeSwitch
	r.mu.Unlock()
	if hook != nil {
		hook(service)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var err error
	if r.fail != nil {
		err = r.fail(service, addrs)
	}
	r.history = append(r.history, routerSwitch{Service: service, Color: color, Addrs: slices.Clone(addrs), Err: err})
	if err != nil {
		return fmt.Errorf("reload nginx for %s (previous upstream restored): %w", service, err)
	}
	if r.partial {
		return nil
	}
	if len(addrs) == 0 {
		r.addrs[service] = nil
	} else {
		r.addrs[service] = slices.Clone(addrs)
	}
	delete(r.edited, service)
	return nil
}

// current returns the service's addresses; nil means the placeholder.
func (r *fakeRouter) current(service string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.addrs[service])
}

func (r *fakeRouter) switches() []routerSwitch {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.history)
}

func (r *fakeRouter) setBeforeSwitch(fn func(service string)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.beforeSwitch = fn
}

func (r *fakeRouter) setFail(fn func(service string, addrs []string) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = fn
}

// fakeProber answers probes from a verdict function keyed by the name of
// the container at the probed address, so tests need not know addresses.
type fakeProber struct {
	rt      *fakeRuntime
	mu      sync.Mutex
	verdict func(name string, n int) error // nil: always healthy
	probes  map[string]int                 // by container name
}

func newFakeProber(rt *fakeRuntime) *fakeProber {
	return &fakeProber{rt: rt, probes: map[string]int{}}
}

func (p *fakeProber) Probe(ctx context.Context, addr string, spec controller.HealthSpec) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	name := p.rt.nameAt(addr)
	p.mu.Lock()
	p.probes[name]++
	n := p.probes[name]
	verdict := p.verdict
	p.mu.Unlock()
	if name == "" {
		return fmt.Errorf("GET http://%s%s: connection refused", addr, spec.Path)
	}
	if verdict == nil {
		return nil
	}
	return verdict(name, n)
}

func (p *fakeProber) setVerdict(fn func(name string, n int) error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.verdict = fn
}

// failUntil makes every probe of a container whose name starts with
// prefix ("" for all) fail with err until release is closed (never, for a
// nil release); the other containers answer.
func (p *fakeProber) failUntil(prefix string, err error, release <-chan struct{}) {
	p.setVerdict(func(name string, _ int) error {
		if !strings.HasPrefix(name, prefix) {
			return nil
		}
		select {
		case <-release:
			return nil
		default:
			return err
		}
	})
}

func (p *fakeProber) count(name string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.probes[name]
}

func (p *fakeProber) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.probes = map[string]int{}
}

// memStore is an in-memory controller.Store.
type memStore struct {
	mu          sync.Mutex
	services    map[string]controller.ServiceState
	deployments map[string]controller.Deployment
	// saveSwitchErr, when set, fails SaveSwitch without writing anything.
	saveSwitchErr error
	// onPut, when set, runs before each PutDeployment is applied, outside
	// the lock, so a test can hold the controller at that point.
	onPut func(d controller.Deployment)
	// onGetDelivery, when set, runs at the start of each GetDelivery,
	// outside the lock, so a test can make one delivery slow.
	onGetDelivery func(key string)

	audit      []controller.AuditEntry // oldest first
	deliveries map[string]string       // delivery key to deployment id
	// reads and writes count calls by kind, so tests can prove that a
	// refused request touched nothing.
	reads, writes int
	// pingErr, when set, fails Ping.
	pingErr error

	traffic map[string]controller.TrafficState
	// putTrafficErr, when set, fails PutTraffic without writing anything.
	putTrafficErr error
}

func (s *memStore) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pingErr != nil {
		return fmt.Errorf("store: %w", s.pingErr)
	}
	return nil
}

func newMemStore() *memStore {
	return &memStore{
		services:    map[string]controller.ServiceState{},
		deployments: map[string]controller.Deployment{},
		deliveries:  map[string]string{},
		traffic:     map[string]controller.TrafficState{},
	}
}

// countRead and countWrite take s.mu themselves; they are called before a
// method takes it.
func (s *memStore) countRead() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
}

func (s *memStore) countWrite() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
}

// accesses returns how many reads and writes the store has seen.
func (s *memStore) accesses() (reads, writes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads, s.writes
}

func (s *memStore) AppendAudit(ctx context.Context, e controller.AuditEntry) error {
	s.countWrite()
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.ID == "" {
		e.ID = fmt.Sprintf("%016d", len(s.audit)+1)
	}
	s.audit = append(s.audit, e)
	return nil
}

func (s *memStore) ListAudit(ctx context.Context, before string, limit int) ([]controller.AuditEntry, error) {
	s.countRead()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []controller.AuditEntry{}
	for i := len(s.audit) - 1; i >= 0 && (limit <= 0 || len(out) < limit); i-- {
		if before == "" || s.audit[i].ID < fmt.Sprintf("%016s", before) {
			out = append(out, s.audit[i])
		}
	}
	return out, nil
}

func (s *memStore) PruneAudit(ctx context.Context, olderThan time.Time, keep int) (int, error) {
	s.countWrite()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for n < len(s.audit) && ((keep > 0 && len(s.audit)-n > keep) || (!olderThan.IsZero() && s.audit[n].Time.Before(olderThan))) {
		n++
	}
	s.audit = slices.Delete(s.audit, 0, n)
	return n, nil
}

func (s *memStore) GetDelivery(ctx context.Context, key string) (string, error) {
	s.mu.Lock()
	hook := s.onGetDelivery
	s.mu.Unlock()
	if hook != nil && ctx.Err() == nil {
		hook(key)
	}
	return lookup(ctx, s, func() map[string]string { return s.deliveries }, "delivery", key)
}

// lookup counts a read and returns the entry key of the map that pick
// returns under s.mu, or an error wrapping ErrNotFound that names what.
func lookup[V any](ctx context.Context, s *memStore, pick func() map[string]V, what, key string) (V, error) {
	s.countRead()
	var zero V
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := pick()[key]
	if !ok {
		return zero, fmt.Errorf("%s %s: %w", what, key, controller.ErrNotFound)
	}
	return v, nil
}

func (s *memStore) PutDelivery(ctx context.Context, key, deploymentID string) error {
	s.countWrite()
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deliveries[key] = deploymentID
	return nil
}

func (s *memStore) GetTraffic(ctx context.Context, service string) (controller.TrafficState, error) {
	return lookup(ctx, s, func() map[string]controller.TrafficState { return s.traffic }, "traffic", service)
}

func (s *memStore) PutTraffic(ctx context.Context, st controller.TrafficState) error {
	s.countWrite()
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.putTrafficErr != nil {
		return fmt.Errorf("put traffic of %s: %w", st.Service, s.putTrafficErr)
	}
	s.traffic[st.Service] = st
	return nil
}

func (s *memStore) GetService(ctx context.Context, name string) (controller.ServiceState, error) {
	return lookup(ctx, s, func() map[string]controller.ServiceState { return s.services }, "service", name)
}

func (s *memStore) PutService(ctx context.Context, st controller.ServiceState) error {
	s.countWrite()
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.services[st.Name] = st
	return nil
}

func (s *memStore) PutDeployment(ctx context.Context, d controller.Deployment) error {
	s.countWrite()
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	hook := s.onPut
	s.mu.Unlock()
	if hook != nil {
		hook(d)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deployments[d.ID] = cloneDeployment(d)
	return nil
}

func (s *memStore) SaveSwitch(ctx context.Context, st controller.ServiceState, d controller.Deployment) error {
	s.countWrite()
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.saveSwitchErr != nil {
		return fmt.Errorf("save switch of %s: %w", st.Name, s.saveSwitchErr)
	}
	s.services[st.Name] = st
	s.deployments[d.ID] = cloneDeployment(d)
	return nil
}

func (s *memStore) GetDeployment(ctx context.Context, id string) (controller.Deployment, error) {
	d, err := lookup(ctx, s, func() map[string]controller.Deployment { return s.deployments }, "deployment", id)
	return cloneDeployment(d), err
}

// sorted returns the deployments matching keep, oldest first (IDs sort by
// creation time).
func (s *memStore) sorted(keep func(controller.Deployment) bool) []controller.Deployment {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ds []controller.Deployment
	for _, d := range s.deployments {
		if keep(d) {
			ds = append(ds, cloneDeployment(d))
		}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i].ID < ds[j].ID })
	return ds
}

func (s *memStore) ListDeployments(ctx context.Context, service string, limit int) ([]controller.Deployment, error) {
	s.countRead()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ds := s.sorted(func(d controller.Deployment) bool { return service == "" || d.Service == service })
	slices.Reverse(ds)
	if limit > 0 && len(ds) > limit {
		ds = ds[:limit]
	}
	return ds, nil
}

func (s *memStore) UnfinishedDeployments(ctx context.Context) ([]controller.Deployment, error) {
	s.countRead()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.sorted(func(d controller.Deployment) bool { return !d.Status.Done() }), nil
}

func (s *memStore) service(name string) controller.ServiceState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.services[name]
}

func (s *memStore) trafficOf(name string) controller.TrafficState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.traffic[name]
}

func (s *memStore) set(fn func(s *memStore)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s)
}

// cloneDeployment copies d deeply enough that the controller's later
// appends to its Steps cannot reach the stored copy.
func cloneDeployment(d controller.Deployment) controller.Deployment {
	d.Steps = slices.Clone(d.Steps)
	return d
}

// fakeNotifier records notifications.
type fakeNotifier struct {
	mu    sync.Mutex
	notes []controller.Notification
}

func (n *fakeNotifier) Notify(note controller.Notification) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.notes = append(n.notes, note)
}

// all returns every notification so far, oldest first.
func (n *fakeNotifier) all() []controller.Notification {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.notes)
}

// kinds returns the kinds of the notifications so far, oldest first.
func (n *fakeNotifier) kinds() []string {
	var out []string
	for _, note := range n.all() {
		out = append(out, note.Kind)
	}
	return out
}

// ofKind returns the notifications of one kind.
func (n *fakeNotifier) ofKind(kind string) []controller.Notification {
	var out []controller.Notification
	for _, note := range n.all() {
		if note.Kind == kind {
			out = append(out, note)
		}
	}
	return out
}

// observedState is one ServiceState call.
type observedState struct {
	Service          string
	Active           controller.Color
	StandbyAvailable bool
	Healthy          bool
}

// fakeObserver records what the controller reports for metrics.
type fakeObserver struct {
	mu             sync.Mutex
	finished       []controller.Deployment
	switchedKinds  []controller.Kind
	healthFailures map[string]int
	states         []observedState
	repairs        []string // "service/kind"
	unaudited      []string // "action status"
}

func newFakeObserver() *fakeObserver {
	return &fakeObserver{healthFailures: map[string]int{}}
}

func (o *fakeObserver) DeploymentFinished(d controller.Deployment) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.finished = append(o.finished, cloneDeployment(d))
}

func (o *fakeObserver) Switched(service string, kind controller.Kind, took time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.switchedKinds = append(o.switchedKinds, kind)
}

func (o *fakeObserver) HealthCheckFailed(service string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.healthFailures[service]++
}

func (o *fakeObserver) ServiceState(service string, active controller.Color, standbyAvailable, healthy bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.states = append(o.states, observedState{service, active, standbyAvailable, healthy})
}

func (o *fakeObserver) Repaired(service, kind string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.repairs = append(o.repairs, service+"/"+kind)
}

func (o *fakeObserver) Unaudited(action string, status int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.unaudited = append(o.unaudited, fmt.Sprintf("%s %d", action, status))
}

func (o *fakeObserver) unauditedRequests() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.unaudited)
}

func (o *fakeObserver) finishedDeployments() []controller.Deployment {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.finished)
}

func (o *fakeObserver) switches() []controller.Kind {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.switchedKinds)
}

func (o *fakeObserver) failures(service string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.healthFailures[service]
}

func (o *fakeObserver) stateCalls() []observedState {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.states)
}

// lastState returns the last ServiceState call, ok false when none.
func (o *fakeObserver) lastState() (observedState, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.states) == 0 {
		return observedState{}, false
	}
	return o.states[len(o.states)-1], true
}

func (o *fakeObserver) repairList() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.repairs)
}

// fakeHook records the points the controller reaches; at, when set, runs
// at each point (outside the lock).
type fakeHook struct {
	mu     sync.Mutex
	points []string
	at     func(point string)
}

func (h *fakeHook) hook(point string) {
	h.mu.Lock()
	h.points = append(h.points, point)
	fn := h.at
	h.mu.Unlock()
	if fn != nil {
		fn(point)
	}
}

func (h *fakeHook) reached() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.points)
}
