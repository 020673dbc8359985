package workload

import (
	"strings"
	"testing"
)

// matches reports whether labels pass every "label" filter of Filter, as
// the engine applies them.
func matches(t *testing.T, service string, labels map[string]string) bool {
	t.Helper()
	for _, f := range Filter(service).Get("label") {
		k, v, _ := strings.Cut(f, "=")
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestLabels_FilterFindsAServicesWorkloadsAndIsOneOffTellsThemApart(t *testing.T) {
	tests := []struct {
		name       string
		labels     map[string]string
		service    string
		wantMatch  bool
		wantOneOff bool
	}{
		{"replica", ReplicaLabels("web", "blue", "d1", 8000), "web", true, false},
		{"one-off", OneOffLabels("web", "d1"), "web", true, true},
		{"another service's replica", ReplicaLabels("api", "green", "d2", 8000), "web", false, false},
		{"not deployd's", map[string]string{LabelService: "web"}, "web", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := matches(t, tt.service, tt.labels); got != tt.wantMatch {
				t.Errorf("Filter(%q) matches %v = %v, want %v", tt.service, tt.labels, got, tt.wantMatch)
			}
			if got := IsOneOff(tt.labels); got != tt.wantOneOff {
				t.Errorf("IsOneOff(%v) = %v, want %v", tt.labels, got, tt.wantOneOff)
			}
		})
	}
	if l := ReplicaLabels("web", "blue", "d1", 8000); l[LabelPort] != "8000" || l[LabelColor] != "blue" || l[LabelDeployment] != "d1" {
		t.Errorf("ReplicaLabels = %v, want port 8000, color blue, deployment d1", l)
	}
}
