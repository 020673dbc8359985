package auth

import "testing"

func TestParseRole(t *testing.T) {
	tests := []struct {
		in      string
		want    Role
		wantErr bool
	}{
		{"viewer", RoleViewer, false},
		{"deployer", RoleDeployer, false},
		{"operator", RoleOperator, false},
		{"Operator", 0, true},
		{"admin", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseRole(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseRole(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err == nil && got.String() != tt.in {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), tt.in)
		}
	}
}

func TestRole_OrderedViewerDeployerOperator(t *testing.T) {
	if !(0 < RoleViewer && RoleViewer < RoleDeployer && RoleDeployer < RoleOperator) {
		t.Error("roles are not ordered none < viewer < deployer < operator")
	}
}

func TestRole_TextRoundTrip(t *testing.T) {
	for _, r := range []Role{RoleViewer, RoleDeployer, RoleOperator} {
		b, err := r.MarshalText()
		if err != nil {
			t.Fatalf("%v.MarshalText: %v", r, err)
		}
		var got Role
		if err := got.UnmarshalText(b); err != nil || got != r {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", b, got, err, r)
		}
	}
}

func TestRole_MarshalTextRefusesNonRoles(t *testing.T) {
	for _, r := range []Role{0, -1, RoleOperator + 1} {
		if b, err := r.MarshalText(); err == nil {
			t.Errorf("Role(%d).MarshalText = %q, want an error", int(r), b)
		}
	}
	var r Role
	if err := r.UnmarshalText([]byte("root")); err == nil {
		t.Error("UnmarshalText(root) succeeded, want an error")
	}
}
