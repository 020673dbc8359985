package debimage

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

func TestLockTag_SecondCallerWaitsForTheFirst(t *testing.T) {
	tag := "deployd-test-lock:" + time.Now().Format("150405.000000000")
	t.Cleanup(func() { _ = os.Remove(lockPath(tag)) })
	unlock, err := lockTag(context.Background(), tag)
	if err != nil {
		t.Fatalf("first lock: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*lockPoll)
	defer cancel()
	if _, err := lockTag(ctx, tag); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock while the first is held: err = %v, want DeadlineExceeded", err)
	}

	got := make(chan error, 1)
	go func() {
		unlock2, err := lockTag(context.Background(), tag)
		if err == nil {
			unlock2()
		}
		got <- err
	}()
	unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("lock after release: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("lock not granted within 5s of its release")
	}
}
