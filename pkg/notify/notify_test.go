package notify

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/deployd/deployd/internal/xtest"
	"github.com/deployd/deployd/pkg/controller"
)

// fastSettings keeps retries but makes them few and short.
func fastSettings() settings {
	s := defaultSettings()
	s.retryMax = 3
	s.retryWaitMin = time.Millisecond
	s.retryWaitMax = 5 * time.Millisecond
	s.requestTimeout = 2 * time.Second
	return s
}

type received struct {
	header http.Header
	body   []byte
	at     time.Time
}

// receiver records deliveries and answers with status(n) for the n-th
// request (1-based).
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []received
	calls  atomic.Int32
	status func(n int32) int
}

func newReceiver(t *testing.T, status func(n int32) int) *receiver {
	t.Helper()
	r := &receiver{status: status}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		n := r.calls.Add(1)
		body, _ := io.ReadAll(req.Body)
		code := http.StatusOK
		if r.status != nil {
			code = r.status(n)
		}
		if code >= 200 && code < 300 {
			r.mu.Lock()
			r.got = append(r.got, received{header: req.Header.Clone(), body: body, at: time.Now()})
			r.mu.Unlock()
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) deliveries() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

// failures counts onFailure calls per target.
type failures struct {
	mu sync.Mutex
	m  map[string]int
}

func (f *failures) record(target string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]int{}
	}
	f.m[target]++
}

func (f *failures) count(target string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[target]
}

func newTestNotifier(t *testing.T, targets []Target, s settings) (*Notifier, *failures, *logtest.Hook) {
	t.Helper()
	return newTestNotifierWith(t, Options{Targets: targets}, s)
}

// newTestNotifierWith starts a Notifier with o, logging to a test hook and
// counting failures; it is closed at cleanup.
func newTestNotifierWith(t *testing.T, o Options, s settings) (*Notifier, *failures, *logtest.Hook) {
	t.Helper()
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	f := &failures{}
	o.Logger = log
	o.OnFailure = f.record
	n := newNotifier(t.Context(), o, s)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.Close(ctx)
	})
	return n, f, hook
}

// closeAndWait closes n, which sends what is queued to healthy targets.
func closeAndWait(t *testing.T, n *Notifier) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// eventually polls cond every 5ms until it returns nil, and fails the
// test with its last error after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	xtest.Eventually(t, timeout, 5*time.Millisecond, what, cond)
}

var sample = controller.Notification{
	Kind:       controller.NotifyDeploySucceeded,
	Service:    "web",
	Deployment: "d-1",
	Image:      "demoapp:v2",
	Color:      controller.Green,
	Actor:      "alice",
	Message:    "switched",
	Time:       time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
}

func TestWebhook_SignedJSONVerifiesWithTheSecret(t *testing.T) {
	r := newReceiver(t, nil)
	secret := []byte("0123456789abcdef-secret")
	n, f, _ := newTestNotifier(t, []Target{{Name: "hook", Type: TypeWebhook, URL: r.srv.URL, Secret: secret}}, fastSettings())

	n.Notify(sample)
	closeAndWait(t, n)

	got := r.deliveries()
	if len(got) != 1 {
		t.Fatalf("deliveries = %d, want 1", len(got))
	}
	sig := got[0].header.Get(SignatureHeader)
	if want := Sign(secret, got[0].body); !hmac.Equal([]byte(sig), []byte(want)) {
		t.Fatalf("signature = %q, want %q", sig, want)
	}
	if !strings.HasPrefix(sig, "sha256=") || len(sig) != len("sha256=")+64 {
		t.Fatalf("signature = %q, want sha256=<64 hex>", sig)
	}
	// Receivers parse these bytes: field names and presence are a contract.
	const want = `{"kind":"deploy_succeeded","service":"web","deployment":"d-1","image":"demoapp:v2",` +
		`"color":"green","actor":"alice","message":"switched","time":"2026-01-02T03:04:05Z"}`
	if string(got[0].body) != want {
		t.Fatalf("body = %s\nwant %s", got[0].body, want)
	}
	if ct := got[0].header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json", ct)
	}
	if c := f.count("hook"); c != 0 {
		t.Fatalf("failures = %d, want 0", c)
	}
}

func TestWebhook_NoSecretNoSignature(t *testing.T) {
	r := newReceiver(t, nil)
	n, _, _ := newTestNotifier(t, []Target{{Name: "hook", Type: TypeWebhook, URL: r.srv.URL}}, fastSettings())
	n.Notify(sample)
	closeAndWait(t, n)
	got := r.deliveries()
	if len(got) != 1 {
		t.Fatalf("deliveries = %d, want 1", len(got))
	}
	if sig := got[0].header.Get(SignatureHeader); sig != "" {
		t.Fatalf("signature = %q, want none", sig)
	}
}

