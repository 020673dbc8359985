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

// switchdControl is switch mode with switchd's TCP control API, its
// token from a file, on a line of its own after "switchd:".
const switchdControl = "traffic:\n  mode: switch\n  switchd:\n    spawn: false\n"

func TestLoadConfig_SwitchdControlOverTCP(t *testing.T) {
	c, err := parse(t, switchdControl+"    control_listen: \":7600\"\n    control_token_env: SWITCHD_TOKEN\n"+minimal)
	if err != nil {
		t.Fatal(err)
	}
	if sd := c.Traffic.Switchd; sd.ControlListen != ":7600" || sd.ControlTokenEnv != "SWITCHD_TOKEN" {
		t.Fatalf("switchd = %+v, want control_listen :7600 with its token from SWITCHD_TOKEN", sd)
	}
}

func TestLoadConfig_BadSwitchdControlNamesTheField(t *testing.T) {
	tests := []struct {
		name string
		yml  string
		want string
	}{
		{"no token", switchdControl + "    control_listen: \":7600\"\n" + minimal,
			"config.yml:3: traffic.switchd: control_listen needs one of control_token_env or control_token_file"},
		{"both token sources", switchdControl + "    control_listen: \":7600\"\n    control_token_env: T\n    control_token_file: /t\n" + minimal,
			"config.yml:3: traffic.switchd: set control_token_env or control_token_file, not both"},
		{"token without listen", switchdControl + "    control_token_file: /t\n" + minimal,
			"config.yml:3: traffic.switchd: control_token_env or control_token_file is set without control_listen"},
		{"bad env name", switchdControl + "    control_listen: \":7600\"\n    control_token_env: 1TOKEN\n" + minimal,
			`config.yml:6: traffic.switchd.control_token_env: invalid environment variable name "1TOKEN"`},
		{"env with spawn", "traffic:\n  switchd:\n    control_listen: \":7600\"\n    control_token_env: T\n" + minimal,
			"config.yml:4: traffic.switchd.control_token_env: a switchd the daemon spawns does not inherit"},
		{"listen on a name", switchdControl + "    control_listen: switchd:7600\n    control_token_file: /t\n" + minimal,
			`config.yml:5: traffic.switchd.control_listen: host must be an IP address (or empty for every interface), got "switchd"`},
		{"listen without a port", switchdControl + "    control_listen: 10.0.0.1\n    control_token_file: /t\n" + minimal,
			`config.yml:5: traffic.switchd.control_listen: must be host:port, got "10.0.0.1"`},
		{"listen on the API's port", "listen: 127.0.0.1:7600\n" + switchdControl + "    control_listen: \":7600\"\n    control_token_file: /t\n" + minimal,
			"config.yml:6: traffic.switchd.control_listen: :7600 is already taken by listen"},
		{"listen on a service's port", switchdControl + "    control_listen: 127.0.0.1:7501\n    control_token_file: /t\n" + minimal + "    switch:\n      listen: 127.0.0.1:7501\n",
			"services.web.switch.listen: 127.0.0.1:7501 is already taken by traffic.switchd.control_listen"},
		{"token in the file", switchdControl + "    control_token: abc\n" + minimal,
			"config.yml:5: traffic.switchd.control_token: secrets do not belong in the configuration file; name an environment variable with control_token_env or a file with control_token_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse(t, tt.yml)
			if err == nil {
				t.Fatalf("parse succeeded with %+v, want an error containing %q", c.Traffic.Switchd, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestResolveSwitchdControlToken_RefusesShortOrMissingTokensWithoutShowingThem(t *testing.T) {
	c, err := parse(t, switchdControl+"    control_listen: \":7600\"\n    control_token_env: SWITCHD_TOKEN\n"+minimal)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("k", minControlTokenLength)
	short := long[:minControlTokenLength-1]
	noFile := func(string) ([]byte, error) { t.Fatal("read a file, want the environment"); return nil, nil }
	for _, tc := range []struct {
		name, value, wantErr string
	}{
		{"long enough", long, ""},
		{"short", short, "traffic.switchd: secret is shorter than 32 bytes"},
		{"unset", "", "traffic.switchd: control_token_env: environment variable SWITCHD_TOKEN is empty or unset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.ResolveSwitchdControlToken(func(k string) string {
				if k == "SWITCHD_TOKEN" {
					return tc.value
				}
				return ""
			}, noFile)
			if tc.wantErr == "" {
				if err != nil || string(got) != tc.value {
					t.Fatalf("token of %d bytes (%v), want the %d bytes of the environment", len(got), err, len(tc.value))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want %q", err, tc.wantErr)
			}
			if tc.value != "" && strings.Contains(err.Error(), tc.value) {
				t.Fatal("the error shows the token")
			}
		})
	}
	off, err := parse(t, minimal)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := off.ResolveSwitchdControlToken(func(string) string { return "" }, noFile); got != nil || err != nil {
		t.Fatalf("without control_listen: %d bytes, %v; want nil, nil", len(got), err)
	}
}

func TestLoadConfig_EdgesOnASwarm(t *testing.T) {
	c, err := parse(t, switchdControl+"    control_listen: \":7600\"\n    control_token_env: SWITCHD_TOKEN\n"+
		"    edges: {service: edge-switch, network: edge-net}\n"+minimal)
	if err != nil {
		t.Fatal(err)
	}
	if !c.EdgesOn() || c.Traffic.Switchd.Edges.Network != "edge-net" {
		t.Fatalf("edges = %+v, want on, network edge-net", c.Traffic.Switchd.Edges)
	}
	if got, want := c.EdgesControlPort(), 7600; got != want {
		t.Fatalf("control port = %d, want %d (control_listen's)", got, want)
	}
	c, err = parse(t, switchdControl+"    control_token_env: SWITCHD_TOKEN\n"+
		"    edges: {service: edge-switch, network: edge-net, control_port: 7700}\n"+minimal)
	if err != nil {
		t.Fatalf("edges without control_listen: %v", err)
	}
	if got, want := c.EdgesControlPort(), 7700; got != want {
		t.Fatalf("control port = %d, want %d", got, want)
	}
	token := strings.Repeat("t", 32)
	got, err := c.ResolveSwitchdControlToken(func(string) string { return token }, nil)
	if err != nil || string(got) != token {
		t.Fatalf("token with edges and no control_listen: %d bytes, %v; want the token", len(got), err)
	}
}

func TestLoadConfig_BadEdgesNameTheField(t *testing.T) {
	const edges = "    edges: {service: edge-switch, network: edge-net, control_port: 7600}\n"
	tests := []struct {
		name string
		yml  string
		want string
	}{
		{"reload mode", "traffic:\n  mode: reload\n  switchd:\n    spawn: false\n    control_token_file: /t\n" + edges + minimal,
			`traffic.switchd.edges: needs traffic.mode "switch"`},
		{"spawn", "traffic:\n  switchd:\n    control_token_file: /t\n" + edges + minimal,
			"traffic.switchd.edges: needs traffic.switchd.spawn: false"},
		{"no token", switchdControl + edges + minimal,
			"traffic.switchd.edges: needs one of traffic.switchd.control_token_env or control_token_file"},
		{"no network", switchdControl + "    control_token_file: /t\n    edges: {service: edge-switch, control_port: 7600}\n" + minimal,
			"traffic.switchd.edges.network: is required"},
		{"no port", switchdControl + "    control_token_file: /t\n    edges: {service: edge-switch, network: n}\n" + minimal,
			"traffic.switchd.edges.control_port: is required when traffic.switchd.control_listen names no port"},
		{"bad port", switchdControl + "    control_token_file: /t\n    edges: {service: edge-switch, network: n, control_port: 70000}\n" + minimal,
			"traffic.switchd.edges.control_port: must be 1 to 65535, got 70000"},
		{"bad service", switchdControl + "    control_token_file: /t\n    edges: {service: \"edge switch\", network: n, control_port: 1}\n" + minimal,
			`traffic.switchd.edges.service: must be a Swarm service name`},
		{"network without service", switchdControl + "    edges: {network: n}\n" + minimal,
			"traffic.switchd.edges.service: is required when edges.network or edges.control_port is set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse(t, tt.yml)
			if err == nil {
				t.Fatalf("parse succeeded with %+v, want an error containing %q", c.Traffic.Switchd, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

// staticNginx is nginx.mode static; the rest of the file decides whether
// it is valid.
const staticNginx = "nginx:\n  mode: static\n"

// In static mode nothing of nginx's is needed: not its commands, not a
// container, not an upstream directory, and switch.upstream is unused
// (even on every interface, where nginx would otherwise need it).
func TestLoadConfig_StaticNginxNeedsOnlyTheSwitchAddress(t *testing.T) {
	c, err := parse(t, staticNginx+"  test_command: []\n  reload_command: []\n"+switchMinimal+
		"  api:\n    image: demoapp\n    port: 8000\n    switch: {listen: \"0.0.0.0:7502\"}\n")
	if err != nil {
		t.Fatal(err)
	}
	if !c.NginxStatic() || !c.SwitchMode() {
		t.Fatalf("nginx.mode = %q, traffic.mode = %q; want static and switch", c.Nginx.Mode, c.Traffic.Mode)
	}
	if got, want := c.SwitchListen("web"), "127.0.0.1:7501"; got != want {
		t.Errorf("SwitchListen(web) = %q, want %q", got, want)
	}
	// The edges listen where this same file tells them: by default in
	// their own upstream directory, so switch.listen is not required.
	_, err = parse(t, staticNginx+switchdControl+"    control_token_file: /t\n"+
		"    edges: {service: edge-switch, network: edge-net, control_port: 7600}\n"+minimal)
	if err != nil {
		t.Fatalf("static with edges and no switch.listen: %v", err)
	}
}

func TestLoadConfig_BadStaticNginxNamesTheField(t *testing.T) {
	tests := []struct {
		name string
		yml  string
		want string
	}{
		{"reload mode", staticNginx + "traffic:\n  mode: reload\n" + minimal,
			`config.yml:2: nginx.mode: static needs traffic.mode "switch": in reload mode every switch rewrites nginx's upstream and reloads nginx`},
		{"default socket", staticNginx + "traffic:\n  mode: switch\n" + minimal,
			"services.web.switch.listen: is required with nginx.mode static: the default is a unix socket in nginx.upstream_dir"},
		{"default socket with spawn off", staticNginx + "traffic:\n  switchd: {spawn: false}\n" + minimal,
			"services.web.switch.listen: is required with nginx.mode static"},
		{"upstream but no listen", staticNginx + minimal + "    switch: {upstream: \"deployd:7501\"}\n",
			"services.web.switch.listen: is required with nginx.mode static"},
		{"bad listen still refused", staticNginx + minimal + "    switch: {listen: \"deployd:7501\"}\n",
			`services.web.switch.listen: host must be an IP address`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse(t, tt.yml)
			if err == nil {
				t.Fatalf("parse succeeded with %+v, want an error containing %q", c.Nginx, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q\nwant it to contain %q", err, tt.want)
			}
		})
	}
}
