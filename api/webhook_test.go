package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/deployd/deployd/pkg/controller"
)

func TestVerifySignature_GitHubVectorAndTampering(t *testing.T) {
	// GitHub's documented example for X-Hub-Signature-256.
	secret := []byte("It's a Secret to Everybody")
	body := []byte("Hello, World!")
	good := "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	tests := []struct {
		name   string
		secret []byte
		body   []byte
		header string
		want   error
	}{
		{"documented vector", secret, body, good, nil},
		{"uppercase hex is the same bytes", secret, body, "sha256=" + strings.ToUpper(strings.TrimPrefix(good, "sha256=")), nil},
		{"other body", secret, []byte("Hello, World?"), good, errWrongSignature},
		{"other secret", []byte("It's a secret to everybody"), body, good, errWrongSignature},
		{"empty header", secret, body, "", errNoSignature},
		{"sha1 scheme", secret, body, "sha1=" + strings.TrimPrefix(good, "sha256="), errBadSignature},
		{"no scheme", secret, body, strings.TrimPrefix(good, "sha256="), errBadSignature},
		{"truncated", secret, body, good[:len(good)-2], errBadSignature},
		{"not hex", secret, body, "sha256=" + strings.Repeat("zz", 32), errBadSignature},
		{"one bit off", secret, body, good[:len(good)-1] + "6", errWrongSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, got := verifySignature(tt.secret, tt.body, tt.header); !errors.Is(got, tt.want) {
				t.Errorf("verifySignature = %v, want %v", got, tt.want)
			}
		})
	}
}

// sign returns the X-Hub-Signature-256 value of payload under secret.
func sign(secret, payload string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(payload))
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// hookRequest builds a webhook request; headers with an empty value are
// not sent.
func hookRequest(body string, headers map[string]string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/hooks/deploy", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	return req
}

// signedHook is a correctly signed delivery of body, stamped now.
func signedHook(body, delivery string) *http.Request {
	return stampedHook(time.Now(), body, delivery)
}

// stampedHook is a delivery of body signed over the timestamp at.
func stampedHook(at time.Time, body, delivery string) *http.Request {
	ts := strconv.FormatInt(at.Unix(), 10)
	return hookRequest(body, map[string]string{
		"X-Deployd-Timestamp": ts,
		"X-Hub-Signature-256": sign(webhookSecret, ts+"."+body),
		"X-GitHub-Delivery":   delivery,
	})
}

