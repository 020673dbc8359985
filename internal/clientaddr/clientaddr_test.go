package clientaddr

import (
	"net/netip"
	"strings"
	"testing"
)

func TestClient(t *testing.T) {
	proxies, err := Parse([]string{"127.0.0.1", " 172.18.0.0/16 ", "::1"})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	tests := []struct {
		name string
		peer string
		xff  []string
		want string
	}{
		{"untrusted peer: its header is ignored", "203.0.113.9", []string{"198.51.100.1"}, "203.0.113.9"},
		{"trusted peer without header is the client", "127.0.0.1", nil, "127.0.0.1"},
		{"trusted peer: the hop it appended", "127.0.0.1", []string{"198.51.100.1"}, "198.51.100.1"},
		{"a spoofed left part is not believed", "127.0.0.1", []string{"10.9.9.9, 1.2.3.4, 198.51.100.1"}, "198.51.100.1"},
		{"a chain of trusted proxies is walked", "127.0.0.1", []string{"198.51.100.1, 172.18.0.5"}, "198.51.100.1"},
		{"several headers read as one list", "127.0.0.1", []string{"1.2.3.4", "198.51.100.1, 172.18.0.7"}, "198.51.100.1"},
		{"garbage stops at the last trusted hop", "127.0.0.1", []string{"1.2.3.4, not-an-ip, 172.18.0.5"}, "172.18.0.5"},
		{"ports and brackets are read", "127.0.0.1", []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{"mapped IPv4 peer is trusted", "::ffff:127.0.0.1", []string{"198.51.100.1"}, "198.51.100.1"},
		{"IPv6 loopback peer", "::1", []string{"2001:db8::2"}, "2001:db8::2"},
		{"empty elements are skipped", "127.0.0.1", []string{"198.51.100.1, ,"}, "198.51.100.1"},
		{"all trusted: the leftmost", "127.0.0.1", []string{"172.18.0.9, 172.18.0.5"}, "172.18.0.9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := proxies.Client(netip.MustParseAddr(tt.peer), tt.xff)
			if got.String() != tt.want {
				t.Fatalf("Client(%s, %q) = %s, want %s", tt.peer, tt.xff, got, tt.want)
			}
		})
	}
}

func TestClient_NoProxiesTrustsNobody(t *testing.T) {
	var none Proxies
	got := none.Client(netip.MustParseAddr("127.0.0.1"), []string{"198.51.100.1"})
	if got.String() != "127.0.0.1" {
		t.Fatalf("Client = %s, want the peer 127.0.0.1", got)
	}
}

func TestClient_LongChainIsBounded(t *testing.T) {
	proxies, err := Parse([]string{"10.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	hops := strings.Repeat("10.1.1.1, ", 10000) + "10.0.0.2"
	got := proxies.Client(netip.MustParseAddr("10.0.0.1"), []string{hops})
	if !proxies.Trusted(got) {
		t.Fatalf("Client = %s, want a trusted hop where the walk stopped", got)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"127.0.0.1", "127.0.0.1/32", false},
		{"::ffff:10.1.2.3", "10.1.2.3/32", false},
		{"10.1.2.3/8", "10.0.0.0/8", false},
		{" ::1 ", "::1/128", false},
		{"nginx", "", true},
		{"10.0.0.0/33", "", true},
		{"", "", true},
	}
	for _, tt := range tests {
		got, err := Parse([]string{tt.in})
		if tt.wantErr {
			if err == nil {
				t.Errorf("Parse(%q) = %v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || len(got) != 1 || got[0].String() != tt.want {
			t.Errorf("Parse(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

func FuzzClient(f *testing.F) {
	f.Add("127.0.0.1", "1.2.3.4, 10.0.0.1")
	f.Add("::1", "[::1]:80,,x")
	proxies, err := Parse([]string{"127.0.0.0/8", "::1", "10.0.0.0/8"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, peer, xff string) {
		p, err := netip.ParseAddr(peer)
		if err != nil {
			return
		}
		got := proxies.Client(p, []string{xff})
		if !got.IsValid() {
			t.Fatalf("Client(%s, %q) is invalid", p, xff)
		}
		if !proxies.Trusted(p) && got != p.Unmap() {
			t.Fatalf("Client(%s, %q) = %s; an untrusted peer must be the client", p, xff, got)
		}
	})
}
