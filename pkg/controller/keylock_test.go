package controller

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
)

func TestKeyLock_SameKeyWaitsOtherKeysDoNot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var k keyLock
		unlockA, err := k.lock(t.Context(), "a")
		if err != nil {
			t.Fatalf("lock a: %v", err)
		}

		unlockB, err := k.lock(t.Context(), "b")
		if err != nil {
			t.Fatalf("lock b while a is held: %v", err)
		}
		unlockB()

		got := make(chan struct{})
		go func() {
			unlock, err := k.lock(context.Background(), "a")
			if err != nil {
				t.Errorf("second lock of a: %v", err)
				return
			}
			close(got)
			unlock()
		}()
		synctest.Wait()
		select {
		case <-got:
			t.Fatal("second holder of a got the lock while the first held it")
		default:
		}
		unlockA()
		<-got
		synctest.Wait()
		if n := len(k.keys); n != 0 {
			t.Errorf("keys remembered after every unlock = %d, want 0", n)
		}
	})
}

func TestKeyLock_WaiterGivesUpWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var k keyLock
		unlock, err := k.lock(t.Context(), "a")
		if err != nil {
			t.Fatalf("lock a: %v", err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := k.lock(ctx, "a"); !errors.Is(err, context.Canceled) {
			t.Fatalf("lock with a cancelled context = %v, want context.Canceled", err)
		}
		unlock()
		if n := len(k.keys); n != 0 {
			t.Errorf("keys remembered after the waiter gave up and the holder unlocked = %d, want 0", n)
		}
	})
}
