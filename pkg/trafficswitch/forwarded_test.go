package trafficswitch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
)

func TestForwarded_TrustedOnlyFromTrustedProxies(t *testing.T) {
	echo := func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, "for=%s|host=%s|proto=%s|real=%s|fwd=%s|Host=%s",
			r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Forwarded-Proto"),
			r.Header.Get("X-Real-Ip"), r.Header.Get("Forwarded"), r.Host)
	}
	nginxHeaders := http.Header{
		"X-Forwarded-For":   {"203.0.113.7"},
		"X-Forwarded-Host":  {"shop.example"},
		"X-Forwarded-Proto": {"https"},
		"X-Real-Ip":         {"203.0.113.7"},
		"Forwarded":         {"for=203.0.113.7;proto=https"},
	}
	for _, tt := range []struct {
		name    string
		trusted []string
		header  http.Header
		want    string
	}{
		{
			name:    "trusted peer keeps the client's values and appends itself",
			trusted: []string{"127.0.0.1"},
			header:  nginxHeaders,
			want:    "for=203.0.113.7, 127.0.0.1|host=shop.example|proto=https|real=203.0.113.7|fwd=for=203.0.113.7;proto=https|Host=app.test",
		},
		{
			name:    "trusted by prefix",
			trusted: []string{"127.0.0.0/8"},
			header:  nginxHeaders,
			want:    "for=203.0.113.7, 127.0.0.1|host=shop.example|proto=https|real=203.0.113.7|fwd=for=203.0.113.7;proto=https|Host=app.test",
		},
		{
			name:    "trusted peer without headers gets them from the connection",
			trusted: []string{"127.0.0.1"},
			header:  http.Header{},
			want:    "for=127.0.0.1|host=app.test|proto=http|real=|fwd=|Host=app.test",
		},
		{
			name:    "untrusted peer: nothing it claims is kept",
			trusted: nil,
			header:  nginxHeaders,
			want:    "for=127.0.0.1|host=app.test|proto=http|real=|fwd=|Host=app.test",
		},
		{
			name:    "a peer outside the trusted prefixes is untrusted",
			trusted: []string{"10.0.0.0/8", "::1"},
			header:  nginxHeaders,
			want:    "for=127.0.0.1|host=app.test|proto=http|real=|fwd=|Host=app.test",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			prefixes, err := ParseTrustedProxies(tt.trusted)
			if err != nil {
				t.Fatalf("ParseTrustedProxies: %v", err)
			}
			h := newHarness(t, Options{TrustedProxies: prefixes})
			h.setTargets("blue", newBackend(t, "blue", echo).addr())
			req, _ := http.NewRequest(http.MethodGet, h.url+"/", nil)
			req.Host = "app.test"
			for k, v := range tt.header {
				req.Header[k] = v
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("GET: %v", err)
			}
			defer res.Body.Close()
			var got [512]byte
			n, _ := res.Body.Read(got[:])
			if string(got[:n]) != tt.want {
				t.Errorf("replica saw\n  %s\nwant\n  %s", got[:n], tt.want)
			}
		})
	}
}

func TestParseTrustedProxies(t *testing.T) {
	got, err := ParseTrustedProxies([]string{"127.0.0.1", " 172.18.0.0/16 ", "::1", "::ffff:10.1.2.3", "10.1.2.3/8"})
	if err != nil {
		t.Fatalf("ParseTrustedProxies: %v", err)
	}
	want := []string{"127.0.0.1/32", "172.18.0.0/16", "::1/128", "10.1.2.3/32", "10.0.0.0/8"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != netip.MustParsePrefix(want[i]) {
			t.Errorf("entry %d = %s, want %s", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"", "nginx", "10.0.0.0/33", "1.2.3.4:80"} {
		if _, err := ParseTrustedProxies([]string{bad}); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseTrustedProxies(%q) succeeded, want ErrInvalid", bad)
		}
	}
}

// On a unix socket (the default, next to nginx's upstream file) a peer has
// no address to judge; the socket's permissions decide who connects, so
// its X-Forwarded-* headers are kept, as nginx's.
func TestListen_UnixSocketServesAndTrustsItsPeers(t *testing.T) {
	sw, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sw.Close(context.Background()) })
	sock := socketPath(t)
	if err := sw.Listen(context.Background(), "web", "unix:"+sock); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	echo := func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, "for=%s|proto=%s", r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"))
	}
	if err := sw.SetTargets("web", "blue", []string{newBackend(t, "blue", echo).addr()}); err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	req, _ := http.NewRequest(http.MethodGet, "http://switch/", nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	req.Header.Set("X-Forwarded-Proto", "https")
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET over the socket: %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if string(b) != "for=203.0.113.7|proto=https" {
		t.Fatalf("replica saw %q, want nginx's values kept", b)
	}
}

func TestSplitListenAddr(t *testing.T) {
	for _, tt := range []struct{ in, network, addr string }{
		{"127.0.0.1:7501", "tcp", "127.0.0.1:7501"},
		{"unix:/run/deployd/web.sock", "unix", "/run/deployd/web.sock"},
	} {
		if n, a := SplitListenAddr(tt.in); n != tt.network || a != tt.addr {
			t.Errorf("SplitListenAddr(%q) = %q, %q; want %q, %q", tt.in, n, a, tt.network, tt.addr)
		}
	}
}
