package auth

import (
	"fmt"
	"testing"
	"time"
)

func TestLimiter_Windows(t *testing.T) {
	type step struct {
		advance time.Duration
		fail    bool // else: check
		blocked bool
		retry   time.Duration
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"under the limit", []step{
			{fail: true}, {fail: true},
			{blocked: false},
		}},
		{"at the limit", []step{
			{fail: true}, {fail: true}, {fail: true},
			{blocked: true, retry: time.Minute},
		}},
		{"blocked until the oldest failure leaves the window", []step{
			{fail: true}, {advance: 20 * time.Second, fail: true}, {advance: 20 * time.Second, fail: true},
			{blocked: true, retry: 20 * time.Second},
			{advance: 20*time.Second - time.Nanosecond, blocked: true, retry: time.Nanosecond},
			{advance: time.Nanosecond, blocked: false},
		}},
		{"sliding: old failures do not count", []step{
			{fail: true}, {fail: true},
			{advance: time.Minute},
			{fail: true},
			{blocked: false},
		}},
		{"sliding: spread failures still block", []step{
			{fail: true}, {advance: 50 * time.Second, fail: true}, {advance: 9 * time.Second, fail: true},
			{blocked: true, retry: time.Second},
		}},
		{"more failures than max keep the newest", []step{
			{fail: true}, {fail: true}, {fail: true},
			{advance: 30 * time.Second, fail: true}, {fail: true},
			{blocked: true, retry: 30 * time.Second},
			{advance: 30 * time.Second, blocked: false},
			{fail: true},
			{blocked: true, retry: 30 * time.Second},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			l := NewLimiter(3, time.Minute, 10, clock.Now)
			for i, st := range tt.steps {
				clock.Advance(st.advance)
				if st.fail {
					l.Fail("10.0.0.1")
					continue
				}
				retry, blocked := l.Blocked("10.0.0.1")
				if blocked != st.blocked || retry != st.retry {
					t.Errorf("step %d: Blocked = %v, %v; want %v, %v", i, retry, blocked, st.retry, st.blocked)
				}
			}
		})
	}
}

func TestLimiter_KeysAreIndependent(t *testing.T) {
	l := NewLimiter(2, time.Minute, 10, newFakeClock().Now)
	l.Fail("a")
	l.Fail("a")
	if _, blocked := l.Blocked("a"); !blocked {
		t.Error("a not blocked after 2 failures")
	}
	if _, blocked := l.Blocked("b"); blocked {
		t.Error("b blocked by a's failures")
	}
}

func TestLimiter_KeysAreBounded(t *testing.T) {
	clock := newFakeClock()
	l := NewLimiter(2, time.Minute, 100, clock.Now)
	l.Fail("victim")
	l.Fail("victim")
	for i := range 1000 {
		clock.Advance(time.Millisecond)
		l.Fail(fmt.Sprintf("flood-%d", i))
		if n := len(l.keys); n > 100 {
			t.Fatalf("tracking %d keys, want at most 100", n)
		}
	}
	// The flood may free the oldest key early; that is the price of a
	// bounded map, and the newest keys are still limited.
	l.Fail("flood-999")
	if _, blocked := l.Blocked("flood-999"); !blocked {
		t.Error("newest key not blocked after 2 failures")
	}
}

func TestLimiter_ExpiredKeysAreForgotten(t *testing.T) {
	clock := newFakeClock()
	l := NewLimiter(2, time.Minute, 3, clock.Now)
	l.Fail("a")
	l.Fail("b")
	l.Fail("c")
	clock.Advance(time.Minute)
	l.Fail("d")
	l.Fail("d")
	if n := len(l.keys); n != 1 {
		t.Errorf("tracking %d keys, want 1 after the others' windows ended", n)
	}
	if _, blocked := l.Blocked("d"); !blocked {
		t.Error("d not blocked")
	}
}
