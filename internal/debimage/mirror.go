package debimage

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ErrNoMirror means no apt source for the suite was found on the host.
var ErrNoMirror = errors.New("no apt source names the suite")

// Where apt reads its sources on a Debian host.
const (
	aptSourcesList = "/etc/apt/sources.list"
	aptSourcesDir  = "/etc/apt/sources.list.d"
)

// HostMirror returns the archive URL the host's apt uses for suite (e.g.
// "bookworm"): the first deb822 source (sources.list.d/*.sources, in name
// order) whose Suites include suite exactly, else the first classic line
// (sources.list, then sources.list.d/*.list) that does. The security
// archive ("bookworm-security") and deb-src entries never match. It returns
// an error wrapping ErrNoMirror when none does.
func HostMirror(suite string) (string, error) {
	return mirrorIn(aptSourcesList, aptSourcesDir, suite)
}

func mirrorIn(listFile, dir, suite string) (string, error) {
	deb822, err := filepath.Glob(filepath.Join(dir, "*.sources"))
	if err != nil {
		return "", fmt.Errorf("find apt sources: %w", err)
	}
	classic, err := filepath.Glob(filepath.Join(dir, "*.list"))
	if err != nil {
		return "", fmt.Errorf("find apt sources: %w", err)
	}
	type source struct {
		path  string
		parse func(io.Reader, string) (string, error)
	}
	var sources []source
	for _, p := range deb822 {
		sources = append(sources, source{p, ParseDeb822})
	}
	for _, p := range append([]string{listFile}, classic...) {
		sources = append(sources, source{p, ParseSourcesList})
	}
	for _, s := range sources {
		f, err := os.Open(s.path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return "", fmt.Errorf("read apt sources: %w", err)
		}
		url, err := s.parse(f, suite)
		_ = f.Close() // read-only
		if err == nil {
			return url, nil
		}
		if !errors.Is(err, ErrNoMirror) {
			return "", fmt.Errorf("%s: %w", s.path, err)
		}
	}
	return "", fmt.Errorf("%w: %s in %s or %s/*.sources", ErrNoMirror, suite, listFile, dir)
}

// ParseSourcesList returns the URL of the first one-line-style entry
// ("deb [options] URL suite component...") for suite, or an error wrapping
// ErrNoMirror.
func ParseSourcesList(r io.Reader, suite string) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) < 3 || fields[0] != "deb" {
			continue
		}
		fields = fields[1:]
		if strings.HasPrefix(fields[0], "[") {
			// Options: "[arch=amd64 signed-by=...]", possibly spread
			// over several fields.
			i := slices.IndexFunc(fields, func(f string) bool { return strings.HasSuffix(f, "]") })
			if i < 0 {
				continue
			}
			fields = fields[i+1:]
		}
		if len(fields) >= 2 && fields[1] == suite && strings.TrimSuffix(fields[0], "/") != "" {
			return strings.TrimSuffix(fields[0], "/"), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", ErrNoMirror
}

// ParseDeb822 returns the first URI of the first stanza of a deb822
// .sources file whose Types include deb, whose Suites include suite and
// which is not "Enabled: no", or an error wrapping ErrNoMirror.
func ParseDeb822(r io.Reader, suite string) (string, error) {
	stanza := map[string]string{}
	var last string
	match := func() (string, bool) {
		defer clear(stanza)
		types := strings.Fields(stanza["types"])
		uris := strings.Fields(stanza["uris"])
		suites := strings.Fields(stanza["suites"])
		if !slices.Contains(types, "deb") || len(uris) == 0 || strings.TrimSuffix(uris[0], "/") == "" || !slices.Contains(suites, suite) ||
			strings.EqualFold(strings.TrimSpace(stanza["enabled"]), "no") {
			return "", false
		}
		return strings.TrimSuffix(uris[0], "/"), true
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#"):
			continue
		case strings.TrimSpace(line) == "":
			if url, ok := match(); ok {
				return url, nil
			}
			last = ""
		case line[0] == ' ' || line[0] == '\t':
			// A continuation line belongs to the field above it.
			if last != "" && strings.TrimSpace(line) != "." {
				stanza[last] += " " + strings.TrimSpace(line)
			}
		default:
			key, value, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			last = strings.ToLower(strings.TrimSpace(key))
			stanza[last] = strings.TrimSpace(value)
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	if url, ok := match(); ok {
		return url, nil
	}
	return "", ErrNoMirror
}
