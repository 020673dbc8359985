package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/deployd/deployd/internal/clientaddr"
)

// Traffic modes: how a deploy moves traffic.
const (
	// TrafficModeReload rewrites the service's nginx upstream and reloads
	// nginx at every switch.
	TrafficModeReload = "reload"
	// TrafficModeSwitch points nginx's upstream at deployd's traffic
	// switch once; a switch changes the switch's targets, never nginx.
	TrafficModeSwitch = "switch"
)

// Traffic chooses how traffic moves at a deploy or a rollback.
type Traffic struct {
	Mode string `yaml:"mode"`
	// TrustedProxies are the addresses or CIDR prefixes (nginx) whose
	// X-Forwarded-* headers the switch passes on; from anyone else they
	// are replaced by what the connection says.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// Pause bounds the pauses of switch mode.
	Pause TrafficPause `yaml:"pause"`
	// Switchd is the process that runs the switch in switch mode.
	Switchd Switchd `yaml:"switchd"`
}

// Switchd is the traffic switch's own process (deployd switchd). It holds
// the listeners nginx sends requests to and outlives the daemon, so a
// crash, a kill -9 or a restart of the daemon never touches traffic; the
// daemon drives it over a unix socket.
type Switchd struct {
	// Socket is the control socket; empty means data_dir/switchd.sock.
	Socket string `yaml:"socket,omitempty"`
	// Spawn lets the daemon start switchd (detached, so it outlives the
	// daemon) when nothing answers on Socket, and again should it die.
	// Off where switchd is a unit or a container of its own.
	Spawn bool `yaml:"spawn"`
	// HandoffTimeout bounds how long the old process of an upgrade keeps
	// serving the connections it has (each ends after its next response);
	// past it they are closed. It should exceed nginx's upstream
	// keepalive_timeout, after which nginx closes idle ones itself.
	HandoffTimeout time.Duration `yaml:"handoff_timeout"`
	// ControlListen, host:port, serves the control API over TCP as well,
	// for a daemon on another node (one switchd per edge node of a
	// cluster); empty: the unix socket only. Every request on it must
	// carry the token ControlTokenEnv or ControlTokenFile names (exactly
	// one of them), which the daemon sends to reach it.
	ControlListen    string `yaml:"control_listen,omitempty"`
	ControlTokenEnv  string `yaml:"control_token_env,omitempty"`
	ControlTokenFile string `yaml:"control_token_file,omitempty"`
	// Edges, when its Service is set, makes the daemon drive the switches
	// of a Swarm service (one per edge node) over their TCP control API
	// instead of a switchd of its own.
	Edges SwitchdEdges `yaml:"edges,omitempty"`
}

// SwitchdEdges are the edge switches of a swarm: the tasks of a Swarm
// service running `deployd switchd` with this configuration. The daemon
// lists the service's running tasks at every call and drives each at its
// address on Network, port ControlPort, with the control token; a switch
// succeeds only when every edge confirmed it.
type SwitchdEdges struct {
	// Service is the Swarm service of the edge switches; empty: off.
	Service string `yaml:"service,omitempty"`
	// Network is the overlay network the daemon reaches them on.
	Network string `yaml:"network,omitempty"`
	// ControlPort is the port of their control_listen; 0 means the port
	// of traffic.switchd.control_listen.
	ControlPort int `yaml:"control_port,omitempty"`
}

// EdgesOn reports whether the daemon drives edge switches on a swarm.
func (c *Config) EdgesOn() bool { return c.Traffic.Switchd.Edges.Service != "" }

// EdgesControlPort is the port the edge switches serve their control API
// on: edges.control_port, else control_listen's.
func (c *Config) EdgesControlPort() int {
	sd := c.Traffic.Switchd
	if sd.Edges.ControlPort != 0 {
		return sd.Edges.ControlPort
	}
	if _, port, err := net.SplitHostPort(sd.ControlListen); err == nil {
		if p, err := strconv.Atoi(port); err == nil {
			return p
		}
	}
	return 0
}

// minControlTokenLength is the shortest token the TCP control API
// accepts: whoever has it moves traffic on every edge.
const minControlTokenLength = 32

func (s *Switchd) unknownKeyHint(key string) string {
	switch key {
	case "control_token", "token", "secret":
		return "secrets do not belong in the configuration file; name an environment variable with control_token_env or a file with control_token_file"
	}
	return ""
}

