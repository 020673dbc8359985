package config

import (
	"strings"
	"testing"
)

// switchMinimal is minimal in switch mode with the switch's address.
const switchMinimal = "traffic:\n  mode: switch\n" + minimal + "    switch:\n      listen: 127.0.0.1:7501\n"

func TestLoadConfig_SwitchMode(t *testing.T) {
	c, err := parse(t, switchMinimal+"  api:\n    image: demoapp\n    port: 8000\n    switch: {listen: \"0.0.0.0:7502\", upstream: \"deployd:7502\"}\n")
	if err != nil {
		t.Fatal(err)
	}
	if !c.SwitchMode() {
		t.Fatal("SwitchMode() = false, want true")
	}
	if got := c.SwitchUpstream("web"); got != "127.0.0.1:7501" {
		t.Errorf("web's upstream = %q, want its listen address", got)
	}
	if got := c.SwitchUpstream("api"); got != "deployd:7502" {
		t.Errorf("api's upstream = %q, want deployd:7502", got)
	}
	if got := c.Traffic.TrustedProxies; strings.Join(got, ",") != "127.0.0.1,::1" {
		t.Errorf("trusted proxies = %q, want the loopback default", got)
	}
}

// Switch mode is the default, and a service without switch.listen is
// served on a unix socket next to its upstream file.
func TestLoadConfig_SwitchModeIsTheDefaultOnASocketPerService(t *testing.T) {
	c, err := parse(t, minimal)
	if err != nil {
		t.Fatal(err)
	}
	if !c.SwitchMode() {
		t.Fatalf("traffic.mode = %q, want switch", c.Traffic.Mode)
	}
	want := "unix:" + c.Nginx.UpstreamDir + "/web.switch.sock"
	if got := c.SwitchListen("web"); got != want {
		t.Errorf("SwitchListen(web) = %q, want %q", got, want)
	}
	if got := c.SwitchUpstream("web"); got != want {
		t.Errorf("SwitchUpstream(web) = %q, want the same socket", got)
	}
	if c.Services["web"].Switch.Listen != "" {
		t.Errorf("the default was written into the config: %+v", c.Services["web"].Switch)
	}
}

func TestLoadConfig_ReloadModeNeedsNoSwitch(t *testing.T) {
	c, err := parse(t, "traffic:\n  mode: reload\n"+minimal)
	if err != nil {
		t.Fatal(err)
	}
	if c.SwitchMode() {
		t.Fatalf("traffic.mode = %q, want reload", c.Traffic.Mode)
	}
}

func TestLoadConfig_BadTrafficConfigsNameTheField(t *testing.T) {
	tests := []struct {
		name string
		yml  string
		want []string
	}{
		{"unknown mode", "traffic:\n  mode: proxy\n" + minimal,
			[]string{`config.yml:2: traffic.mode: must be reload or switch, got "proxy"`}},
		{"bad trusted proxy", "traffic:\n  trusted_proxies: [127.0.0.1, nginx]\n" + minimal,
			[]string{`config.yml:2: traffic.trusted_proxies[1]: must be an IP address or a CIDR prefix, got "nginx"`}},
		{"default socket path too long", "traffic:\n  mode: switch\nnginx:\n  upstream_dir: /" + strings.Repeat("u", 100) + "\n" + minimal,
			[]string{"services.web.switch.listen: the default, unix:/uuu", "is not a usable unix socket path"}},
		{"socket path with a space", "traffic:\n  mode: switch\n" + minimal + "    switch:\n      listen: \"unix:/run/my web.sock\"\n",
			[]string{`config.yml:9: services.web.switch.listen: want unix:/absolute/path`}},
		{"relative socket path", "traffic:\n  mode: switch\n" + minimal + "    switch:\n      listen: unix:web.sock\n",
			[]string{`config.yml:9: services.web.switch.listen: want unix:/absolute/path`}},
		{"socket twice", "traffic:\n  mode: switch\n" + minimal + "    switch:\n      listen: unix:/run/d/web.sock\n  api:\n    image: demoapp\n    port: 8000\n    switch:\n      listen: unix:/run/d/web.sock\n",
			[]string{"services.web.switch.listen: unix:/run/d/web.sock is already taken by services.api.switch.listen"}},
		{"listen without a port", "traffic:\n  mode: switch\n" + minimal + "    switch:\n      listen: 127.0.0.1\n",
			[]string{`config.yml:9: services.web.switch.listen: must be host:port, got "127.0.0.1"`}},
		{"listen port zero", "traffic:\n  mode: switch\n" + minimal + "    switch:\n      listen: 127.0.0.1:0\n",
			[]string{`config.yml:9: services.web.switch.listen: port must be 1 to 65535, got "0"`}},
		{"listen on a name", "traffic:\n  mode: switch\n" + minimal + "    switch:\n      listen: deployd:7501\n",
			[]string{`config.yml:9: services.web.switch.listen: host must be an IP address (or empty for every interface), got "deployd"`}},
		{"listen on the API's address", "listen: 127.0.0.1:7501\n" + switchMinimal,
			[]string{"config.yml:10: services.web.switch.listen: 127.0.0.1:7501 is already taken by listen"}},
		{"listen twice", switchMinimal + "  api:\n    image: demoapp\n    port: 8000\n    switch:\n      listen: 0.0.0.0:7501\n      upstream: deployd:7501\n",
			[]string{"config.yml:9: services.web.switch.listen: 127.0.0.1:7501 is already taken by services.api.switch.listen"}},
		{"every interface without an upstream", "traffic:\n  mode: switch\n" + minimal + "    switch:\n      listen: \":7501\"\n",
			[]string{`config.yml:8: services.web.switch.upstream: is required when switch.listen ":7501" listens on every interface`}},
		{"bad upstream", switchMinimal + "      upstream: \"0.0.0.0:7501\"\n",
			[]string{`config.yml:10: services.web.switch.upstream: must be an address nginx can connect to, got "0.0.0.0:7501"`}},
		{"upstream without listen", "traffic:\n  mode: reload\n" + minimal + "    switch:\n      upstream: deployd:7501\n",
			[]string{"config.yml:9: services.web.switch.upstream: needs switch.listen"}},
		{"unknown switch key", switchMinimal + "      port: 7501\n",
			[]string{"config.yml:10: services.web.switch.port: unknown key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse(t, tt.yml)
			if err == nil {
				t.Fatalf("parse succeeded with %+v, want an error containing %q", c, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error = %q\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestFieldErrorf_NamesTheLine(t *testing.T) {
	c, err := parse(t, switchMinimal)
	if err != nil {
		t.Fatal(err)
	}
	got := c.FieldErrorf(SwitchListenPath("web"), "listen on %s: address already in use", "127.0.0.1:7501").Error()
	want := "config.yml:9: services.web.switch.listen: listen on 127.0.0.1:7501: address already in use"
	if got != want {
		t.Fatalf("error = %q, want %q", got, want)
	}
}

func TestLoadConfig_TrustedProxiesTakeAddressesAndPrefixes(t *testing.T) {
	c, err := parse(t, "traffic:\n  trusted_proxies: [10.0.0.1, \"::1\", 172.18.0.0/16, \"fd00::/8\"]\n"+minimal)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(c.Traffic.TrustedProxies); got != 4 {
		t.Fatalf("trusted proxies = %q, want 4", c.Traffic.TrustedProxies)
	}
}
