package nginxconf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// ErrNoTestFlag is returned by ConfiguredPIDFile for a test command without
// a "-t" argument: there is no way to derive the commands that ask nginx.
var ErrNoTestFlag = errors.New(`the test command has no "-t" argument to turn into -T`)

// WithFlag returns testCommand with its "-t" argument replaced by flag
// ("-T" dumps the configuration, "-V" prints the build options), so that
// the same binary, prefix and configuration file are asked, through the
// same helper if there is one. ok is false when there is no "-t".
func WithFlag(testCommand []string, flag string) (cmd []string, ok bool) {
	i := slices.Index(testCommand, "-t")
	if i < 0 {
		return nil, false
	}
	cmd = slices.Clone(testCommand)
	cmd[i] = flag
	return cmd, true
}

// nginxDefaultPrefix is nginx's own --prefix when it was built without one.
const nginxDefaultPrefix = "/usr/local/nginx/"

// ConfiguredPIDFile asks nginx where its master writes its pid: the pid
// directive of the configuration `nginx -T` prints, else the --pid-path
// nginx was built with (`nginx -V`), else nginx's logs/nginx.pid; a relative
// path is resolved against the prefix (-p in testCommand, else --prefix).
// testCommand is nginx.test_command; the commands run are it with -T and -V
// in place of -t. Errors: ErrNoTestFlag, or a command that failed, with
// its output.
func ConfiguredPIDFile(ctx context.Context, testCommand []string) (string, error) {
	dump, ok := WithFlag(testCommand, "-T")
	if !ok {
		return "", ErrNoTestFlag
	}
	out, err := output(ctx, dump)
	if err != nil {
		return "", fmt.Errorf("nginx config dump (%s): %w", strings.Join(dump, " "), err)
	}
	pid, found, err := ParsePIDDirective(out)
	if err != nil {
		return "", fmt.Errorf("nginx config dump (%s): %w", strings.Join(dump, " "), err)
	}
	var build []byte // nginx -V, asked only when needed
	askBuild := func() ([]byte, error) {
		if build != nil {
			return build, nil
		}
		version, _ := WithFlag(testCommand, "-V")
		b, err := output(ctx, version)
		if err != nil {
			return nil, fmt.Errorf("nginx build options (%s): %w", strings.Join(version, " "), err)
		}
		build = b
		return b, nil
	}
	if !found {
		b, err := askBuild()
		if err != nil {
			return "", err
		}
		pid = buildOption(b, "pid-path")
		if pid == "" {
			pid = "logs/nginx.pid"
		}
	}
	if filepath.IsAbs(pid) {
		return filepath.Clean(pid), nil
	}
	prefix := prefixArg(testCommand)
	if prefix == "" {
		b, err := askBuild()
		if err != nil {
			return "", err
		}
		if prefix = buildOption(b, "prefix"); prefix == "" {
			prefix = nginxDefaultPrefix
		}
	}
	return filepath.Join(prefix, pid), nil
}

// prefixArg is the value of -p in an nginx command line, or "".
func prefixArg(cmd []string) string {
	for i, a := range cmd {
		if a == "-p" && i+1 < len(cmd) {
			return cmd[i+1]
		}
		if p, ok := strings.CutPrefix(a, "-p"); ok && p != "" && !strings.HasPrefix(a, "--") {
			return p
		}
	}
	return ""
}

var buildOptionRE = regexp.MustCompile(`(?:^|\s)--(pid-path|prefix)=(\S+)`)

// buildOption is the value of --name=... in nginx -V's configure arguments.
func buildOption(v []byte, name string) string {
	for _, m := range buildOptionRE.FindAllSubmatch(v, -1) {
		if string(m[1]) == name {
			return string(m[2])
		}
	}
	return ""
}

// output runs argv and returns what it printed; stderr is kept apart so
// that nginx's "syntax is ok" lines do not land inside the dump, except
// through a helper that merges them, which ParsePIDDirective tolerates.
func output(ctx context.Context, argv []string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String() + "\n" + stdout.String())
		if msg == "" {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s", err, msg)
	}
	// nginx -V prints to stderr.
	return append(stdout.Bytes(), stderr.Bytes()...), nil
}

// dumpHeader starts each file in nginx -T's output.
const dumpHeader = "# configuration file "

// ParsePIDDirective finds the pid directive in nginx -T's output: a "pid"
// statement outside any block in any of the dumped files (nginx allows it
// only in the main context, so an included file that has one at its top
// level was included there). Text before the first file header, such as
// nginx's own "syntax is ok" lines, is ignored. found is false when no
// file sets pid.
func ParsePIDDirective(dump []byte) (path string, found bool, err error) {
	sections := bytes.Split(dump, []byte("\n"+dumpHeader))
	if bytes.HasPrefix(dump, []byte(dumpHeader)) {
		sections[0] = dump[len(dumpHeader):]
	} else if len(sections) == 1 {
		return "", false, errors.New("no configuration file in nginx -T's output")
	} else {
		sections = sections[1:]
	}
	for _, sec := range sections {
		// The header line names the file: "/etc/nginx/nginx.conf:".
		_, body, _ := bytes.Cut(sec, []byte("\n"))
		p, ok, err := topLevelPID(body)
		if err != nil {
			return "", false, err
		}
		if ok {
			path, found = p, true
		}
	}
	return path, found, nil
}

// topLevelPID scans one file's text with nginx's lexical rules (comments,
// quotes, escapes, blocks) for a depth-0 "pid <path>;".
func topLevelPID(src []byte) (string, bool, error) {
	var (
		depth int
		stmt  []string
		tok   strings.Builder
		inTok bool
		path  string
		found bool
	)
	endTok := func() {
		if inTok {
			stmt = append(stmt, tok.String())
			tok.Reset()
			inTok = false
		}
	}
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case c == '#' && !inTok:
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'':
			endTok()
			j := i + 1
			for ; j < len(src) && src[j] != c; j++ {
				if src[j] == '\\' && j+1 < len(src) {
					j++
					tok.WriteByte(src[j])
					continue
				}
				tok.WriteByte(src[j])
			}
			if j >= len(src) {
				return "", false, errors.New("unterminated quote in nginx -T's output")
			}
			inTok = true
			endTok()
			i = j
		case c == '\\' && i+1 < len(src):
			i++
			tok.WriteByte(src[i])
			inTok = true
		case c == ';':
			endTok()
			if depth == 0 && len(stmt) == 2 && stmt[0] == "pid" {
				path, found = stmt[1], true
			}
			stmt = stmt[:0]
		case c == '{':
			endTok()
			depth++
			stmt = stmt[:0]
		case c == '}':
			endTok()
			if depth > 0 {
				depth--
			}
			stmt = stmt[:0]
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			endTok()
		default:
			tok.WriteByte(c)
			inTok = true
		}
	}
	return path, found, nil
}
