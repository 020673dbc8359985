// Package client is a small Go client for deployd's REST API: deploy, roll
// back, cancel, read services and deployments, and follow a deployment's
// progress events. It decodes into the controller's plain types, so it
// speaks exactly the JSON the API serves.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/deployd/deployd/api"
	"github.com/deployd/deployd/pkg/controller"
)

// maxResponseBody bounds what a response may hold; the largest answer, a
// list of 500 deployments with their steps' output tails, is well under it.
const maxResponseBody = 32 << 20

// Client calls one deployd server with one bearer token. It is safe for
// concurrent use.
type Client struct {
	base  *url.URL
	token string
	hc    *http.Client

	// Backoff between reconnects of an event stream: it starts at
	// minBackoff, doubles up to maxBackoff and resets when events arrive.
	minBackoff, maxBackoff time.Duration
}

// New returns a client for the server at baseURL (http or https, optionally
// with a path prefix when deployd sits behind a proxy) that authenticates
// with token. A nil httpClient means one without an overall timeout, since
// event streams last as long as a deployment: bound calls with their
// contexts instead.
func New(baseURL, token string, httpClient *http.Client) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("server URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("server URL %q: must start with http:// or https://", baseURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("server URL %q: no host", baseURL)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		// The error would otherwise repeat any password in the URL.
		return nil, errors.New("server URL: must not hold user info, a query or a fragment")
	}
	if token == "" {
		return nil, errors.New("no API token")
	}
	if strings.IndexFunc(token, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		// A stray newline from `cat token` would otherwise break the header.
		return nil, errors.New("API token contains whitespace or control characters")
	}
	if httpClient == nil {
		httpClient = &http.Client{}
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return &Client{
		base:       u,
		token:      token,
		hc:         httpClient,
		minBackoff: 250 * time.Millisecond,
		maxBackoff: 5 * time.Second,
	}, nil
}

// APIError is an error answer of the API. Code is one of the controller's
// error codes (controller.ECONFLICT, ...); DeploymentID names the running
// deployment when a deploy was refused because the service is busy.
type APIError struct {
	Status       int
	Code         string
	Message      string
	DeploymentID string
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	s := fmt.Sprintf("deployd answered %d", e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	s += ": " + msg
	if e.DeploymentID != "" {
		s += " (deployment " + e.DeploymentID + ")"
	}
	return s
}

// Is lets errors.Is match the controller's sentinels: not_found is
// controller.ErrNotFound, unavailable is controller.ErrUnavailable.
func (e *APIError) Is(target error) bool {
	switch target {
	case controller.ErrNotFound:
		return e.Code == controller.ENOTFOUND
	case controller.ErrUnavailable:
		return e.Code == controller.EUNAVAILABLE
	}
	return false
}

// endpoint returns the URL of the API path made of segments, each escaped,
// under the base URL's own path.
func (c *Client) endpoint(query url.Values, segments ...string) *url.URL {
	u := *c.base
	var raw strings.Builder
	raw.WriteString(c.base.EscapedPath())
	for _, s := range segments {
		raw.WriteByte('/')
		raw.WriteString(url.PathEscape(s))
	}
	u.RawPath = raw.String()
	// PathUnescape cannot fail on what PathEscape produced and EscapedPath
	// returned.
	u.Path, _ = url.PathUnescape(u.RawPath)
	if len(query) > 0 {
		u.RawQuery = query.Encode()
	}
	return &u
}

func (c *Client) newRequest(ctx context.Context, method string, u *url.URL, in any) (*http.Request, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encode request body: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u.Path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// call sends one request and decodes a 2xx answer into out. Other answers
// are *APIError.
func (c *Client) call(ctx context.Context, method string, u *url.URL, in, out any) error {
	req, err := c.newRequest(ctx, method, u, in)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u.Path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeAPIError(resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, u.Path, err)
	}
	if len(b) > maxResponseBody {
		return fmt.Errorf("%s %s: answer larger than %d MiB", method, u.Path, maxResponseBody>>20)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, u.Path, err)
	}
	return nil
}

