package api

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type docSchema struct {
	Required   []string             `yaml:"required"`
	Properties map[string]docSchema `yaml:"properties"`
}

// jsonFields returns the JSON names of t's fields and which of them are
// left out when empty.
func jsonFields(t reflect.Type) (names []string, omitted map[string]bool) {
	omitted = map[string]bool{}
	for f := range t.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		names = append(names, name)
		omitted[name] = strings.Contains(opts, "omitempty")
	}
	slices.Sort(names)
	return names, omitted
}

// Every response type has exactly its schema's properties, and every
// property the document requires is always present.
func TestResponses_FieldsMatchTheDocument(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]docSchema `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatalf("parse openapi.yaml: %v", err)
	}
	schemas := doc.Components.Schemas
	tests := []struct {
		schema string
		body   any
		doc    docSchema
	}{
		{"Service", Service{}, schemas["Service"]},
		{"Service.colors", Colors{}, schemas["Service"].Properties["colors"]},
		{"ColorView", ColorView{}, schemas["ColorView"]},
		{"Container", Container{}, schemas["Container"]},
		{"Deployment", Deployment{}, schemas["Deployment"]},
		{"Step", Step{}, schemas["Step"]},
		{"Trigger", Trigger{}, schemas["Trigger"]},
		{"WebhookAccepted", WebhookAccepted{}, schemas["WebhookAccepted"]},
		{"Event", Event{}, schemas["Event"]},
		{"AuditEntry", AuditEntry{}, schemas["AuditEntry"]},
		{"Traffic", Traffic{}, schemas["Traffic"]},
		{"Error", errorBody{}, schemas["Error"]},
	}
	for _, tt := range tests {
		t.Run(tt.schema, func(t *testing.T) {
			if len(tt.doc.Properties) == 0 {
				t.Fatalf("openapi.yaml has no schema %s with properties", tt.schema)
			}
			var documented []string
			for name := range tt.doc.Properties {
				documented = append(documented, name)
			}
			slices.Sort(documented)
			fields, omitted := jsonFields(reflect.TypeOf(tt.body))
			if !slices.Equal(fields, documented) {
				t.Errorf("%T has fields %v, the document's %s has %v", tt.body, fields, tt.schema, documented)
			}
			for _, name := range tt.doc.Required {
				if omitted[name] {
					t.Errorf("%T leaves out %s when empty; the document requires it", tt.body, name)
				}
			}
		})
	}
}
