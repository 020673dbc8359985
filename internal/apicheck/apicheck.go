// Package apicheck checks HTTP responses against deployd's OpenAPI
// document, so that tests notice when the document and the code drift
// apart: the api package's tests check the fake-backed server against the
// embedded document, the end-to-end suite checks a running daemon against
// the document that daemon serves (see Transport).
//
// Only tests import it; nothing here belongs in the daemon.
package apicheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// DocumentPath is where deployd serves its OpenAPI document (viewer).
const DocumentPath = "/api/v1/openapi.yaml"

// eventStream is the media type of the event streams (GET
// /api/v1/deployments/{id}/events and GET /api/v1/events).
const eventStream = "text/event-stream"

// Checker checks responses against one OpenAPI document. It is safe for
// concurrent use.
type Checker struct {
	router routers.Router
}

// Load parses and validates an OpenAPI document.
//
// The document leaves its response objects open, so that a field added
// later does not break strict clients; Load closes every response object
// that lists properties and says nothing about others
// (additionalProperties: false), so that a field the code sends and the
// document lacks fails the check.
func Load(ctx context.Context, data []byte) (*Checker, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("parse OpenAPI document: %w", err)
	}
	if err := doc.Validate(ctx); err != nil {
		return nil, fmt.Errorf("invalid OpenAPI document: %w", err)
	}
	closeResponseObjects(doc)
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route OpenAPI document: %w", err)
	}
	return &Checker{router: router}, nil
}

// closeResponseObjects sets additionalProperties: false on every object
// schema reachable from a response that lists properties and leaves
// additionalProperties unset. Schemas combined with allOf siblings that add
// properties would be broken by this; the document has none (its allOf
// wrappers only add nullable).
func closeResponseObjects(doc *openapi3.T) {
	seen := map[*openapi3.Schema]bool{}
	var walk func(ref *openapi3.SchemaRef)
	walk = func(ref *openapi3.SchemaRef) {
		if ref == nil || ref.Value == nil || seen[ref.Value] {
			return
		}
		s := ref.Value
		seen[s] = true
		if len(s.Properties) > 0 && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
			s.AdditionalProperties = openapi3.AdditionalProperties{Has: openapi3.Ptr(false)}
		}
		for _, p := range s.Properties {
			walk(p)
		}
		walk(s.Items)
		walk(s.AdditionalProperties.Schema)
		for _, group := range []openapi3.SchemaRefs{s.AllOf, s.AnyOf, s.OneOf} {
			for _, sub := range group {
				walk(sub)
			}
		}
	}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			for _, resp := range op.Responses.Map() {
				if resp.Value == nil {
					continue
				}
				for _, mt := range resp.Value.Content {
					walk(mt.Schema)
				}
			}
		}
	}
}

// IsAPIPath reports whether path belongs to the API the document
// describes. Everything else is the status page: HTML, not part of the
// contract.
func IsAPIPath(path string) bool {
	under := func(prefix string) bool { return path == prefix || strings.HasPrefix(path, prefix+"/") }
	return path == "/healthz" || path == "/readyz" || path == "/metrics" || under("/api") || under("/hooks")
}

// Check validates resp, the answer to resp.Request, against the document:
// its status must be one the operation lists, and its headers and body
// must match what the document says of that status. A path or method the
// document lacks is an error; paths outside the API (IsAPIPath) are not
// checked.
//
// Check reads the body and puts an unread copy back, so the caller still
// reads it. An event stream's body is left alone: its status, headers and
// media type are checked, its frames are not. The document describes the
// stream as a string whose frames carry Event JSON by prose alone, so
// there is no schema to hold a frame against, and a stream only ends with
// the deployment: reading it here would stall the caller.
func (c *Checker) Check(resp *http.Response) error {
	req := resp.Request
	if req == nil {
		return errors.New("response without its request")
	}
	if !IsAPIPath(req.URL.Path) {
		return nil
	}
	what := fmt.Sprintf("%s %s -> %d", req.Method, req.URL.Path, resp.StatusCode)
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		return fmt.Errorf("%s: not in the OpenAPI document: %w", what, err)
	}
	opts := &openapi3filter.Options{
		IncludeResponseStatus: true,
		MultiError:            true,
		SchemaValidationOptions: []openapi3.SchemaValidationOption{
			openapi3.EnableFormatValidation(),
			// The path and the reason say what is wrong; kin-openapi's dump
			// of the schema and the value runs to hundreds of lines.
			openapi3.DisableSchemaErrorDetails(),
		},
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route, Options: opts,
		},
		Status:  resp.StatusCode,
		Header:  resp.Header,
		Options: opts,
	}

	if isEventStream(resp.Header) {
		opts.ExcludeResponseBody = true
		in.Body = io.NopCloser(strings.NewReader(""))
		if err := openapi3filter.ValidateResponse(req.Context(), in); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		// ValidateResponse skips the media type along with the body.
		if r := route.Operation.Responses.Status(resp.StatusCode); r == nil || r.Value == nil || r.Value.Content.Get(eventStream) == nil {
			return fmt.Errorf("%s: the document lists no %s answer for this status", what, eventStream)
		}
		return nil
	}

	body, err := io.ReadAll(resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// A broken connection is no answer to judge. The caller reads what
		// arrived, then the same error, and decides what it means.
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errReader{err}))
		return nil
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(req.Context(), in); err != nil {
		return fmt.Errorf("%s: %w; body %.500s", what, err, body)
	}
	return nil
}

func isEventStream(h http.Header) bool {
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	return err == nil && mt == eventStream
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
