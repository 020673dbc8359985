package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"unicode"

	"github.com/deployd/deployd/pkg/controller"
)

const (
	maxDeployBody = 64 << 10
	maxFieldLen   = 256
)

// deployBody is the JSON body of POST /api/v1/services/:name/deployments.
// OnBehalfOf is a claim the caller makes; Actor is its older name, still
// read so that existing clients keep working, and never the recorded actor.
type deployBody struct {
	Image      string `json:"image"`
	Commit     string `json:"commit"`
	OnBehalfOf string `json:"on_behalf_of"`
	Actor      string `json:"actor"`
}

// decodeDeployBody parses a deploy request strictly: one JSON object, no
// unknown fields, string values only, an image present. Every failure is an
// EINVALID *controller.Error whose message says what is wrong. Whether the
// image belongs to the service is the controller's call.
func decodeDeployBody(b []byte) (deployBody, error) {
	var body deployBody
	if len(b) > maxDeployBody {
		return body, controller.Errorf(controller.EINVALID, "request body is larger than %d KiB", maxDeployBody>>10)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		return deployBody{}, invalidJSON(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return deployBody{}, controller.Errorf(controller.EINVALID, "request body must hold a single JSON object")
	}
	if body.Image == "" {
		return deployBody{}, controller.Errorf(controller.EINVALID, "image is required")
	}
	err := checkTextFields(field{"image", body.Image}, field{"commit", body.Commit},
		field{"on_behalf_of", body.OnBehalfOf}, field{"actor", body.Actor})
	if err != nil {
		return deployBody{}, err
	}
	if body.Actor != "" && body.OnBehalfOf != "" && body.Actor != body.OnBehalfOf {
		return deployBody{}, controller.Errorf(controller.EINVALID, "actor is the old name of on_behalf_of; send one of them")
	}
	if body.OnBehalfOf == "" {
		body.OnBehalfOf = body.Actor
	}
	body.Actor = ""
	return body, nil
}

// rollbackBody is the optional JSON body of POST
// /api/v1/services/:name/rollback.
type rollbackBody struct {
	// ConfirmSchemaChange lets the rollback cross a breaking schema
	// change (controller.RollbackRequest).
	ConfirmSchemaChange bool `json:"confirm_schema_change"`
}

// decodeRollbackBody parses a rollback request: no body at all (or only
// blanks) asks for a plain rollback, anything else must be one JSON
// object without unknown fields. Failures are EINVALID *controller.Error
// values.
func decodeRollbackBody(b []byte) (rollbackBody, error) {
	var body rollbackBody
	if len(b) > maxDeployBody {
		return body, controller.Errorf(controller.EINVALID, "request body is larger than %d KiB", maxDeployBody>>10)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return body, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		return rollbackBody{}, invalidJSON(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return rollbackBody{}, controller.Errorf(controller.EINVALID, "request body must hold a single JSON object")
	}
	return body, nil
}

// webhookBody is the JSON body of POST /hooks/deploy.
type webhookBody struct {
	Service string `json:"service"`
	Image   string `json:"image"`
	Commit  string `json:"commit"`
	Actor   string `json:"actor"`
	Ref     string `json:"ref"`
}

// decodeWebhookBody parses a verified delivery as strictly as a deploy
// request: one object, no unknown fields, strings only, a service and an
// image present. Failures are EINVALID *controller.Error values.
func decodeWebhookBody(b []byte) (webhookBody, error) {
	var body webhookBody
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		return webhookBody{}, invalidJSON(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return webhookBody{}, controller.Errorf(controller.EINVALID, "request body must hold a single JSON object")
	}
	if body.Service == "" {
		return webhookBody{}, controller.Errorf(controller.EINVALID, "service is required")
	}
	if body.Image == "" {
		return webhookBody{}, controller.Errorf(controller.EINVALID, "image is required")
	}
	err := checkTextFields(field{"service", body.Service}, field{"image", body.Image}, field{"commit", body.Commit},
		field{"actor", body.Actor}, field{"ref", body.Ref})
	if err != nil {
		return webhookBody{}, err
	}
	return body, nil
}

type field struct{ name, value string }

// checkTextFields bounds free-text values: they end up in logs, labels and
// the status page.
func checkTextFields(fields ...field) error {
	for _, f := range fields {
		if len(f.value) > maxFieldLen {
			return controller.Errorf(controller.EINVALID, "%s is longer than %d bytes", f.name, maxFieldLen)
		}
		for _, r := range f.value {
			if unicode.IsControl(r) {
				return controller.Errorf(controller.EINVALID, "%s contains a control character", f.name)
			}
		}
	}
	return nil
}

func invalidJSON(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.Is(err, io.EOF):
		return controller.Errorf(controller.EINVALID, "request body is empty; want a JSON object with an image")
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return controller.Errorf(controller.EINVALID, "request body must be a JSON object")
		}
		return controller.Errorf(controller.EINVALID, "%s must be a %s", typeErr.Field, typeErr.Type)
	case errors.As(err, &syntaxErr):
		return controller.Errorf(controller.EINVALID, "request body is not valid JSON (at byte %d)", syntaxErr.Offset)
	default:
		// Unknown fields and truncated input; encoding/json's text names
		// the field and nothing secret.
		return controller.Errorf(controller.EINVALID, "invalid request body: %s", err.Error())
	}
}
