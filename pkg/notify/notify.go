// Package notify delivers controller notifications to webhooks (generic
// JSON and Slack-compatible incoming webhooks) in the background.
package notify

import (
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
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/pkg/controller"
)

// Target types.
const (
	TypeWebhook = "webhook"
	TypeSlack   = "slack"
)

// SignatureHeader carries "sha256=<hex HMAC-SHA256 of the body>" when a
// target has a secret.
const SignatureHeader = "X-Deployd-Signature"

// Target is one place notifications go.
type Target struct {
	Name string
	// Type is TypeWebhook (the Notification as JSON) or TypeSlack
	// ({"text": "..."}).
	Type string
	// URL often holds a secret in its path (Slack's do); it is never
	// logged.
	URL string
	// Secret, when set, signs each body (see SignatureHeader).
	Secret []byte
	// Events lists the notification kinds the target wants; empty means
	// all.
	Events []string
}

func (t Target) wants(kind string) bool {
	if len(t.Events) == 0 {
		return true
	}
	for _, e := range t.Events {
		if e == kind {
			return true
		}
	}
	return false
}

// settings are the delivery knobs; tests shorten the waits.
type settings struct {
	queueSize      int
	retryMax       int
	retryWaitMin   time.Duration
	retryWaitMax   time.Duration
	requestTimeout time.Duration
}

func defaultSettings() settings {
	return settings{
		queueSize:      256,
		retryMax:       3,
		retryWaitMin:   time.Second,
		retryWaitMax:   10 * time.Second,
		requestTimeout: 10 * time.Second,
	}
}

// maxResponseBody bounds what is read of a receiver's answer: only the
// status matters, the rest is drained so connections are reused.
const maxResponseBody = 64 << 10

// Notifier queues notifications and delivers them from one goroutine it
// owns, so Notify never blocks a deploy. Create it with New and stop it
// with Close.
type Notifier struct {
	targets   []sender
	log       logrus.FieldLogger
	onFailure func(target string)
	queue     chan controller.Notification

	// ctx bounds deliveries; Close cancels it when its own deadline runs
	// out, so a slow receiver cannot hold shutdown.
	ctx      context.Context
	cancel   context.CancelFunc
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

var _ controller.Notifier = (*Notifier)(nil)

type sender struct {
	Target
	client *retryablehttp.Client
}

// New starts a Notifier delivering to targets. onFailure, which may be nil,
// is called with a target's name for every notification that target did not
// get (dropped on a full queue, or refused after retries); it must not
// block.
func New(targets []Target, log logrus.FieldLogger, onFailure func(target string)) *Notifier {
	return newNotifier(targets, log, onFailure, defaultSettings())
}

func newNotifier(targets []Target, log logrus.FieldLogger, onFailure func(string), s settings) *Notifier {
	if onFailure == nil {
		onFailure = func(string) {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Notifier{
		log:       log,
		onFailure: onFailure,
		queue:     make(chan controller.Notification, s.queueSize),
		ctx:       ctx,
		cancel:    cancel,
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	for _, t := range targets {
		t.Secret = append([]byte(nil), t.Secret...)
		t.Events = append([]string(nil), t.Events...)
		c := retryablehttp.NewClient()
		c.RetryMax = s.retryMax
		c.RetryWaitMin = s.retryWaitMin
		c.RetryWaitMax = s.retryWaitMax
		c.HTTPClient.Timeout = s.requestTimeout
		c.Logger = redactingLogger{log: log.WithField("target", t.Name)}
		// Without an ErrorHandler retryablehttp builds its own error,
		// which names the URL; passing through keeps the last response.
		c.ErrorHandler = retryablehttp.PassthroughErrorHandler
		n.targets = append(n.targets, sender{Target: t, client: c})
	}
	go n.run()
	return n
}

// Notify queues n for every target that wants its kind. It never blocks:
// when the queue is full, or the Notifier is closed, the notification is
// dropped and counted as a failure of each such target.
func (n *Notifier) Notify(note controller.Notification) {
	if note.Time.IsZero() {
		note.Time = time.Now().UTC()
	}
	select {
	case <-n.stop:
		n.dropped(note, "notifier closed")
		return
	default:
	}
	select {
	case n.queue <- note:
	default:
		n.dropped(note, "queue full")
	}
}

func (n *Notifier) dropped(note controller.Notification, why string) {
	for _, t := range n.targets {
		if t.wants(note.Kind) {
			n.log.WithFields(logrus.Fields{"target": t.Name, "kind": note.Kind, "service": note.Service}).
				Warnf("notification dropped: %s", why)
			n.onFailure(t.Name)
		}
	}
}

func (n *Notifier) run() {
	defer close(n.done)
	for {
		select {
		case note := <-n.queue:
			n.deliver(note)
		case <-n.stop:
			for {
				select {
				case note := <-n.queue:
					n.deliver(note)
				default:
					return
				}
			}
		}
	}
}

func (n *Notifier) deliver(note controller.Notification) {
	for _, t := range n.targets {
		if !t.wants(note.Kind) {
			continue
		}
		if err := t.send(n.ctx, note); err != nil {
			n.log.WithFields(logrus.Fields{"target": t.Name, "kind": note.Kind, "service": note.Service}).
				WithError(err).Warn("notification not delivered")
			n.onFailure(t.Name)
		}
	}
}

// Close stops taking notifications and delivers what is queued until ctx
// ends; then it abandons the rest (counted as failures) and returns once the
// delivery goroutine has stopped. It returns ctx's error when it gave up.
func (n *Notifier) Close(ctx context.Context) error {
	n.stopOnce.Do(func() { close(n.stop) })
	select {
	case <-n.done:
		n.cancel()
		return nil
	case <-ctx.Done():
		n.cancel()
		<-n.done
		return fmt.Errorf("notify: stopped before every notification was delivered: %w", ctx.Err())
	}
}

// send delivers one notification. Its errors never contain the URL.
func (t sender) send(ctx context.Context, note controller.Notification) error {
	body, err := t.body(note)
	if err != nil {
		return err
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, t.URL, body)
	if err != nil {
		return errors.New("invalid target URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "deployd")
	if len(t.Secret) > 0 {
		req.Header.Set(SignatureHeader, Sign(t.Secret, body))
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return fmt.Errorf("post %s: %w", note.Kind, stripURL(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("post %s: receiver answered %s", note.Kind, resp.Status)
	}
	return nil
}

func (t sender) body(note controller.Notification) ([]byte, error) {
	var v any = note
	if t.Type == TypeSlack {
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