func TestSlack_SendsOneReadableLine(t *testing.T) {
	r := newReceiver(t, nil)
	n, _, _ := newTestNotifier(t, []Target{{Name: "chat", Type: TypeSlack, URL: r.srv.URL}}, fastSettings())
	n.Notify(sample)
	closeAndWait(t, n)
	got := r.deliveries()
	if len(got) != 1 {
		t.Fatalf("deliveries = %d, want 1", len(got))
	}
	var body map[string]string
	if err := json.Unmarshal(got[0].body, &body); err != nil {
		t.Fatalf("body: %v", err)
	}
	want := "deployd: web deploy succeeded: demoapp:v2 on green by alice: switched"
	if body["text"] != want || len(body) != 1 {
		t.Fatalf("body = %v, want only text %q", body, want)
	}
}

func TestSlackText(t *testing.T) {
	tests := []struct {
		name string
		n    controller.Notification
		want string
	}{
		{"unhealthy", controller.Notification{Kind: controller.NotifyServiceUnhealthy, Service: "web", Color: controller.Blue, Message: "3 failed probes"},
			"deployd: web unhealthy: blue: 3 failed probes"},
		{"rollback by watchdog", controller.Notification{Kind: controller.NotifyRolledBack, Service: "api", Image: "api:v1", Color: controller.Blue, Actor: "watchdog"},
			"deployd: api rolled back: api:v1 on blue by watchdog"},
		{"a claim is marked as one", controller.Notification{Kind: controller.NotifyDeploySucceeded, Service: "web", Image: "web:v2", Color: controller.Green, Actor: "ci", OnBehalfOf: "octocat"},
			"deployd: web deploy succeeded: web:v2 on green by ci (on behalf of octocat, claimed)"},
		{"multi-line message folds", controller.Notification{Kind: controller.NotifyDeployFailed, Service: "web", Message: "health:\n  timeout\n"},
			"deployd: web deploy failed: health: timeout"},
		{"interrupted by shutdown", controller.Notification{Kind: controller.NotifyDeployInterrupted, Service: "web", Image: "web:v3", Color: controller.Green, Message: "deploy of web:v3 interrupted"},
			"deployd: web deploy interrupted: web:v3 on green: deploy of web:v3 interrupted"},
		{"markup escaped", controller.Notification{Kind: controller.NotifyRepair, Service: "web", Message: "<!channel> a&b"},
			"deployd: web repaired: &lt;!channel&gt; a&amp;b"},
		{"unknown kind spelled as is", controller.Notification{Kind: "something_new", Service: "web"},
			"deployd: web something_new"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SlackText(tt.n); got != tt.want {
				t.Fatalf("SlackText = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWebhook_RetriesServerErrorsThenDelivers(t *testing.T) {
	r := newReceiver(t, func(n int32) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	// The outbox tells when the notifier, not only the receiver, knows the
	// delivery succeeded: Close before that would cut the answer short.
	outbox := newMemOutbox()
	n, f, _ := newTestNotifierWith(t, Options{Targets: []Target{{Name: "hook", Type: TypeWebhook, URL: r.srv.URL}}, Outbox: outbox}, fastSettings())
	n.Notify(sample)
	eventually(t, 5*time.Second, "delivered", func() error {
		if got := len(r.deliveries()); got != 1 {
			return fmt.Errorf("deliveries = %d, want 1", got)
		}
		if left := outbox.pending("hook"); len(left) != 0 {
			return fmt.Errorf("outbox still holds %v", left)
		}
		return nil
	})
	closeAndWait(t, n)
	if got := r.calls.Load(); got != 3 {
		t.Fatalf("calls = %d, want 3", got)
	}
	if c := f.count("hook"); c != 0 {
		t.Fatalf("failures = %d, want 0", c)
	}
}

func TestWebhook_PermanentFailureIsCountedAndLoggedWithoutTheURL(t *testing.T) {
	r := newReceiver(t, func(int32) int { return http.StatusInternalServerError })
	secretPath := "/services/T000/B000/XXXXsecretpathXXXX"
	secret := []byte("signing-secret-0123456789")
	n, f, hook := newTestNotifier(t, []Target{{Name: "hook", Type: TypeSlack, URL: r.srv.URL + secretPath, Secret: secret}}, fastSettings())
	n.Notify(sample)
	eventually(t, 5*time.Second, "given up", func() error {
		if c := f.count("hook"); c != 1 {
			return fmt.Errorf("failures = %d, want 1", c)
		}
		return nil
	})
	closeAndWait(t, n)
	if got, want := r.calls.Load(), int32(4); got != want {
		t.Fatalf("calls = %d, want %d (1 + RetryMax 3)", got, want)
	}
	var warned bool
	for _, e := range hook.AllEntries() {
		line, _ := e.String()
		if strings.Contains(line, "secretpath") || strings.Contains(line, string(secret)) {
			t.Fatalf("log line leaks the URL or secret: %s", line)
		}
		if e.Level == logrus.WarnLevel && e.Data["target"] == "hook" {
			warned = true
		}
	}
	if !warned {
		t.Fatalf("no warning naming the target was logged")
	}
}

func TestWebhook_UnreachableReceiverIsCountedWithoutTheURL(t *testing.T) {
	r := newReceiver(t, nil)
	u := r.srv.URL + "/hooks/secretpath"
	r.srv.Close() // nothing listens any more
	n, f, hook := newTestNotifier(t, []Target{{Name: "gone", Type: TypeWebhook, URL: u}}, fastSettings())
	n.Notify(sample)
	eventually(t, 5*time.Second, "given up", func() error {
		if c := f.count("gone"); c != 1 {
			return fmt.Errorf("failures = %d, want 1", c)
		}
		return nil
	})
	closeAndWait(t, n)
	for _, e := range hook.AllEntries() {
		line, _ := e.String()
		if strings.Contains(line, "secretpath") {
			t.Fatalf("log line leaks the URL: %s", line)
		}
	}
}

func TestNotify_EventsFilterSelectsKinds(t *testing.T) {
	all := newReceiver(t, nil)
	failedOnly := newReceiver(t, nil)
	n, _, _ := newTestNotifier(t, []Target{
		{Name: "all", Type: TypeWebhook, URL: all.srv.URL},
		{Name: "failed", Type: TypeWebhook, URL: failedOnly.srv.URL, Events: []string{controller.NotifyDeployFailed}},
	}, fastSettings())
	n.Notify(controller.Notification{Kind: controller.NotifyDeployStarted, Service: "web"})
	n.Notify(controller.Notification{Kind: controller.NotifyDeployFailed, Service: "web"})
	closeAndWait(t, n)
	if got := len(all.deliveries()); got != 2 {
		t.Fatalf("all: deliveries = %d, want 2", got)
	}
	got := failedOnly.deliveries()
	if len(got) != 1 {
		t.Fatalf("failed-only: deliveries = %d, want 1", len(got))
	}
	if !strings.Contains(string(got[0].body), controller.NotifyDeployFailed) {
		t.Fatalf("failed-only got %s, want the deploy_failed notification", got[0].body)
	}
}

func TestNotify_FullQueueDropsAndCountsWithoutBlocking(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		<-release
	}))
	t.Cleanup(srv.Close)

	s := fastSettings()
	s.queueSize = 2
	n, f, _ := newTestNotifier(t, []Target{{Name: "slow", Type: TypeWebhook, URL: srv.URL}}, s)
	// Cleanups run last-in first-out: the receiver lets go before the
	// notifier is closed and before the server is.
	t.Cleanup(func() { close(release) })

	// The first notification occupies the goroutine; wait until it does so
	// the count of drops below is exact.
	n.Notify(sample)
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("first delivery never reached the receiver")
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	for i := 0; i < 10; i++ {
		n.Notify(sample)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("10 Notify calls took %s, want them not to block", took)
	}
	if got, want := f.count("slow"), 8; got != want {
		t.Fatalf("failures = %d, want %d (10 queued into room for 2)", got, want)
	}
}

func TestClose_WithoutOutboxDropsAndCountsAtDeadlineAndStopsTheGoroutines(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })

	n, f, _ := newTestNotifier(t, []Target{{Name: "slow", Type: TypeWebhook, URL: srv.URL}}, fastSettings())
	n.Notify(sample)
	n.Notify(sample)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := n.Close(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrDropped) {
		t.Fatalf("Close = %v, want ErrDropped and DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Close took %s, want it bounded by its context", took)
	}
	select {
	case <-n.done:
	default:
		t.Fatal("delivery goroutines still running after Close returned")
	}
	if got := f.count("slow"); got != 2 {
		t.Fatalf("failures = %d, want 2 (both abandoned)", got)
	}
	// Notify after Close neither blocks nor panics, and counts the drop.
	n.Notify(sample)
	if got := f.count("slow"); got != 3 {
		t.Fatalf("failures after late Notify = %d, want 3", got)
	}
}

// Receivers get the claim as a field of its own, never folded into actor.
func TestPayload_CarriesTheClaimBesideTheActor(t *testing.T) {
	n := sample
	n.Actor, n.OnBehalfOf = "ci", "octocat"
	b, err := json.Marshal(payloadOf(n))
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	if want := `"actor":"ci","on_behalf_of":"octocat"`; !strings.Contains(string(b), want) {
		t.Fatalf("payload = %s, want it to hold %s", b, want)
	}
}
