package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/internal/reqbody"
	"github.com/deployd/deployd/pkg/controller"
)

const (
	headerSignature   = "X-Hub-Signature-256"
	headerDelivery    = "X-GitHub-Delivery"
	headerIdempotency = "Idempotency-Key"
	headerTimestamp   = "X-Deployd-Timestamp"

	// maxWebhookBody bounds what the webhook reads before the signature
	// says who sent it: a valid body is five short fields, and 64 KiB is
	// all an anonymous caller can make the server hold per request.
	maxWebhookBody = 64 << 10
	// timestampSkew is how far a signed timestamp may be from now, either
	// way, before the request counts as a replay.
	timestampSkew = 5 * time.Minute
	// webhookActor is the actor of every webhook deployment: the holder
	// of the webhook secret. A body's actor is only its claim.
	webhookActor = "webhook"
)

var (
	errNoSignature     = errors.New("missing " + headerSignature + " header")
	errBearerOnWebhook = errors.New("bearer tokens are not accepted on the webhook; sign the body with the webhook secret")
	errBadSignature    = errors.New("malformed " + headerSignature + " header; want sha256=<hex>")
	errWrongSignature  = errors.New("signature does not match the body")
	errBadTimestamp    = errors.New("malformed " + headerTimestamp + " header; want unix seconds")
	errStaleTimestamp  = errors.New(headerTimestamp + " is more than 5 minutes away from the server's clock")
	errNoTimestamp     = errors.New("missing " + headerTimestamp + " header; send unix seconds and sign \"<timestamp>.<body>\"")
)

// authScheme is the challenge of a 401: the webhook is authenticated by its
// signature, everything else by bearer tokens.
func authScheme(c *fiber.Ctx) string {
	if hasPathPrefix(c.Path(), "/hooks") {
		return `HMAC-SHA256 header="` + headerSignature + `"`
	}
	return "Bearer"
}

