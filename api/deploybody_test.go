package api

import (
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/deployd/deployd/pkg/controller"
)

func TestDecodeDeployBody_ErrorsNameTheProblem(t *testing.T) {
	tests := []struct {
		body, want string
	}{
		{``, "request body is empty; want a JSON object with an image"},
		{`{"image":2}`, "image must be a string"},
		{`"v2"`, "request body must be a JSON object"},
		{`{"image":"v2","x":1}`, `invalid request body: json: unknown field "x"`},
		{`{}`, "image is required"},
		{`{"image":"v2"} {}`, "request body must hold a single JSON object"},
		{`{"image":"v2","actor":"a","on_behalf_of":"b"}`, "actor is the old name of on_behalf_of; send one of them"},
	}
	for _, tt := range tests {
		_, err := decodeDeployBody([]byte(tt.body))
		var ce *controller.Error
		if !errors.As(err, &ce) || ce.Code != controller.EINVALID || ce.Message != tt.want {
			t.Errorf("decodeDeployBody(%q) = %v, want invalid %q", tt.body, err, tt.want)
		}
	}
}

func FuzzDecodeDeployBody(f *testing.F) {
	for _, seed := range []string{
		`{"image":"demoapp:v2","commit":"abc","actor":"alice"}`,
		`{"image":"demoapp:v2","on_behalf_of":"alice"}`,
		`{"image":"v2"}`,
		`{"image":"v2","commit":null}`,
		`{"image":"demoapp@sha256:0123"} `,
		`{"image":1}`,
		`{"Image":"v2"}`,
		`{"image":"v2"}{}`,
		`[]`,
		`null`,
		``,
		`{"image":"\u0000"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		body, err := decodeDeployBody(b)
		if err != nil {
			if code := controller.ErrorCode(err); code != controller.EINVALID {
				t.Fatalf("error %v has code %q, want invalid", err, code)
			}
			return
		}
		if body.Image == "" {
			t.Fatalf("accepted %q without an image", b)
		}
		for _, v := range []string{body.Image, body.Commit, body.OnBehalfOf} {
			if len(v) > maxFieldLen {
				t.Fatalf("accepted a %d-byte field", len(v))
			}
		}
		// An accepted body survives a round trip unchanged.
		again, err := json.Marshal(body)
		if err != nil {
			t.Fatalf("marshal %+v: %v", body, err)
		}
		for _, v := range []string{body.Image, body.Commit, body.OnBehalfOf} {
			// encoding/json replaces invalid UTF-8 while decoding.
			if !utf8.ValidString(v) {
				t.Fatalf("accepted invalid UTF-8 %q", v)
			}
		}
		back, err := decodeDeployBody(again)
		if err != nil || back != body {
			t.Fatalf("round trip of %+v = %+v, %v", body, back, err)
		}
	})
}
