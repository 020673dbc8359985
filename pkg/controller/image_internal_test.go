package controller

import "testing"

func TestWithDigestOf(t *testing.T) {
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct{ requested, pinned, want string }{
		{"demoapp:v2", "demoapp@" + d, "demoapp:v2@" + d},
		{"127.0.0.1:5000/team/app:v2", "127.0.0.1:5000/team/app@" + d, "127.0.0.1:5000/team/app:v2@" + d},
		// Already pinned: the tag stays, the digest is the pinned one.
		{"demoapp:v2@" + d, "demoapp@" + d, "demoapp:v2@" + d},
		// Nothing to keep or nothing to add: pinned as is.
		{"demoapp@" + d, "demoapp@" + d, "demoapp@" + d},
		{"demoapp:v2", "demoapp:v2", "demoapp:v2"},
		{"demoapp:v2", "other@" + d, "other@" + d},
		{"not a ref", "demoapp@" + d, "demoapp@" + d},
	}
	for _, tt := range tests {
		if got := withDigestOf(tt.requested, tt.pinned); got != tt.want {
			t.Errorf("withDigestOf(%q, %q) = %q, want %q", tt.requested, tt.pinned, got, tt.want)
		}
	}
}