// decodeAPIError reads the API's error JSON. Answers that are not (a proxy's
// HTML page) still give an *APIError with the status.
func decodeAPIError(resp *http.Response) error {
	e := &APIError{Status: resp.StatusCode}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return e
	}
	var body struct {
		Error        string `json:"error"`
		Code         string `json:"code"`
		DeploymentID string `json:"deployment_id"`
	}
	if json.Unmarshal(b, &body) == nil {
		e.Code, e.Message, e.DeploymentID = body.Code, body.Error, body.DeploymentID
	}
	return e
}

// Deploy asks for image (a tag such as "v2" or a full reference within the
// service's repository) to be deployed to service. It returns as soon as the
// deployment is accepted; follow it with Events or Deployment. A busy
// service is an *APIError with Code controller.ECONFLICT and DeploymentID
// set. onBehalfOf is recorded beside the token's name as an unverified
// claim (a CI job's user, say); it never replaces the token's name.
func (c *Client) Deploy(ctx context.Context, service, image, commit, onBehalfOf string) (api.Deployment, error) {
	in := struct {
		Image      string `json:"image"`
		Commit     string `json:"commit,omitempty"`
		OnBehalfOf string `json:"on_behalf_of,omitempty"`
	}{image, commit, onBehalfOf}
	var d api.Deployment
	err := c.call(ctx, http.MethodPost, c.endpoint(nil, "api", "v1", "services", service, "deployments"), in, &d)
	return d, err
}

// Rollback asks for service's standby color to be made active again. It
// returns once the rollback is accepted; ECONFLICT without a standby, and
// ESCHEMACHANGE when the rollback crosses a breaking schema change and
// confirmSchemaChange is false.
func (c *Client) Rollback(ctx context.Context, service string, confirmSchemaChange bool) (api.Deployment, error) {
	var in any
	if confirmSchemaChange {
		in = struct {
			ConfirmSchemaChange bool `json:"confirm_schema_change"`
		}{true}
	}
	var d api.Deployment
	err := c.call(ctx, http.MethodPost, c.endpoint(nil, "api", "v1", "services", service, "rollback"), in, &d)
	return d, err
}

// Cancel asks a running deployment to stop at its next safe point and
// returns it as it stands. ECONFLICT when it has ended or already switched
// traffic.
func (c *Client) Cancel(ctx context.Context, id string) (api.Deployment, error) {
	var d api.Deployment
	err := c.call(ctx, http.MethodPost, c.endpoint(nil, "api", "v1", "deployments", id, "cancel"), nil, &d)
	return d, err
}

// Service returns one service; an unknown one is an *APIError matching
// controller.ErrNotFound.
func (c *Client) Service(ctx context.Context, name string) (api.Service, error) {
	var v api.Service
	err := c.call(ctx, http.MethodGet, c.endpoint(nil, "api", "v1", "services", name), nil, &v)
	return v, err
}

// Services returns every configured service.
func (c *Client) Services(ctx context.Context) ([]api.Service, error) {
	var out api.ServiceList
	err := c.call(ctx, http.MethodGet, c.endpoint(nil, "api", "v1", "services"), nil, &out)
	return out.Services, err
}

// Deployments returns the newest deployments first, of service or, when it
// is empty, of all services. A limit of 0 leaves the server's default.
func (c *Client) Deployments(ctx context.Context, service string, limit int) ([]api.Deployment, error) {
	q := url.Values{}
	if service != "" {
		q.Set("service", service)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out api.DeploymentList
	err := c.call(ctx, http.MethodGet, c.endpoint(q, "api", "v1", "deployments"), nil, &out)
	return out.Deployments, err
}

// Deployment returns one deployment with its steps; an unknown id is an
// *APIError matching controller.ErrNotFound.
func (c *Client) Deployment(ctx context.Context, id string) (api.Deployment, error) {
	var d api.Deployment
	err := c.call(ctx, http.MethodGet, c.endpoint(nil, "api", "v1", "deployments", id), nil, &d)
	return d, err
}