// ResolveSwitchdControlToken reads the TCP control API's token through
// getenv or readFile; nil, nil when traffic.switchd.control_listen and
// traffic.switchd.edges.service are empty. It refuses a missing, empty or short (under 32 bytes) token.
// Errors never contain the token.
func (c *Config) ResolveSwitchdControlToken(getenv func(string) string, readFile func(string) ([]byte, error)) ([]byte, error) {
	sd := c.Traffic.Switchd
	if sd.ControlListen == "" && !c.EdgesOn() {
		return nil, nil
	}
	token, err := readSecret(secretRef{key: "control_token", env: sd.ControlTokenEnv, file: sd.ControlTokenFile, minLen: minControlTokenLength}, getenv, readFile)
	if err != nil {
		return nil, fmt.Errorf("traffic.switchd: %w", err)
	}
	return token, nil
}

// maxSocketPath is what a unix socket address holds on Linux (108 bytes
// with the terminating NUL), less a margin for the BSDs (104).
const maxSocketPath = 103

// SwitchdSocket is the control socket of the traffic switch process.
func (c *Config) SwitchdSocket() string {
	if c.Traffic.Switchd.Socket != "" {
		return c.Traffic.Switchd.Socket
	}
	return filepath.Join(c.DataDir, "switchd.sock")
}

// ServiceSwitch is where the traffic switch serves one service.
type ServiceSwitch struct {
	// Listen is the address the switch listens on for the service,
	// host:port with an IP address (or no host: every interface).
	Listen string `yaml:"listen,omitempty"`
	// Upstream is the address nginx reaches the switch at, written into
	// the service's upstream file; empty means Listen. In nginx docker
	// mode it is deployd's name on the service's network, e.g.
	// deployd:7501.
	Upstream string `yaml:"upstream,omitempty"`
}

// SwitchMode reports whether traffic moves through the traffic switch.
func (c *Config) SwitchMode() bool { return c.Traffic.Mode == TrafficModeSwitch }

// SwitchListen is where the switch serves the service: switch.listen, or
// by default (an empty switch.listen and switch.upstream) a unix socket in
// nginx's upstream directory, next to the upstream file that names it:
// nginx reads there (it includes the files), deployd writes there, and no
// port has to be chosen. Validate refuses the default with nginx.mode
// static (no upstream directory then) unless the edges' switches listen.
func (c *Config) SwitchListen(service string) string {
	sw := c.Services[service].Switch
	if sw.Listen != "" || sw.Upstream != "" {
		return sw.Listen
	}
	return unixPrefix + filepath.Join(c.Nginx.UpstreamDir, service+".switch.sock")
}

// unixPrefix marks a unix socket address, as nginx writes it.
const unixPrefix = "unix:"

// SwitchUpstream is the address nginx reaches the switch at for the
// service: switch.upstream, else where it listens. Unused with nginx.mode
// static, where no upstream file is written.
func (c *Config) SwitchUpstream(service string) string {
	if up := c.Services[service].Switch.Upstream; up != "" {
		return up
	}
	return c.SwitchListen(service)
}

// FieldErrorf returns an error naming the field at path and where its
// value came from ("deployd.yml:40: services.web.switch.listen: ..."),
// for problems found after validation, such as a port already in use.
// Like fmt.Errorf, a %w verb wraps its operand.
func (c *Config) FieldErrorf(path, format string, args ...any) error {
	v := &validator{origins: c.origins}
	err := fmt.Errorf(format, args...)
	return &fieldError{Origin: v.origin(path), Path: path, Msg: err.Error(), cause: errors.Unwrap(err)}
}

// SwitchListenPath is the field path of a service's switch.listen.
func SwitchListenPath(service string) string { return joinKey("services", service) + ".switch.listen" }