func (h *harness) send(t *testing.T, req *http.Request) *http.Response {
	t.Helper()
	resp, err := h.srv.App().Test(req, 5000)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

const hookBody = `{"service":"web","image":"demoapp:v2","commit":"abc123","actor":"octocat","ref":"refs/heads/main"}`

func TestWebhook_SignedDeliveryIsAcceptedWithTheTrigger(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		headers map[string]string
		want    controller.DeployRequest
		key     string
	}{
		{
			name:    "github delivery",
			body:    hookBody,
			headers: map[string]string{"X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"},
			key:     "72d3162e-cc78-11e3-81ab-4c9367dc0958",
			want: controller.DeployRequest{Image: "demoapp:v2", Trigger: controller.Trigger{
				Source: "webhook", Actor: "webhook", OnBehalfOf: "octocat", Commit: "abc123", Ref: "refs/heads/main", Delivery: "72d3162e-cc78-11e3-81ab-4c9367dc0958"}},
		},
		{
			name:    "idempotency key and no claim",
			body:    `{"service":"web","image":"v2"}`,
			headers: map[string]string{"Idempotency-Key": "build-17"},
			key:     "build-17",
			want: controller.DeployRequest{Image: "v2", Trigger: controller.Trigger{
				Source: "webhook", Actor: "webhook", Delivery: "build-17"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			ts := strconv.FormatInt(time.Now().Unix(), 10)
			tt.headers["X-Deployd-Timestamp"] = ts
			tt.headers["X-Hub-Signature-256"] = sign(webhookSecret, ts+"."+tt.body)
			resp := h.send(t, hookRequest(tt.body, tt.headers))
			wantStatus(t, resp, fiber.StatusAccepted)
			if got, want := resp.Header.Get("Location"), "/api/v1/deployments/d-42"; got != want {
				t.Errorf("Location = %q, want %q", got, want)
			}
			got := decodeJSON[WebhookAccepted](t, resp)
			if got.Deployment.ID != "d-42" || got.URL != "/api/v1/deployments/d-42" {
				t.Errorf("body = %+v, want deployment d-42 and its url", got)
			}
			calls := h.ctl.Calls()
			if len(calls) != 1 || calls[0].method != "DeployDelivery" {
				t.Fatalf("calls = %+v, want one DeployDelivery", calls)
			}
			if c := calls[0]; c.id != tt.key || c.service != "web" || c.req != tt.want {
				t.Errorf("DeployDelivery(%q, %q, %+v), want (%q, web, %+v)", c.id, c.service, c.req, tt.key, tt.want)
			}
		})
	}
}

func TestWebhook_ReplayedDeliveryAnswers200WithTheSameDeployment(t *testing.T) {
	h := newHarness(t)
	first := h.send(t, signedHook(hookBody, "delivery-1"))
	wantStatus(t, first, fiber.StatusAccepted)
	again := h.send(t, signedHook(hookBody, "delivery-1"))
	wantStatus(t, again, fiber.StatusOK)
	if got := decodeJSON[WebhookAccepted](t, again); got.Deployment.ID != "d-42" {
		t.Errorf("replayed deployment = %q, want d-42", got.Deployment.ID)
	}
}

func TestWebhook_RefusedBeforeTheControllerTouchesNothing(t *testing.T) {
	now := time.Unix(1_750_000_000, 0)
	stamp := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }
	stampedSig := func(ts, body string) string { return sign(webhookSecret, ts+"."+body) }
	tests := []struct {
		name     string
		body     string
		headers  map[string]string
		want     int
		wantCode string
	}{
		{"no signature", hookBody, map[string]string{"X-GitHub-Delivery": "d1"}, 401, "unauthorized"},
		{"bearer token instead of a signature", hookBody, map[string]string{"X-GitHub-Delivery": "d1", "Authorization": "Bearer " + operatorSecret}, 401, "unauthorized"},
		{"webhook secret as bearer", hookBody, map[string]string{"X-GitHub-Delivery": "d1", "Authorization": "Bearer " + webhookSecret}, 401, "unauthorized"},
		{"wrong secret", hookBody, map[string]string{"X-GitHub-Delivery": "d1", "X-Deployd-Timestamp": stamp(0), "X-Hub-Signature-256": sign("guess", stamp(0)+"."+hookBody)}, 401, "unauthorized"},
		{"signature of another body", hookBody, map[string]string{"X-GitHub-Delivery": "d1", "X-Deployd-Timestamp": stamp(0), "X-Hub-Signature-256": stampedSig(stamp(0), "{}")}, 401, "unauthorized"},
		{"malformed signature", hookBody, map[string]string{"X-GitHub-Delivery": "d1", "X-Deployd-Timestamp": stamp(0), "X-Hub-Signature-256": "sha256=nope"}, 401, "unauthorized"},
		{"timestamp not covered by the signature", hookBody, map[string]string{"X-GitHub-Delivery": "d1", "X-Deployd-Timestamp": stamp(0), "X-Hub-Signature-256": sign(webhookSecret, hookBody)}, 401, "unauthorized"},
		{"timestamp too old", hookBody, map[string]string{"X-GitHub-Delivery": "d1", "X-Deployd-Timestamp": stamp(-6 * time.Minute), "X-Hub-Signature-256": stampedSig(stamp(-6*time.Minute), hookBody)}, 401, "unauthorized"},
		{"timestamp in the future", hookBody, map[string]string{"X-GitHub-Delivery": "d1", "X-Deployd-Timestamp": stamp(6 * time.Minute), "X-Hub-Signature-256": stampedSig(stamp(6*time.Minute), hookBody)}, 401, "unauthorized"},
		{"unstamped", hookBody, map[string]string{"X-GitHub-Delivery": "d1", "X-Hub-Signature-256": sign(webhookSecret, hookBody)}, 401, "unauthorized"},
		{"timestamp not a number", hookBody, map[string]string{"X-GitHub-Delivery": "d1", "X-Deployd-Timestamp": "+1e9", "X-Hub-Signature-256": stampedSig("+1e9", hookBody)}, 401, "unauthorized"},
		{"malformed json", `{"service":`, map[string]string{"X-GitHub-Delivery": "d1", "X-Deployd-Timestamp": stamp(0), "X-Hub-Signature-256": stampedSig(stamp(0), `{"service":`)}, 400, "invalid"},
		{"wrong type", `{"service":"web","image":2}`, map[string]string{"X-GitHub-Delivery": "d1", "X-Deployd-Timestamp": stamp(0), "X-Hub-Signature-256": stampedSig(stamp(0), `{"service":"web","image":2}`)}, 400, "invalid"},
		{"unknown field", `{"service":"web","image":"v2","force":true}`, map[string]string{"X-GitHub-Delivery": "d1", "X-Deployd-Timestamp": stamp(0), "X-Hub-Signature-256": stampedSig(stamp(0), `{"service":"web","image":"v2","force":true}`)}, 400, "invalid"},
		{"no service", `{"image":"v2"}`, map[string]string{"X-GitHub-Delivery": "d1", "X-Deployd-Timestamp": stamp(0), "X-Hub-Signature-256": stampedSig(stamp(0), `{"image":"v2"}`)}, 400, "invalid"},
		{"no delivery id", hookBody, map[string]string{"X-Deployd-Timestamp": stamp(0), "X-Hub-Signature-256": stampedSig(stamp(0), hookBody)}, 400, "invalid"},
		{"delivery id with a newline", hookBody, map[string]string{"Idempotency-Key": "a\tb", "X-Deployd-Timestamp": stamp(0), "X-Hub-Signature-256": stampedSig(stamp(0), hookBody)}, 400, "invalid"},
		{"service name that cannot exist", `{"service":"Web!","image":"v2"}`, map[string]string{"X-GitHub-Delivery": "d1", "X-Deployd-Timestamp": stamp(0), "X-Hub-Signature-256": stampedSig(stamp(0), `{"service":"Web!","image":"v2"}`)}, 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.srv.now = func() time.Time { return now }
			resp := h.send(t, hookRequest(tt.body, tt.headers))
			wantStatus(t, resp, tt.want)
			if got := decodeJSON[errorBody](t, resp); got.Code != tt.wantCode || got.Error == "" {
				t.Errorf("body = %+v, want code %s and a message", got, tt.wantCode)
			}
			if calls := h.ctl.Calls(); len(calls) != 0 {
				t.Errorf("controller called %+v, want no call", calls)
			}
			audit := h.ctl.AuditEntries()
			if len(audit) != 1 || audit[0].Status != tt.want || audit[0].Result != tt.wantCode || audit[0].Action != "webhook_deploy" {
				t.Fatalf("audit = %+v, want one webhook_deploy entry with %d %s", audit, tt.want, tt.wantCode)
			}
			// An unverified request names no actor, so the controller
			// counts it instead of writing it; a verified one is the
			// delivery's.
			if actor := audit[0].Actor; (tt.want == 401) != (actor == "") || (actor != "" && !strings.HasPrefix(actor, "webhook")) {
				t.Errorf("audit actor = %q, want none for a 401 and the webhook's otherwise", actor)
			}
		})
	}
}

