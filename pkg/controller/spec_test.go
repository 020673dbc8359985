package controller_test

import (
	"slices"
	"testing"

	"github.com/deployd/deployd/pkg/controller"
)

func TestParseRestartPolicy_OneRuleForConfigAndRuntime(t *testing.T) {
	tests := []struct {
		in      string
		want    controller.RestartPolicy
		wantErr bool
	}{
		{in: "no", want: controller.RestartPolicy{Name: "no"}},
		{in: "always", want: controller.RestartPolicy{Name: "always"}},
		{in: "unless-stopped", want: controller.RestartPolicy{Name: "unless-stopped"}},
		{in: "on-failure", want: controller.RestartPolicy{Name: "on-failure"}},
		{in: "on-failure:1", want: controller.RestartPolicy{Name: "on-failure", MaxRetries: 1}},
		{in: "on-failure:999999", want: controller.RestartPolicy{Name: "on-failure", MaxRetries: 999999}},
		// Docker reads 0 as no limit: the count would say the opposite.
		{in: "on-failure:0", wantErr: true},
		{in: "on-failure:1000000", wantErr: true},
		{in: "on-failure:-1", wantErr: true},
		{in: "on-failure:05", wantErr: true},
		{in: "on-failure:+5", wantErr: true},
		{in: "on-failure:", wantErr: true},
		{in: "on-failure:x", wantErr: true},
		{in: "always:3", wantErr: true},
		{in: ":1", wantErr: true},
		{in: "", wantErr: true},
		{in: "sometimes", wantErr: true},
		{in: "Always", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := controller.ParseRestartPolicy(tt.in)
			if tt.wantErr {
				if code := controller.ErrorCode(err); code != controller.EINVALID {
					t.Fatalf("ParseRestartPolicy(%q) = %+v, error code %q (err %v), want %q", tt.in, got, code, err, controller.EINVALID)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRestartPolicy(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseRestartPolicy(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestReplicaEnv(t *testing.T) {
	tests := []struct {
		color controller.Color
		want  []string
	}{
		{controller.Blue, []string{"DEPLOYD_SERVICE=web", "DEPLOYD_COLOR=blue", "DEPLOYD_DEPLOYMENT=d-1"}},
		{controller.NoColor, []string{"DEPLOYD_SERVICE=web", "DEPLOYD_DEPLOYMENT=d-1"}},
	}
	for _, tt := range tests {
		if got := controller.ReplicaEnv("web", tt.color, "d-1"); !slices.Equal(got, tt.want) {
			t.Errorf("ReplicaEnv(web, %q, d-1) = %v, want %v", tt.color, got, tt.want)
		}
	}
}