func (c *Config) validateTraffic(v *validator) {
	v.oneOf("traffic.mode", c.Traffic.Mode, TrafficModeReload, TrafficModeSwitch)
	c.validatePause(v)
	v.positive("traffic.switchd.handoff_timeout", c.Traffic.Switchd.HandoffTimeout)
	if c.SwitchMode() {
		if sock := c.SwitchdSocket(); len(sock) > maxSocketPath {
			v.addf("traffic.switchd.socket", "%q is longer than the %d bytes a unix socket path may have; set a shorter one", sock, maxSocketPath)
		}
	}
	c.validateSwitchdControl(v)
	for i, p := range c.Traffic.TrustedProxies {
		if !validProxy(p) {
			v.addf(fmt.Sprintf("traffic.trusted_proxies[%d]", i), "must be an IP address or a CIDR prefix, got %q", p)
		}
	}
	// A listen address taken twice fails at the second bind; say so here,
	// naming both fields.
	apiHost, apiPort, _ := net.SplitHostPort(c.Listen)
	type taken struct{ host, port, path string }
	seen := []taken{{apiHost, apiPort, "listen"}}
	if ctl := c.Traffic.Switchd.ControlListen; ctl != "" {
		if host, port, ok := validSwitchListen(&validator{}, "", ctl); ok {
			if port == apiPort && (host == apiHost || unspecified(host) || unspecified(apiHost)) {
				v.addf("traffic.switchd.control_listen", "%s is already taken by listen", ctl)
			}
			seen = append(seen, taken{host, port, "traffic.switchd.control_listen"})
		}
	}
	for _, name := range c.serviceNames() {
		sw := c.Services[name].Switch
		p := joinKey("services", name) + ".switch"
		if sw.Listen == "" && c.SwitchMode() && c.NginxStatic() && !c.EdgesOn() {
			// The default socket sits in nginx.upstream_dir, which
			// deployd does not manage in static mode; the edges, when
			// set, listen where this same file tells them.
			v.addf(p+".listen", "is required with nginx.mode %s: the default is a unix socket in nginx.upstream_dir, which static mode does not use; set the address your nginx proxies to, e.g. 127.0.0.1:7501", NginxModeStatic)
			continue
		}
		if sw.Listen == "" && sw.Upstream != "" {
			v.addf(p+".upstream", "needs switch.listen")
			continue
		}
		if sw.Listen == "" && !c.SwitchMode() {
			continue
		}
		if sw.Listen == "" {
			// The default socket: say so when it cannot be one.
			def := c.SwitchListen(name)
			if !validSocketPath(&validator{}, "", strings.TrimPrefix(def, unixPrefix)) {
				v.addf(p+".listen", "the default, %s, is not a usable unix socket path (absolute, letters, digits and ._-/, at most %d bytes): set switch.listen or a shorter nginx.upstream_dir", def, maxSocketPath)
				continue
			}
		}
		sw.Listen = c.SwitchListen(name)
		if path, isSocket := strings.CutPrefix(sw.Listen, unixPrefix); isSocket {
			if validSocketPath(v, p+".listen", path) {
				for _, t := range seen {
					if t.path != "" && t.host == path {
						v.addf(p+".listen", "%s is already taken by %s", sw.Listen, t.path)
					}
				}
				seen = append(seen, taken{path, "", p + ".listen"})
			}
			if sw.Upstream != "" && !c.NginxStatic() {
				validSwitchUpstream(v, p+".upstream", sw.Upstream)
			}
			continue
		}
		host, port, ok := validSwitchListen(v, p+".listen", sw.Listen)
		if ok {
			for _, t := range seen {
				if t.port != "" && t.port == port && (t.host == host || unspecified(t.host) || unspecified(host)) && t.port != "0" {
					v.addf(p+".listen", "%s is already taken by %s", sw.Listen, t.path)
					ok = false
					break
				}
			}
		}
		if ok {
			seen = append(seen, taken{host, port, p + ".listen"})
		}
		switch {
		case c.NginxStatic():
			// No upstream file is written: switch.upstream is unused,
			// and the operator's nginx names the address itself.
		case sw.Upstream != "":
			validSwitchUpstream(v, p+".upstream", sw.Upstream)
		case ok && unspecified(host):
			v.addf(p+".upstream", "is required when switch.listen %q listens on every interface: nginx needs an address to connect to", sw.Listen)
		}
	}
}

// validateSwitchdControl checks the TCP control API's address and where
// its token comes from; the token itself is read by
// ResolveSwitchdControlToken.
func (c *Config) validateSwitchdControl(v *validator) {
	sd := c.Traffic.Switchd
	const p = "traffic.switchd"
	c.validateEdges(v)
	if sd.ControlListen == "" && !c.EdgesOn() {
		if sd.ControlTokenEnv != "" || sd.ControlTokenFile != "" {
			v.addf(p, "control_token_env or control_token_file is set without control_listen or edges")
		}
		return
	}
	if sd.ControlListen != "" {
		validSwitchListen(v, p+".control_listen", sd.ControlListen)
	}
	switch {
	case sd.ControlTokenEnv == "" && sd.ControlTokenFile == "" && sd.ControlListen == "":
		v.addf(p+".edges", "needs one of traffic.switchd.control_token_env or control_token_file: the edges' control API takes the token")
	case sd.ControlTokenEnv == "" && sd.ControlTokenFile == "":
		v.addf(p, "control_listen needs one of control_token_env or control_token_file")
	case sd.ControlTokenEnv != "" && sd.ControlTokenFile != "":
		v.addf(p, "set control_token_env or control_token_file, not both")
	case sd.ControlTokenEnv != "" && !envNameRE.MatchString(sd.ControlTokenEnv):
		v.addf(p+".control_token_env", "invalid environment variable name %q", sd.ControlTokenEnv)
	case sd.ControlTokenEnv != "" && sd.Spawn:
		// A spawned switchd inherits no secret of the daemon's
		// environment (switchdEnv); a file it reads itself.
		v.addf(p+".control_token_env", "a switchd the daemon spawns does not inherit its environment's secrets; use control_token_file, or spawn: false where switchd runs on its own")
	}
}

