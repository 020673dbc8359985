package xtest

import (
	"testing"
	"time"
)

// Eventually polls cond every poll until it returns nil, and fails the
// test with cond's last error once timeout has passed.
func Eventually(t testing.TB, timeout, poll time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after %s: %v", what, timeout, err)
		}
		time.Sleep(poll)
	}
}
