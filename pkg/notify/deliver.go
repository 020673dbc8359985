package notify

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
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/pkg/controller"
)

// maxResponseBody bounds what is read of a receiver's answer: only the
// status matters, the rest is drained so connections are reused.
const maxResponseBody = 64 << 10

// errInvalidURL replaces url.Parse's error, which would quote the URL.
var errInvalidURL = errors.New("invalid target URL")

// worker delivers to one target, in order, from its own queue and
// goroutine (run).
type worker struct {
	Target
	client *http.Client
	queue  chan item
	// backlog is what the outbox held at start, until the queue is made.
	backlog []item
}

// run delivers w's queue until Close, then drains it.
func (n *Notifier) run(w *worker) {
	defer n.wg.Done()
	for {
		select {
		case it := <-w.queue:
			if !n.deliver(w, it, true) {
				n.leaveQueue(w, it)
				return
			}
		case <-n.stopping.Done():
			n.drain(w)
			return
		}
	}
}

// drain tries what is queued once each, at shutdown, and stops at the
// first failure worth a retry: the target is failing, and shutdown does
// not wait for it.
func (n *Notifier) drain(w *worker) {
	for {
		select {
		case it := <-w.queue:
			if !n.deliver(w, it, false) {
				n.leaveQueue(w, it)
				return
			}
		default:
			return
		}
	}
}

// leaveQueue leaves first and the rest of w's queue at shutdown: to the
// outbox, or dropped when it holds them not.
func (n *Notifier) leaveQueue(w *worker, first item) {
	kept := 0
	for it, ok := first, true; ok; {
		if n.leave(w.Name, it, "deployd stopped before it was delivered") {
			kept++
		}
		select {
		case it = <-w.queue:
		default:
			ok = false
		}
	}
	if kept > 0 {
		n.log.WithFields(logrus.Fields{"target": w.Name, "count": kept}).
			Info("notifications not delivered yet kept in the store; they are sent after the next start")
	}
}

// deliver sends it to w's target. With retry, failures the retry policy
// deems passing (connection errors, 429, 5xx) are retried with
// exponential backoff up to retryMax times, then given up; without, there
// is one attempt. Refusals (other 4xx) are given up at once. finished is
// false when it is still pending: shutdown cut it short, or a single
// attempt failed in a way worth a retry.
func (n *Notifier) deliver(w *worker, it item, retry bool) (finished bool) {
	body, err := w.body(it.note)
	if err != nil {
		n.giveUp(w.Name, it, err)
		return true
	}
	for attempt := 0; ; attempt++ {
		ctx := n.sendCtx
		if attempt > 0 {
			// A retry goes to a target that has just failed: Close
			// cuts it short at once rather than wait for it.
			ctx = n.stopping
		}
		resp, err := w.post(ctx, body)
		if err == nil && resp.StatusCode >= 200 && resp.StatusCode <= 299 {
			n.forget(w.Name, it)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		failure := describe(it.note.Kind, resp, err)
		// The policy's error is not used: it would quote the URL.
		again, _ := retryablehttp.DefaultRetryPolicy(ctx, resp, err)
		if !again || errors.Is(err, errInvalidURL) {
			n.giveUp(w.Name, it, failure)
			return true
		}
		if attempt >= n.s.retryMax {
			n.giveUp(w.Name, it, fmt.Errorf("%w (%d attempts)", failure, attempt+1))
			return true
		}
		if !retry {
			return false
		}
		// Capped, a Retry-After asking for an hour included: the attempts
		// are few, and a target that is still not ready gets the rest.
		wait := min(retryablehttp.DefaultBackoff(n.s.retryWaitMin, n.s.retryWaitMax, attempt, resp), n.s.retryWaitMax)
		n.noteLog(w.Name, it.note).WithError(failure).WithField("retry_in", wait.String()).Debug("notification attempt failed")
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-n.stopping.Done():
			t.Stop()
			return false
		}
	}
}

// post makes one attempt. The response's body is read (bounded) and
// closed; its status and headers stay readable. Errors may contain the
// URL: pass them through describe before logging.
func (w *worker) post(ctx context.Context, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return nil, errInvalidURL
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "deployd")
	if len(w.Secret) > 0 {
		req.Header.Set(SignatureHeader, Sign(w.Secret, body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
	_ = resp.Body.Close() // a response body, read to the end or to the bound
	return resp, nil
}

// describe is a failed attempt as an error without the URL.
func describe(kind string, resp *http.Response, err error) error {
	if err != nil {
		return fmt.Errorf("post %s: %w", kind, stripURL(err))
	}
	return fmt.Errorf("post %s: receiver answered %s", kind, resp.Status)
}

func (w *worker) body(note controller.Notification) ([]byte, error) {
	var v any = payloadOf(note)
	if w.Type == TypeSlack {
		v = struct {
			Text string `json:"text"`
		}{SlackText(note)}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", note.Kind, err)
	}
	return b, nil
}

// Sign returns the X-Deployd-Signature value for body: "sha256=" and the
// hex HMAC-SHA256 of body with secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// stripURL drops the URL net/http puts into its errors: a Slack URL's path
// is its secret.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
