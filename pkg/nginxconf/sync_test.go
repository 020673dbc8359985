package nginxconf

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sirupsen/logrus/hooks/test"

	"github.com/deployd/deployd/pkg/controller"
)

func TestInSync_TrueOnlyForWhatSwitchWouldWrite(t *testing.T) {
	ctx := context.Background()
	r, dir, _ := newTestRouter(t, newFakeNginx())
	addrs := []string{"127.0.0.1:5001", "127.0.0.1:5002"}
	path := filepath.Join(dir, "web.conf")

	if ok, err := r.InSync(ctx, "web", controller.NoColor, addrs); err != nil || ok {
		t.Fatalf("InSync with no file = %v, %v; want false, nil", ok, err)
	}
	if err := r.Switch(ctx, "web", controller.NoColor, addrs); err != nil {
		t.Fatalf("Switch: %v", err)
	}
	if ok, err := r.InSync(ctx, "web", controller.NoColor, addrs); err != nil || !ok {
		t.Fatalf("InSync after Switch = %v, %v; want true, nil", ok, err)
	}
	// Order does not matter: Render sorts.
	if ok, _ := r.InSync(ctx, "web", controller.NoColor, []string{addrs[1], addrs[0]}); !ok {
		t.Errorf("InSync with the addresses reordered = false, want true")
	}
	if ok, _ := r.InSync(ctx, "web", controller.NoColor, addrs[:1]); ok {
		t.Errorf("InSync with other addresses = true, want false")
	}
	if err := os.WriteFile(path, append(readFile(t, path), "# hand edit\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	if ok, _ := r.InSync(ctx, "web", controller.NoColor, addrs); ok {
		t.Errorf("InSync after a hand edit = true, want false")
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if ok, err := r.InSync(ctx, "web", controller.NoColor, addrs); err != nil || ok {
		t.Errorf("InSync after deletion = %v, %v; want false, nil", ok, err)
	}
}

func TestCheck_ReportsTheConfigTest(t *testing.T) {
	ng := newFakeNginx()
	r, _, _ := newTestRouter(t, ng)
	if err := r.Check(context.Background()); err != nil {
		t.Fatalf("Check = %v, want nil", err)
	}
	ng.testErr = errors.New("nginx: [emerg] unexpected end of file")
	if err := r.Check(context.Background()); !errors.Is(err, ng.testErr) {
		t.Fatalf("Check = %v, want it to wrap %v", err, ng.testErr)
	}
}

func TestCheck_StoppedNginxIsUnavailable(t *testing.T) {
	ng := newFakeNginx()
	r, _, _ := newTestRouter(t, ng)
	ng.workersErr = fmt.Errorf("pid file missing, nginx not running: %w", controller.ErrUnavailable)
	if err := r.Check(context.Background()); !errors.Is(err, controller.ErrUnavailable) {
		t.Fatalf("Check with nginx stopped = %v, want it to wrap controller.ErrUnavailable", err)
	}
}

func TestSwitch_CallsHookAfterWritingAndAfterConfirmedReload(t *testing.T) {
	ng := newFakeNginx()
	dir := filepath.Join(t.TempDir(), "upstreams")
	log, _ := test.NewNullLogger()
	var points []string
	var fileAtWrite []string
	var reloadsAtWrite int
	r, err := New(Options{Dir: dir, Driver: ng, Logger: log, ReloadConfirmTimeout: 300 * time.Millisecond,
		pollInterval: 5 * time.Millisecond, Hook: func(p string) {
			points = append(points, p)
			if p == PointAfterUpstreamWritten {
				fileAtWrite, _ = ReadAddrs(dir, "web")
				_, reloadsAtWrite = ng.counts()
			}
		}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := r.Switch(context.Background(), "web", controller.NoColor, []string{"127.0.0.1:5001"}); err != nil {
		t.Fatalf("Switch: %v", err)
	}
	if want := []string{PointAfterUpstreamWritten, PointAfterReload}; !slices.Equal(points, want) {
		t.Fatalf("hook points = %v, want %v", points, want)
	}
	if !slices.Equal(fileAtWrite, []string{"127.0.0.1:5001"}) || reloadsAtWrite != 0 {
		t.Errorf("at %s: file addrs = %v, reloads = %d; want the new file and no reload yet", PointAfterUpstreamWritten, fileAtWrite, reloadsAtWrite)
	}

	// A rejected config never reaches the after-reload point.
	points = nil
	ng.testErr = errors.New("rejected")
	if err := r.Switch(context.Background(), "web", controller.NoColor, []string{"127.0.0.1:5002"}); err == nil {
		t.Fatal("Switch with a rejected config = nil, want an error")
	}
	if want := []string{PointAfterUpstreamWritten}; !slices.Equal(points, want) {
		t.Errorf("hook points of a failed switch = %v, want %v", points, want)
	}
}

func TestReadAddrs(t *testing.T) {
	tests := []struct {
		name string
		file string
		want []string
	}{
		{name: "rendered", file: mustRender(t, []string{"127.0.0.1:5002", "127.0.0.1:5001"}), want: []string{"127.0.0.1:5001", "127.0.0.1:5002"}},
		{name: "placeholder has none", file: mustRender(t, nil)},
		{name: "docker mode names", file: mustRender(t, []string{"web-blue-1:8000"}), want: []string{"web-blue-1:8000"}},
		{name: "hand edited", file: "upstream web {\n  server 10.0.0.1:80 weight=2; # primary\n  server 10.0.0.2:80 down;\n  # server 10.0.0.3:80;\n  server 10.0.0.1:80;\n}\n", want: []string{"10.0.0.1:80"}},
		{name: "garbage", file: "server ;\nserver not an address;\n\x00\x01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "web.conf"), []byte(tt.file), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := ReadAddrs(dir, "web")
			if err != nil {
				t.Fatalf("ReadAddrs: %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ReadAddrs = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReadAddrs_MissingFileIsNotExist(t *testing.T) {
	if _, err := ReadAddrs(t.TempDir(), "web"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ReadAddrs of a missing file = %v, want fs.ErrNotExist", err)
	}
}

func FuzzReadAddrs(f *testing.F) {
	f.Add([]byte("upstream web {\n    server 127.0.0.1:5001 max_fails=0;\n}\n"))
	f.Add([]byte("server [::1]:80;"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, a := range parseServers(data) {
			if err := ValidateAddress(a); err != nil {
				t.Fatalf("parseServers returned %q: %v", a, err)
			}
		}
	})
}

func mustRender(t *testing.T, addrs []string) string {
	t.Helper()
	b, err := Render(DefaultTemplate(), "web", addrs)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return string(b)
}