// validateEdges checks traffic.switchd.edges when it is on: the edges
// are switch mode's, the daemon starts no switchd of its own, and their
// control API needs the token (checked with control_listen's).
func (c *Config) validateEdges(v *validator) {
	e := c.Traffic.Switchd.Edges
	const p = "traffic.switchd.edges"
	if !c.EdgesOn() {
		if e.Network != "" || e.ControlPort != 0 {
			v.addf(p+".service", "is required when edges.network or edges.control_port is set")
		}
		return
	}
	if !swarmNameRE.MatchString(e.Service) {
		v.addf(p+".service", "must be a Swarm service name (letters, digits, _ and -, at most 63), got %q", e.Service)
	}
	if !c.SwitchMode() {
		v.addf(p, "needs traffic.mode %q: the edges are traffic switches", TrafficModeSwitch)
	}
	if c.Traffic.Switchd.Spawn {
		v.addf(p, "needs traffic.switchd.spawn: false: the daemon drives the edges' switches and runs none of its own")
	}
	if e.Network == "" {
		v.addf(p+".network", "is required: the overlay network the daemon reaches the edge switches on")
	}
	switch {
	case e.ControlPort < 0 || e.ControlPort > 65535:
		v.addf(p+".control_port", "must be 1 to 65535, got %d", e.ControlPort)
	case c.EdgesControlPort() == 0:
		v.addf(p+".control_port", "is required when traffic.switchd.control_listen names no port")
	}
}

// swarmNameRE is what Swarm accepts as a service's name.
var swarmNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]{0,62}$`)

// validSocketPath checks a unix socket path: absolute, of letters, digits
// and "._-/" (what nginx reads plainly in a server directive), and short
// enough for a socket address.
func validSocketPath(v *validator, path, p string) bool {
	ok := len(p) > 1 && len(p) <= maxSocketPath && p[0] == '/' && !strings.Contains(p, "//")
	for _, r := range p {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && !strings.ContainsRune("._-/", r) {
			ok = false
		}
	}
	if !ok {
		v.addf(path, "want unix:/absolute/path of letters, digits and ._-/ (at most %d bytes), got %q", maxSocketPath, unixPrefix+p)
	}
	return ok
}

// validSwitchListen checks host:port with an IP literal or no host and a
// port from 1: the address is fixed, since nginx's upstream names it.
func validSwitchListen(v *validator, path, addr string) (host, port string, ok bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.addf(path, "must be host:port, got %q", addr)
		return "", "", false
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		v.addf(path, "port must be 1 to 65535, got %q", port)
		return "", "", false
	}
	if host != "" {
		a, err := netip.ParseAddr(host)
		if err != nil {
			v.addf(path, "host must be an IP address (or empty for every interface), got %q", host)
			return "", "", false
		}
		host = a.Unmap().String()
	}
	return host, port, true
}

// validSwitchUpstream checks host:port where host may be a name nginx
// resolves (switchd on a Docker network), or a unix socket.
func validSwitchUpstream(v *validator, path, addr string) {
	if p, ok := strings.CutPrefix(addr, unixPrefix); ok {
		validSocketPath(v, path, p)
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.addf(path, "must be host:port, got %q", addr)
		return
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		v.addf(path, "port must be 1 to 65535, got %q", port)
		return
	}
	if host == "" || (net.ParseIP(host) == nil && !validHostname(host)) {
		v.addf(path, "invalid host %q", host)
		return
	}
	if a, err := netip.ParseAddr(host); err == nil && a.IsUnspecified() {
		v.addf(path, "must be an address nginx can connect to, got %q", addr)
	}
}

// validProxy accepts what clientaddr.Parse does (and so the switch's
// ParseTrustedProxies): an IP address or a CIDR prefix.
func validProxy(s string) bool {
	_, err := clientaddr.Parse([]string{s})
	return err == nil
}

func unspecified(host string) bool {
	if host == "" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsUnspecified()
}