func TestWebhook_StampedSignatureWithinFiveMinutesIsAccepted(t *testing.T) {
	now := time.Unix(1_750_000_000, 0)
	for _, skew := range []time.Duration{0, -4 * time.Minute, 4 * time.Minute, -5 * time.Minute} {
		t.Run(skew.String(), func(t *testing.T) {
			h := newHarness(t)
			h.srv.now = func() time.Time { return now }
			ts := strconv.FormatInt(now.Add(skew).Unix(), 10)
			resp := h.send(t, hookRequest(hookBody, map[string]string{
				"X-GitHub-Delivery":   "d1",
				"X-Deployd-Timestamp": ts,
				"X-Hub-Signature-256": sign(webhookSecret, ts+"."+hookBody),
			}))
			wantStatus(t, resp, fiber.StatusAccepted)
		})
	}
}

func TestWebhook_ControllerRefusalsMapToStatuses(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"unknown service", controller.Errorf(controller.ENOTFOUND, "no service web"), 404},
		{"image outside the repository", controller.Errorf(controller.EFORBIDDEN, "image other:v2 is not demoapp"), 403},
		{"ref not allowed", controller.Errorf(controller.EFORBIDDEN, `ref "refs/heads/dev" may not deploy web`), 403},
		{"busy service", &controller.Error{Code: controller.ECONFLICT, Message: "busy", DeploymentID: "d-41"}, 409},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.ctl.err = tt.err
			resp := h.send(t, signedHook(hookBody, "d1"))
			wantStatus(t, resp, tt.want)
			// DeployDelivery decides these before it writes anything; it is
			// the only call the API makes.
			if calls := h.ctl.Calls(); len(calls) != 1 || calls[0].method != "DeployDelivery" {
				t.Errorf("calls = %+v, want only DeployDelivery", calls)
			}
			audit := h.ctl.AuditEntries()
			if len(audit) != 1 || audit[0].Status != tt.want || audit[0].Actor != "webhook:d1" || audit[0].Target != "web" {
				t.Errorf("audit = %+v, want one entry by webhook:d1 on web with %d", audit, tt.want)
			}
		})
	}
}

