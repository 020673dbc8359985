package e2e

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// dockerSocket is the engine the proxy forwards to.
const dockerSocket = "/var/run/docker.sock"

// sockProxy is a unix-socket proxy in front of the Docker engine that a test
// can cut (every connection closed, new ones refused) and restore, so that
// the daemon under test sees the engine go away and come back.
type sockProxy struct {
	Path string // the socket the daemon dials: docker.host unix://<Path>

	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	cut  bool
	open map[net.Conn]struct{}
}

// startSockProxy listens on a fresh socket and forwards to dockerSocket
// until the test ends.
func startSockProxy(t *testing.T) *sockProxy {
	t.Helper()
	// t.TempDir's long names can exceed the 108-byte limit of a socket path.
	dir, err := os.MkdirTemp("", "dsp")
	if err != nil {
		t.Fatalf("socket proxy dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	p := &sockProxy{Path: filepath.Join(dir, "docker.sock"), open: map[net.Conn]struct{}{}}
	p.ln, err = net.Listen("unix", p.Path)
	if err != nil {
		t.Fatalf("socket proxy: listen: %v", err)
	}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *sockProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed at cleanup
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		up, err := net.Dial("unix", dockerSocket)
		if err != nil {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.open[c] = struct{}{}
		p.open[up] = struct{}{}
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

// pipe copies src to dst until either side ends, then closes both so the
// other direction ends too.
func (p *sockProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	// The copy ends with a cut or a closed peer; both are expected.
	_, _ = io.Copy(dst, src)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range []net.Conn{dst, src} {
		delete(p.open, c)
		_ = c.Close()
	}
}

// Cut closes every proxied connection and refuses new ones until Restore.
func (p *sockProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.open {
		_ = c.Close()
		delete(p.open, c)
	}
}

// Restore forwards new connections again.
func (p *sockProxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

// close stops accepting, ends every connection and waits for the copies.
func (p *sockProxy) close() {
	_ = p.ln.Close()
	p.Cut()
	p.wg.Wait()
}
