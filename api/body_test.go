package api

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
)

// Each route reads its body only after deciding who the caller is, and
// each refusal closes the connection with the body unread.
func TestServe_BodiesAreReadOnlyAfterAuthenticationAndWithinTheRouteLimit(t *testing.T) {
	tests := []struct {
		name   string
		head   string
		prefix string
		want   int
	}{
		{
			name: "anonymous deploy announcing 1 MiB",
			head: "POST /api/v1/services/web/deployments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n",
			want: fiber.StatusUnauthorized,
		},
		{
			name: "viewer deploying, 1 MiB announced",
			head: "POST /api/v1/services/web/deployments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + viewerSecret +
				"\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n",
			want: fiber.StatusForbidden,
		},
		{
			name: "deployer, chunked body past the limit",
			head: "POST /api/v1/services/web/deployments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + deployerSecret +
				"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
			prefix: fmt.Sprintf("%x\r\n%s\r\n", 70<<10, strings.Repeat(" ", 70<<10)),
			want:   fiber.StatusRequestEntityTooLarge,
		},
		{
			name: "deployer, compressed body",
			head: "POST /api/v1/services/web/deployments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + deployerSecret +
				"\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: 20\r\n\r\n",
			prefix: strings.Repeat("x", 20),
			want:   fiber.StatusUnsupportedMediaType,
		},
		{
			name: "webhook announcing 1 MiB",
			head: "POST /hooks/deploy HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n",
			want: fiber.StatusRequestEntityTooLarge,
		},
		{
			name: "unknown route announcing 1 MiB",
			head: "POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n",
			want: fiber.StatusNotFound,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			base := serve(t, h)
			prefix := tt.prefix
			if prefix == "" {
				// fasthttp hands a request to the handlers once it has the
				// body's first 8 KiB.
				prefix = strings.Repeat(" ", 8<<10)
			}
			resp := sendPartial(t, base, tt.head, prefix)
			wantStatus(t, resp, tt.want)
			if calls := h.ctl.Calls(); len(calls) != 0 {
				t.Errorf("controller called: %+v", calls)
			}
		})
	}
}

// A body the handlers never read must not be parsed as the next request:
// fasthttp 1.51 would otherwise serve what follows the first 8 KiB of an
// anonymous caller's body as a request of its own.
func TestServe_UnreadBodyIsNeverServedAsARequest(t *testing.T) {
	h := newHarness(t)
	base := serve(t, h)
	smuggled := "GET /api/v1/services HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + viewerSecret + "\r\n\r\n"
	body := strings.Repeat(" ", 8<<10) + smuggled
	head := fmt.Sprintf("POST /api/v1/services/web/rollback HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(body))
	// sendPartial fails the test when the connection stays open after the
	// first answer, which is where the smuggled request would be answered.
	resp := sendPartial(t, base, head, body)
	wantStatus(t, resp, fiber.StatusUnauthorized)
	for _, c := range h.ctl.Calls() {
		if c.method == "Services" {
			t.Errorf("the request hidden in the body was served: %+v", c)
		}
	}
}

// A body the route reads in full leaves the connection usable.
func TestServe_ReadBodyKeepsTheConnection(t *testing.T) {
	h := newHarness(t)
	base := serve(t, h)
	req, err := http.NewRequest(http.MethodPost, base+"/api/v1/services/web/deployments", strings.NewReader(`{"image":"v2"}`+strings.Repeat(" ", 20<<10)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+deployerSecret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	wantStatus(t, resp, fiber.StatusAccepted)
	if resp.Close {
		t.Error("a read body closed the connection")
	}
}
