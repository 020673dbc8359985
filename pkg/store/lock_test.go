package store

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// holdEnv tells a re-executed test binary to act as the "other deployd": open
// the store at the given path and hold it until its stdin closes.
const holdEnv = "DEPLOYD_STORE_TEST_HOLD"

const readyLine = "store-held"

// TestHelperProcessHoldsStore is not a test on its own; it is the child
// process of TestOpen_SecondProcessFailsWithErrLocked.
func TestHelperProcessHoldsStore(t *testing.T) {
	path := os.Getenv(holdEnv)
	if path == "" {
		t.Skip("helper process for TestOpen_SecondProcessFailsWithErrLocked")
	}
	s, err := Open(t.Context(), Options{Path: path})
	if err != nil {
		t.Fatalf("child Open: %v", err)
	}
	fmt.Println(readyLine)
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := s.Close(); err != nil {
		t.Fatalf("child Close: %v", err)
	}
}

// startHolder starts a child process holding the store at path and returns
// once the child reports the lock is taken. The child is stopped at cleanup.
func startHolder(t *testing.T, path string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcessHoldsStore$", "-test.count=1")
	cmd.Env = append(os.Environ(), holdEnv+"="+path)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("stdin pipe: %v", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("stdout pipe: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}

	ready := make(chan struct{})
	scanned := make(chan struct{})
	var childOut strings.Builder
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == readyLine {
				close(ready)
			} else {
				childOut.WriteString(sc.Text() + "\n")
			}
		}
	}()
	t.Cleanup(func() {
		// Closing stdin lets the child close the store and exit; killing is
		// the fallback so a stuck child cannot outlive the test. Wait only
		// after stdout is drained, as os/exec requires.
		_ = stdin.Close()
		select {
		case <-scanned:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-scanned
			t.Errorf("child did not exit within 10s after stdin closed; killed")
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("child exited: %v\n%s", err, childOut.String())
		}
	})

	select {
	case <-ready:
	case <-scanned:
		t.Fatalf("child exited before holding the store:\n%s", childOut.String())
	case <-time.After(30 * time.Second):
		t.Fatal("child did not hold the store within 30s")
	}
}

func TestOpen_SecondProcessFailsWithErrLocked(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "deployd.db")
	startHolder(t, path)

	const timeout = 300 * time.Millisecond
	start := time.Now()
	s, err := Open(t.Context(), Options{Path: path, OpenTimeout: timeout})
	elapsed := time.Since(start)
	if err == nil {
		s.Close()
		t.Fatal("Open while another process holds the store succeeded, want ErrLocked")
	}
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("err = %v, want one wrapping ErrLocked", err)
	}
	want := fmt.Sprintf("data dir %s is in use by another deployd (database locked)", dir)
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %q, want it to contain %q", err, want)
	}
	// bbolt gives up one retry interval (50ms) before the timeout.
	if elapsed < timeout-100*time.Millisecond || elapsed > timeout+2*time.Second {
		t.Fatalf("Open failed after %v, want about %v", elapsed, timeout)
	}
}

// flock locks belong to an open file description, and every Open opens the
// file anew, so two Stores in one process exclude each other too: two
// daemons booted in one test process cannot share a data dir by accident.
func TestOpen_SecondOpenInSameProcessFailsWithErrLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "deployd.db")
	openTest(t, path)
	s, err := Open(t.Context(), Options{Path: path, OpenTimeout: 100 * time.Millisecond})
	if err == nil {
		s.Close()
		t.Fatal("second Open in the same process succeeded, want ErrLocked")
	}
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("err = %v, want one wrapping ErrLocked", err)
	}
}
