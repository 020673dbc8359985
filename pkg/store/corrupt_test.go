package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

// writtenStore creates a store file holding a service and enough
// deployments to span several pages, closes it and returns its path.
func writtenStore(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "deployd.db")
	s, err := Open(t.Context(), Options{Path: path})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	ctx := t.Context()
	if err := s.PutService(ctx, controller.ServiceState{Name: "web", ActiveColor: controller.Green, ActiveImage: "demoapp:v2"}); err != nil {
		t.Fatalf("PutService: %v", err)
	}
	for i := range 200 {
		d := fullDeployment()
		d.ID = fmt.Sprintf("20250101T000000.%06dZ-aaaaaa", i)
		d.Service = "web"
		if err := s.PutDeployment(ctx, d); err != nil {
			t.Fatalf("PutDeployment: %v", err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return path
}

// openDamaged opens a damaged file and fails the test on a panic or when
// Open succeeds without the recorded state.
func openDamaged(t *testing.T, path string) error {
	t.Helper()
	var s *Store
	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("Open panicked: %v", p)
			}
		}()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		s, err = Open(ctx, Options{Path: path})
	}()
	if err != nil {
		return err
	}
	defer func() { _ = s.Close() }()
	st, gerr := s.GetService(t.Context(), "web")
	if gerr != nil || st.ActiveColor != controller.Green {
		t.Fatalf("Open of a damaged file succeeded and service web = %+v, %v; want ErrCorrupt or the recorded state", st, gerr)
	}
	return nil
}

func TestOpen_TruncatedFileIsCorruptNeverEmptyState(t *testing.T) {
	orig := writtenStore(t)
	data, err := os.ReadFile(orig)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{0, 100, 4096, 3 * 4096, len(data) / 8, len(data) / 2, len(data) - 4096} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "deployd.db")
			if err := os.WriteFile(path, data[:size], 0o600); err != nil {
				t.Fatal(err)
			}
			err := openDamaged(t, path)
			if err == nil && size > len(data)/2 {
				// bbolt grows its file ahead of use: cutting only unused
				// pages loses nothing, and openDamaged proved the state.
				return
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open of a file truncated to %d of %d bytes = %v, want ErrCorrupt", size, len(data), err)
			}
			for _, want := range []string{path, "deployd will not start with empty state", "deployd recover"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestOpen_ScribbledPagesAreCorruptNeverPanicNeverEmptyState(t *testing.T) {
	orig := writtenStore(t)
	data, err := os.ReadFile(orig)
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	corrupt := 0
	for seed := range uint64(40) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0x5eed))
			damaged := append([]byte(nil), data...)
			// Every other run wipes a whole page (meta pages included);
			// the rest scribble a short run of bytes anywhere.
			if seed%2 == 0 {
				p := rng.IntN(len(damaged) / page)
				for i := p * page; i < (p+1)*page; i++ {
					damaged[i] = byte(rng.UintN(256))
				}
			} else {
				off := rng.IntN(len(damaged) - 64)
				for i := off; i < off+64; i++ {
					damaged[i] = byte(rng.UintN(256))
				}
			}
			path := filepath.Join(t.TempDir(), "deployd.db")
			if err := os.WriteFile(path, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			err := openDamaged(t, path)
			if err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open = %v, want ErrCorrupt", err)
			}
			if err != nil {
				corrupt++
			}
		})
	}
	// Bytes in free space or in a page bbolt never reads are harmless and
	// undetectable; most damage must still be caught.
	if corrupt < 20 {
		t.Errorf("%d of 40 damaged files were reported corrupt, want most", corrupt)
	}
	t.Logf("%d of 40 damaged files reported corrupt, the rest opened with their state intact", corrupt)
}

func TestOpen_BothMetaPagesWipedIsCorrupt(t *testing.T) {
	path := writtenStore(t)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 2*4096), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := openDamaged(t, path); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open = %v, want ErrCorrupt", err)
	}
}

func TestOpen_NewAndHealthyFilesAreNotCorrupt(t *testing.T) {
	path := writtenStore(t)
	s := openTest(t, path)
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping = %v, want nil", err)
	}
	fresh := openTest(t, filepath.Join(t.TempDir(), "new", "deployd.db"))
	if err := fresh.Ping(t.Context()); err != nil {
		t.Fatalf("Ping of a new store = %v, want nil", err)
	}
}

func TestPing_FailsAfterClose(t *testing.T) {
	s, err := Open(t.Context(), Options{Path: filepath.Join(t.TempDir(), "deployd.db")})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(t.Context()); err == nil {
		t.Fatal("Ping after Close = nil, want an error")
	}
}

func TestMoveAside_RenamesWithTimestampAndRefusesWhileLocked(t *testing.T) {
	path := writtenStore(t)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	s := openTest(t, path)
	if _, err := MoveAside(t.Context(), path, now); !errors.Is(err, ErrLocked) {
		t.Fatalf("MoveAside while open = %v, want ErrLocked", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("file after refused MoveAside: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	to, err := MoveAside(t.Context(), path, now)
	if err != nil {
		t.Fatalf("MoveAside: %v", err)
	}
	if want := path + ".corrupt-20260102T030405Z"; to != want {
		t.Errorf("moved to %q, want %q", to, want)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("original still there: %v", err)
	}
	if _, err := os.Stat(to); err != nil {
		t.Errorf("moved file: %v", err)
	}
	if to, err := MoveAside(t.Context(), path, now); err != nil || to != "" {
		t.Errorf("MoveAside of a missing file = %q, %v; want \"\", nil", to, err)
	}
}

// A damaged file must not stay locked by the process that found it damaged:
// `deployd recover` opens the store, then moves the damaged file aside.
func TestOpen_DamagedFileLeavesNoLockBehind(t *testing.T) {
	orig := writtenStore(t)
	data, err := os.ReadFile(orig)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{100, 4096, 3 * 4096, len(data) / 8, len(data) / 3, len(data) / 2} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "deployd.db")
			if err := os.WriteFile(path, data[:size], 0o600); err != nil {
				t.Fatal(err)
			}
			if err := openDamaged(t, path); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open of a file truncated to %d of %d bytes = %v, want ErrCorrupt", size, len(data), err)
			}
			if _, err := MoveAside(t.Context(), path, time.Now()); err != nil {
				t.Fatalf("MoveAside after the failed Open = %v, want the file moved", err)
			}
		})
	}
}
