package controller_test

import (
	"encoding"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/deployd/deployd/pkg/controller"
)

func TestStatus_TextRoundTrip(t *testing.T) {
	textRoundTrip(t, controller.StatusQueued, controller.StatusInterrupted)
}

func TestStepStatus_TextRoundTrip(t *testing.T) {
	textRoundTrip(t, controller.StepRunning, controller.StepSkipped)
}

// textRoundTrip checks that every value from first to last survives
// MarshalText and UnmarshalText.
func textRoundTrip[T interface {
	~int
	fmt.Stringer
	encoding.TextMarshaler
}, PT interface {
	*T
	encoding.TextUnmarshaler
}](t *testing.T, first, last T) {
	t.Helper()
	for s := first; s <= last; s++ {
		b, err := s.MarshalText()
		if err != nil {
			t.Fatalf("MarshalText(%d): %v", int(s), err)
		}
		var got T
		if err := PT(&got).UnmarshalText(b); err != nil {
			t.Fatalf("UnmarshalText(%q): %v", b, err)
		}
		if got != s {
			t.Errorf("round trip of %s = %s, want %s", s, got, s)
		}
	}
}

func TestStatus_Names(t *testing.T) {
	tests := []struct {
		s    controller.Status
		want string
		done bool
	}{
		{controller.StatusQueued, "queued", false},
		{controller.StatusRunning, "running", false},
		{controller.StatusSucceeded, "succeeded", true},
		{controller.StatusFailed, "failed", true},
		{controller.StatusInterrupted, "interrupted", true},
		{controller.Status(42), "status(42)", true},
		{controller.Status(-1), "status(-1)", false},
	}
	for _, tt := range tests {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("Status(%d).String() = %q, want %q", int(tt.s), got, tt.want)
		}
		if got := tt.s.Done(); got != tt.done {
			t.Errorf("Status(%d).Done() = %v, want %v", int(tt.s), got, tt.done)
		}
	}
	if got := controller.StepStatus(9).String(); got != "step_status(9)" {
		t.Errorf("StepStatus(9).String() = %q, want %q", got, "step_status(9)")
	}
}

func TestStatus_UnknownTextIsAnError(t *testing.T) {
	var s controller.Status
	if err := s.UnmarshalText([]byte("done")); err == nil {
		t.Errorf("Status.UnmarshalText(%q) = nil error, want one", "done")
	}
	var ss controller.StepStatus
	if err := ss.UnmarshalText([]byte("Running")); err == nil {
		t.Errorf("StepStatus.UnmarshalText(%q) = nil error, want one (names are case-sensitive)", "Running")
	}
}

// The API and the store persist deployments as JSON, so statuses must
// travel as their names.
func TestDeployment_JSONUsesStatusNames(t *testing.T) {
	d := controller.Deployment{ID: "x", Status: controller.StatusFailed, Steps: []controller.Step{{Name: "pull", Status: controller.StepSkipped}}}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Status string `json:"status"`
		Steps  []struct {
			Status string `json:"status"`
		} `json:"steps"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if raw.Status != "failed" || len(raw.Steps) != 1 || raw.Steps[0].Status != "skipped" {
		t.Errorf("json = %s, want status \"failed\" and step status \"skipped\"", b)
	}
	var back controller.Deployment
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Status != d.Status || back.Steps[0].Status != d.Steps[0].Status {
		t.Errorf("round trip status/step = %s/%s, want %s/%s", back.Status, back.Steps[0].Status, d.Status, d.Steps[0].Status)
	}
}

func TestColor_Other(t *testing.T) {
	tests := []struct{ c, want controller.Color }{
		{controller.NoColor, controller.Blue},
		{controller.Blue, controller.Green},
		{controller.Green, controller.Blue},
	}
	for _, tt := range tests {
		if got := tt.c.Other(); got != tt.want {
			t.Errorf("Color(%q).Other() = %q, want %q", tt.c, got, tt.want)
		}
	}
}

func TestValidServiceName(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"web", true},
		{"web-2_api", true},
		{"a" + strings.Repeat("b", 62), true},
		{"a" + strings.Repeat("b", 63), false},
		{"", false},
		{"2web", false},
		{"Web", false},
		{"web.api", false},
		{"web api", false},
		{"web;", false},
		{"-web", false},
	}
	for _, tt := range tests {
		if got := controller.ValidServiceName(tt.name); got != tt.want {
			t.Errorf("ValidServiceName(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}
