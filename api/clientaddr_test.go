package api

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/deployd/deployd/internal/clientaddr"
)

// newProxiedHarness is a server behind trusted proxies, served on a real
// loopback port so that requests have a TCP peer (127.0.0.1).
func newProxiedHarness(t *testing.T, trusted ...string) (*harness, string) {
	t.Helper()
	proxies, err := clientaddr.Parse(trusted)
	if err != nil {
		t.Fatal(err)
	}
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	ctl := &fakeController{deployment: sampleDeployment()}
	h := &harness{ctl: ctl, hook: hook, srv: New(Options{Controller: ctl, Tokens: testTokens,
		WebhookSecret: []byte(webhookSecret), Logger: logger, TrustedProxies: proxies})}
	return h, serve(t, h)
}

func postHook(t *testing.T, base string, req *http.Request, forwardedFor string) int {
	t.Helper()
	out, err := http.NewRequest(http.MethodPost, base+"/hooks/deploy", req.Body)
	if err != nil {
		t.Fatal(err)
	}
	out.Header = req.Header.Clone()
	if forwardedFor != "" {
		out.Header.Set("X-Forwarded-For", forwardedFor)
	}
	resp, err := http.DefaultClient.Do(out)
	if err != nil {
		t.Fatalf("POST /hooks/deploy: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Behind a trusted proxy, one client's failed signatures block that
// client, not every client of the proxy; a client cannot escape its block
// by prepending addresses of its own to X-Forwarded-For.
func TestClientAddress_FailuresBehindAProxyAreTheClients(t *testing.T) {
	tests := []struct {
		name        string
		trusted     []string
		wantOther   int
		wantSpoofer int
	}{
		{"proxy trusted", []string{"127.0.0.1"}, fiber.StatusAccepted, fiber.StatusTooManyRequests},
		// Without the setting every client is the proxy: this is the
		// lock-out the setting exists to prevent.
		{"proxy not trusted", nil, fiber.StatusTooManyRequests, fiber.StatusTooManyRequests},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, base := newProxiedHarness(t, tt.trusted...)
			bad := sign("guess", "1."+hookBody)
			for i := range maxSignatureFailures {
				req := hookRequest(hookBody, map[string]string{"X-Deployd-Timestamp": "1", "X-Hub-Signature-256": bad, "X-GitHub-Delivery": "d" + strconv.Itoa(i)})
				if got := postHook(t, base, req, "198.51.100.1"); got != fiber.StatusUnauthorized {
					t.Fatalf("bad signature %d: status %d, want 401", i, got)
				}
			}
			if got := postHook(t, base, signedHook(hookBody, "other"), "198.51.100.2"); got != tt.wantOther {
				t.Fatalf("another client's good delivery: status %d, want %d", got, tt.wantOther)
			}
			spoofed := postHook(t, base, signedHook(hookBody, "spoof"), "203.0.113.77, 198.51.100.1")
			if spoofed != tt.wantSpoofer {
				t.Fatalf("blocked client with a spoofed prefix: status %d, want %d", spoofed, tt.wantSpoofer)
			}
			if len(tt.trusted) == 0 {
				return
			}
			var addrs []string
			for _, e := range h.ctl.AuditEntries() {
				addrs = append(addrs, e.Address)
			}
			if got := strings.Join(addrs[len(addrs)-2:], " "); got != "198.51.100.2 198.51.100.1" {
				t.Fatalf("audit addresses = %v, want the clients', not the proxy's", addrs)
			}
		})
	}
}

// From a peer that is not a trusted proxy, X-Forwarded-For is ignored, so
// a client cannot pick an address to spread its failures over.
func TestClientAddress_UntrustedPeerCannotChooseItsAddress(t *testing.T) {
	_, base := newProxiedHarness(t, "10.0.0.0/8")
	bad := sign("guess", "1."+hookBody)
	for i := range maxSignatureFailures {
		req := hookRequest(hookBody, map[string]string{"X-Deployd-Timestamp": "1", "X-Hub-Signature-256": bad, "X-GitHub-Delivery": "d"})
		postHook(t, base, req, "198.51.100."+strconv.Itoa(i))
	}
	if got := postHook(t, base, stampedHook(time.Now(), hookBody, "good"), "198.51.100.200"); got != fiber.StatusTooManyRequests {
		t.Fatalf("status %d, want 429: the peer is blocked whatever it claims", got)
	}
}