func TestWebhook_WithoutSecretIsNotFound(t *testing.T) {
	logger, _ := logtest.NewNullLogger()
	ctl := &fakeController{deployment: sampleDeployment()}
	srv := New(Options{Controller: ctl, Tokens: testTokens, Logger: logger})
	for _, req := range []*http.Request{
		signedHook(hookBody, "d1"),
		hookRequest(hookBody, map[string]string{"X-Hub-Signature-256": sign("", hookBody), "X-GitHub-Delivery": "d1"}),
		hookRequest(hookBody, map[string]string{"Authorization": "Bearer " + operatorSecret}),
	} {
		resp, err := srv.App().Test(req, 5000)
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, resp, fiber.StatusNotFound)
		resp.Body.Close()
	}
	if calls := ctl.Calls(); len(calls) != 0 {
		t.Errorf("controller called %+v, want no call", calls)
	}
}

func TestWebhook_BodyLimitIsExactly64KiB(t *testing.T) {
	// JSON allows trailing white space, so a valid delivery can be padded
	// to any size.
	atLimit := hookBody + strings.Repeat(" ", 64<<10-len(hookBody))
	overLimit := atLimit + " "

	h := newHarness(t)
	base := serve(t, h)
	resp := h.send(t, signedHook(atLimit, "d1"))
	wantStatus(t, resp, fiber.StatusAccepted)

	// The declared length alone decides, before the signature is checked:
	// the server reads only fasthttp's first 8 KiB of the body.
	head := fmt.Sprintf("POST /hooks/deploy HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"X-Hub-Signature-256: %s\r\nX-GitHub-Delivery: d2\r\nContent-Length: %d\r\n\r\n",
		sign(webhookSecret, overLimit), len(overLimit))
	resp = sendPartial(t, base, head, overLimit[:8<<10])
	wantStatus(t, resp, fiber.StatusRequestEntityTooLarge)
	wantSecurityHeaders(t, resp, true)
	if got := decodeJSON[errorBody](t, resp).Code; got != "invalid" {
		t.Errorf("code = %q, want invalid", got)
	}
	if calls := h.ctl.Calls(); len(calls) != 1 {
		t.Errorf("controller calls %+v, want only the first delivery's", calls)
	}
}

