// Package nginxconf points nginx upstreams at replicas: it renders an
// upstream file from a template, writes it atomically, has nginx test and
// reload it, confirms the reload took effect and restores the previous file
// on any failure.
package nginxconf

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"unicode/utf8"
)

//go:embed upstream.conf.tmpl
var defaultTemplate string

// ErrInvalid marks a service name, address or rendered output that must
// never reach nginx.
var ErrInvalid = errors.New("invalid upstream")

var (
	serviceRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
	hostRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	dottedRE  = regexp.MustCompile(`^[0-9.]+$`)
	// socketPathRE is an absolute path nginx reads plainly in a server
	// directive.
	socketPathRE = regexp.MustCompile(`^/[A-Za-z0-9._/-]+$`)
)

// TemplateData is what an upstream template sees.
type TemplateData struct {
	Service string
	Servers []Server
	// Placeholder is true when there are no servers: the upstream must
	// make nginx answer 502 and still pass nginx -t.
	Placeholder bool
}

// Server is one upstream server.
type Server struct {
	Address string
}

// DefaultTemplate returns the embedded upstream template.
func DefaultTemplate() *template.Template {
	return template.Must(parseTemplate("upstream.conf.tmpl", defaultTemplate))
}

// ParseTemplate parses a user template. Referring to a field that does not
// exist is an error at render time rather than an empty string in a config.
func ParseTemplate(name, text string) (*template.Template, error) {
	t, err := parseTemplate(name, text)
	if err != nil {
		return nil, fmt.Errorf("parse template %s: %w", name, err)
	}
	return t, nil
}

func parseTemplate(name, text string) (*template.Template, error) {
	return template.New(name).Option("missingkey=error").Parse(text)
}

// Render validates service and addrs and renders tmpl with them. No
// addresses renders the placeholder upstream. Addresses are deduplicated
// and sorted, so the same set always renders the same bytes. It returns an
// error wrapping ErrInvalid for anything that must not reach nginx.
func Render(tmpl *template.Template, service string, addrs []string) ([]byte, error) {
	if err := ValidateService(service); err != nil {
		return nil, err
	}
	data := TemplateData{Service: service, Placeholder: len(addrs) == 0}
	seen := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		if err := ValidateAddress(a); err != nil {
			return nil, err
		}
		if !seen[a] {
			seen[a] = true
			data.Servers = append(data.Servers, Server{Address: a})
		}
	}
	sort.Slice(data.Servers, func(i, j int) bool { return data.Servers[i].Address < data.Servers[j].Address })

	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("render upstream %s: %w", service, err)
	}
	out := buf.Bytes()
	if err := validateOutput(out); err != nil {
		return nil, fmt.Errorf("render upstream %s: %w", service, err)
	}
	return out, nil
}

// ValidateService reports whether name may name an upstream and its file.
func ValidateService(name string) error {
	if !serviceRE.MatchString(name) {
		return fmt.Errorf("%w: service name %q must match %s", ErrInvalid, name, serviceRE)
	}
	return nil
}

// ValidateAddress accepts host:port where host is an IPv4 literal, a
// bracketed IPv6 literal or a DNS-style name, and port is 1-65535 without
// sign or leading zeros; or unix:/path, an absolute path of letters,
// digits and "._-/" (the traffic switch's socket). Nothing it accepts can
// break out of a server directive.
func ValidateAddress(addr string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: address %q: %s", ErrInvalid, addr, why)
	}
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if !socketPathRE.MatchString(path) || strings.Contains(path, "//") || len(path) > 103 {
			return bad("want unix:/absolute/path of letters, digits and ._-/ (at most 103 bytes)")
		}
		return nil
	}
	var host, port string
	if strings.HasPrefix(addr, "[") {
		end := strings.IndexByte(addr, ']')
		if end < 0 || end+1 >= len(addr) || addr[end+1] != ':' {
			return bad("want [ipv6]:port")
		}
		host, port = addr[1:end], addr[end+2:]
		ip := net.ParseIP(host)
		// ParseIP rejects zones ("%eth0"); To4 catches "[1.2.3.4]".
		if ip == nil || ip.To4() != nil || !strings.Contains(host, ":") {
			return bad("not an IPv6 literal")
		}
	} else {
		i := strings.LastIndexByte(addr, ':')
		if i < 0 {
			return bad("want host:port")
		}
		host, port = addr[:i], addr[i+1:]
		switch {
		case len(host) > 253:
			return bad("host name too long")
		case !hostRE.MatchString(host):
			return bad("host is not an IPv4 literal or a DNS name")
		case dottedRE.MatchString(host) && net.ParseIP(host).To4() == nil:
			// All digits and dots is meant as IPv4; "999.1.1.1" is not
			// a name nginx should try to resolve.
			return bad("not an IPv4 literal")
		}
	}
	if port == "" || len(port) > 5 || port[0] == '0' || strings.Trim(port, "0123456789") != "" {
		return bad("port must be 1-65535")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return bad("port must be 1-65535")
	}
	return nil
}

// validateOutput is defence in depth against a user template: whatever it
// renders must at least be non-empty, NUL-free UTF-8 text.
func validateOutput(out []byte) error {
	switch {
	case len(bytes.TrimSpace(out)) == 0:
		return fmt.Errorf("%w: rendered output is empty", ErrInvalid)
	case bytes.IndexByte(out, 0) >= 0:
		return fmt.Errorf("%w: rendered output contains a NUL byte", ErrInvalid)
	case !utf8.Valid(out):
		return fmt.Errorf("%w: rendered output is not valid UTF-8", ErrInvalid)
	}
	return nil
}
