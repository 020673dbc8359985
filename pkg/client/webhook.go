package client

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/deployd/deployd/api"
)

// Webhook headers, as POST /hooks/deploy reads them.
const (
	HeaderSignature = "X-Hub-Signature-256"
	HeaderTimestamp = "X-Deployd-Timestamp"
	HeaderDelivery  = "X-GitHub-Delivery"
)

// SignWebhook returns the X-Deployd-Timestamp and X-Hub-Signature-256
// values of body sent at at: HMAC-SHA256 under secret of
// "<unix seconds>.<body>". The server accepts each signature once, within
// five minutes of its timestamp.
func SignWebhook(secret, body []byte, at time.Time) (timestamp, signature string) {
	timestamp = strconv.FormatInt(at.Unix(), 10)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return timestamp, "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// WebhookDelivery is what POST /hooks/deploy deploys.
type WebhookDelivery struct {
	Service string `json:"service"`
	Image   string `json:"image"`
	Commit  string `json:"commit,omitempty"`
	Actor   string `json:"actor,omitempty"`
	Ref     string `json:"ref,omitempty"`
}

// Hook sends signed webhook deliveries to one deployd server. Safe for
// concurrent use.
type Hook struct {
	url    *url.URL
	secret []byte
	hc     *http.Client
	now    func() time.Time
}

// NewHook returns a sender for the server at baseURL (as New takes it)
// signing with secret. A nil httpClient means http.DefaultClient; bound
// calls with their contexts.
func NewHook(baseURL string, secret []byte, httpClient *http.Client) (*Hook, error) {
	if len(secret) == 0 {
		return nil, errors.New("no webhook secret")
	}
	// New checks the URL; the token only has to be valid.
	c, err := New(baseURL, "unused", httpClient)
	if err != nil {
		return nil, err
	}
	return &Hook{url: c.endpoint(nil, "hooks", "deploy"), secret: bytes.Clone(secret), hc: c.hc, now: time.Now}, nil
}

// Send signs d, stamped now, and posts it as delivery. A delivery id seen
// before answers with the deployment it started and replayed set. Refusals
// are *APIError values.
func (h *Hook) Send(ctx context.Context, delivery string, d WebhookDelivery) (accepted api.WebhookAccepted, replayed bool, err error) {
	body, err := json.Marshal(d)
	if err != nil {
		return api.WebhookAccepted{}, false, fmt.Errorf("encode delivery: %w", err)
	}
	ts, sig := SignWebhook(h.secret, body, h.now())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url.String(), bytes.NewReader(body))
	if err != nil {
		return api.WebhookAccepted{}, false, fmt.Errorf("POST %s: %w", h.url.Path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, sig)
	req.Header.Set(HeaderDelivery, delivery)
	resp, err := h.hc.Do(req)
	if err != nil {
		return api.WebhookAccepted{}, false, fmt.Errorf("POST %s: %w", h.url.Path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return api.WebhookAccepted{}, false, decodeAPIError(resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		return api.WebhookAccepted{}, false, fmt.Errorf("POST %s: read answer: %w", h.url.Path, err)
	}
	if err := json.Unmarshal(b, &accepted); err != nil {
		return api.WebhookAccepted{}, false, fmt.Errorf("POST %s: decode answer: %w", h.url.Path, err)
	}
	return accepted, resp.StatusCode == http.StatusOK, nil
}

// ValidDelivery reports whether id is a delivery id the server accepts:
// up to 128 letters, digits, '-', '_' or '.'.
func ValidDelivery(id string) bool {
	return id != "" && len(id) <= 128 && strings.Trim(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == ""
}