// verifySignature checks a GitHub-style "sha256=<hex>" header against the
// HMAC-SHA256 of payload, in constant time, and returns the signature. The
// error says why, for logs and the client; it never contains the secret
// or the expected value.
func verifySignature(secret, payload []byte, header string) ([sha256.Size]byte, error) {
	var sig [sha256.Size]byte
	if header == "" {
		return sig, errNoSignature
	}
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	if !ok || len(hexSig) != 2*sha256.Size {
		return sig, errBadSignature
	}
	if _, err := hex.Decode(sig[:], []byte(hexSig)); err != nil {
		return sig, errBadSignature
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(payload)
	if !hmac.Equal(sig[:], mac.Sum(nil)) {
		return sig, errWrongSignature
	}
	return sig, nil
}

// signedPayload is what the signature covers: the raw body, or
// "<timestamp>.<body>" when the sender stamps its requests.
func signedPayload(timestamp string, body []byte) []byte {
	if timestamp == "" {
		return body
	}
	p := make([]byte, 0, len(timestamp)+1+len(body))
	p = append(p, timestamp...)
	p = append(p, '.')
	return append(p, body...)
}

// parseTimestamp reads unix seconds; only digits, so that "+1e3" or " 12"
// cannot mean something the signer did not sign.
func parseTimestamp(s string) (time.Time, error) {
	if s == "" || len(s) > 12 || strings.Trim(s, "0123456789") != "" {
		return time.Time{}, errBadTimestamp
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, errBadTimestamp
	}
	return time.Unix(n, 0), nil
}

// authenticateWebhook decides whether the request was signed with the
// webhook secret, over a timestamp recent enough (unless unstamped
// requests are allowed). It returns the signature and until when it must
// be remembered to refuse a replay.
func (s *Server) authenticateWebhook(c *fiber.Ctx, body []byte, now time.Time) (sig [sha256.Size]byte, until time.Time, err error) {
	header := c.Get(headerSignature)
	if header == "" && c.Get(fiber.HeaderAuthorization) != "" {
		return sig, time.Time{}, errBearerOnWebhook
	}
	ts := c.Get(headerTimestamp)
	if ts == "" && !s.allowUnstamped {
		return sig, time.Time{}, errNoTimestamp
	}
	var stamped time.Time
	if ts != "" {
		t, err := parseTimestamp(ts)
		if err != nil {
			return sig, time.Time{}, err
		}
		stamped = t
	}
	sig, err = verifySignature(s.webhookSecret, signedPayload(ts, body), header)
	if err != nil {
		return sig, time.Time{}, err
	}
	if ts == "" {
		// Nothing bounds an unstamped request's life; the cache refuses
		// its replays for one window, the delivery id after that.
		return sig, now.Add(timestampSkew), nil
	}
	if d := now.Sub(stamped); d > timestampSkew || d < -timestampSkew {
		return sig, time.Time{}, errStaleTimestamp
	}
	return sig, stamped.Add(timestampSkew), nil
}

// webhook is POST /hooks/deploy. Everything that can refuse the request
// without the controller runs first, the signature check before the body
// is even parsed.
func (s *Server) webhook(c *fiber.Ctx) error {
	if len(s.webhookSecret) == 0 {
		return controller.Errorf(controller.ENOTFOUND, "no route for %s %s", c.Method(), c.Path())
	}
	addr := c.IP()
	now := s.now()
	if wait, blocked := s.failures.Blocked(addr); blocked {
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(retryAfterSeconds(wait)))
		return controller.Errorf(codeRateLimited, "too many failed signatures from this address; retry later")
	}
	body, err := reqbody.Read(c, maxWebhookBody)
	if err != nil {
		return err
	}
	delivery := c.Get(headerDelivery)
	if delivery == "" {
		delivery = c.Get(headerIdempotency)
	}
	sig, until, err := s.authenticateWebhook(c, body, now)
	if err != nil {
		s.signatureFailed(addr, delivery, err)
		return controller.Errorf(controller.EUNAUTHORIZED, "%s", err.Error())
	}

	c.Locals(localActor, "webhook")
	if !validRequestID(delivery) {
		// Without a key a captured delivery could be replayed for ever.
		return controller.Errorf(controller.EINVALID, "%s or %s header is required (up to 128 letters, digits, '-', '_' or '.')", headerDelivery, headerIdempotency)
	}
	c.Locals(localActor, "webhook:"+delivery)
	switch err := s.replays.admit(sig, delivery, now, until); {
	case errors.Is(err, errReplayed):
		// Signed by the secret's holder once; whoever sends it now is not
		// known to be them, so it counts against the address like a bad
		// signature and the trail does not credit it to the delivery.
		c.Locals(localActor, "")
		s.signatureFailed(addr, delivery, err)
		return controller.Errorf(controller.EUNAUTHORIZED, "%s", err.Error())
	case err != nil:
		return controller.Errorf(controller.EUNAVAILABLE, "%s", err.Error())
	}
	wb, err := decodeWebhookBody(body)
	if err != nil {
		return err
	}
	c.Locals(localTarget, wb.Service)
	if !controller.ValidServiceName(wb.Service) {
		return controller.Errorf(controller.ENOTFOUND, "no service %q", wb.Service)
	}
	d, replayed, err := s.ctl.DeployDelivery(c.UserContext(), delivery, wb.Service, controller.DeployRequest{
		Image: wb.Image,
		Trigger: controller.Trigger{
			Source: "webhook", Actor: webhookActor, OnBehalfOf: wb.Actor, Commit: wb.Commit, Ref: wb.Ref, Delivery: delivery,
		},
	})
	if err != nil {
		return err
	}
	c.Locals(localDeploymentID, d.ID)
	loc := "/api/v1/deployments/" + url.PathEscape(d.ID)
	c.Location(loc)
	status := fiber.StatusAccepted
	if replayed {
		status = fiber.StatusOK
	}
	return c.Status(status).JSON(WebhookAccepted{Deployment: deploymentOf(d), URL: loc})
}

// signatureFailed logs a refused delivery and counts it against the
// client's address. The secret, the signature and the body stay out of
// the log; a delivery id that is not an id is not repeated either.
func (s *Server) signatureFailed(addr, delivery string, reason error) {
	if !validRequestID(delivery) {
		delivery = "(invalid)"
	}
	f := logrus.Fields{"address": addr, "delivery": delivery, "reason": reason.Error()}
	s.failures.Fail(addr)
	if _, blocked := s.failures.Blocked(addr); blocked {
		s.log.WithFields(f).Warn("webhook signature rejected; address is now rate limited")
		return
	}
	s.log.WithFields(f).Warn("webhook signature rejected")
}

// retryAfterSeconds rounds up, so that a client waiting that long is no
// longer refused.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