func TestWebhook_FailedSignaturesAreLoggedAndRateLimited(t *testing.T) {
	h := newHarness(t)
	now := time.Unix(1_750_000_000, 0)
	h.srv.now = func() time.Time { return now }
	bad := sign("guess", hookBody)
	for i := range maxSignatureFailures {
		resp := h.send(t, hookRequest(hookBody, map[string]string{"X-Deployd-Timestamp": strconv.FormatInt(now.Unix(), 10), "X-Hub-Signature-256": bad, "X-GitHub-Delivery": "d" + strconv.Itoa(i)}))
		wantStatus(t, resp, fiber.StatusUnauthorized)
	}

	now = now.Add(20 * time.Second)
	// Even a correct signature is refused, unverified, while blocked.
	resp := h.send(t, stampedHook(now, hookBody, "good"))
	wantStatus(t, resp, fiber.StatusTooManyRequests)
	if got, want := resp.Header.Get("Retry-After"), "40"; got != want {
		t.Errorf("Retry-After = %q, want %q", got, want)
	}
	if got := decodeJSON[errorBody](t, resp).Code; got != "rate_limited" {
		t.Errorf("code = %q, want rate_limited", got)
	}
	if calls := h.ctl.Calls(); len(calls) != 0 {
		t.Errorf("controller called %+v, want no call", calls)
	}
	audit := h.ctl.AuditEntries()
	if last := audit[len(audit)-1]; last.Status != 429 || last.Result != "rate_limited" {
		t.Errorf("last audit entry = %+v, want a 429 rate_limited", last)
	}

	now = now.Add(41 * time.Second)
	resp = h.send(t, stampedHook(now, hookBody, "good"))
	wantStatus(t, resp, fiber.StatusAccepted)

	var rejected int
	for _, e := range h.hook.AllEntries() {
		line, _ := e.String()
		for _, secret := range []string{webhookSecret, strings.TrimPrefix(bad, "sha256="), `"octocat"`} {
			if strings.Contains(line, secret) {
				t.Errorf("log line contains the secret, the signature or the body: %s", line)
			}
		}
		if strings.HasPrefix(e.Message, "webhook signature rejected") {
			rejected++
			if e.Data["address"] == "" || e.Data["delivery"] == "" || e.Data["reason"] != errWrongSignature.Error() {
				t.Errorf("rejection logged with %v, want address, delivery and reason", e.Data)
			}
		}
	}
	if rejected != maxSignatureFailures {
		t.Errorf("%d rejections logged, want %d", rejected, maxSignatureFailures)
	}
}

func TestRetryAfterSecondsRoundsUp(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want int
	}{{0, 1}, {time.Millisecond, 1}, {time.Second, 1}, {1500 * time.Millisecond, 2}, {59 * time.Second, 59}}
	for _, tt := range tests {
		if got := retryAfterSeconds(tt.in); got != tt.want {
			t.Errorf("retryAfterSeconds(%v) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func FuzzDecodeWebhookBody(f *testing.F) {
	f.Add([]byte(hookBody))
	f.Add([]byte(`{"service":"web","image":"v2"}`))
	f.Add([]byte(`{"service":1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		body, err := decodeWebhookBody(b)
		if err != nil {
			if controller.ErrorCode(err) != controller.EINVALID {
				t.Fatalf("error %v has code %q, want invalid", err, controller.ErrorCode(err))
			}
			return
		}
		if body.Service == "" || body.Image == "" {
			t.Fatalf("accepted %q without service or image", b)
		}
	})
}
