package debimage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// lockPoll is how often lockTag tries again while another process builds.
// flock cannot be interrupted by a context, so it is tried without
// blocking; a build takes seconds to minutes, so a quarter second is
// nothing.
const lockPoll = 250 * time.Millisecond

// lockTag takes an exclusive flock on a file named after tag in
// os.TempDir(), waiting (until ctx is done) while another process holds
// it. The kernel drops the lock when the holder exits, so a killed build
// never leaves a stale lock behind.
func lockTag(ctx context.Context, tag string) (unlock func(), err error) {
	path := lockPath(tag)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close() // nothing was written
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close() // nothing was written
			return nil, fmt.Errorf("wait for another build of %s: %w", tag, ctx.Err())
		case <-time.After(lockPoll):
		}
	}
	// Closing the file releases the lock; the file itself stays, empty,
	// for the next caller.
	return func() { _ = f.Close() }, nil
}

func lockPath(tag string) string {
	name := "deployd-debimage-" + strings.NewReplacer("/", "_", ":", "_").Replace(tag) + ".lock"
	return filepath.Join(os.TempDir(), name)
}
