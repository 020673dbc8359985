package controller

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/joho/godotenv"
)

var envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// readEnvFile reads a service's env file. It is read at each deploy so that
// a changed secret reaches the next deploy without a restart.
func readEnvFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read env file: %w", err)
	}
	vars, err := parseEnvFile(b)
	if err != nil {
		return nil, fmt.Errorf("env file %s: %w", path, err)
	}
	return vars, nil
}

// parseEnvFile parses an env file as docker compose users write them, with
// godotenv: KEY=VALUE lines (spaces around = allowed), blank lines and #
// comments, an optional "export " prefix, CRLF line ends. An unquoted value
// ends at " #"; a single-quoted one is taken as it is; a double-quoted one
// may span lines and knows the escapes \n, \r, \" and \\. $KEY and ${KEY}
// (upper case) in unquoted and double-quoted values are replaced by keys
// defined above, or nothing; \$ is a literal $. The last of two equal keys
// wins.
//
// Errors name the line, never its content: env files hold secrets, and
// godotenv's own errors quote the file.
func parseEnvFile(b []byte) (map[string]string, error) {
	vars, err := parseEnv(b)
	if err == nil {
		return vars, nil
	}
	msg := "want KEY=VALUE, with KEY made of letters, digits and _"
	if strings.HasPrefix(err.Error(), "unterminated quoted value") {
		msg = "a quoted value has no closing quote"
	}
	return nil, fmt.Errorf("line %d: %s", errorLine(b), msg)
}

// parseEnv is godotenv's parse with deployd's rule for keys: names a
// container's environment can hold and a shell can set.
func parseEnv(b []byte) (map[string]string, error) {
	vars, err := godotenv.UnmarshalBytes(b)
	if err != nil {
		return nil, err
	}
	for k := range vars {
		if !envKeyRE.MatchString(k) {
			return nil, fmt.Errorf("invalid key")
		}
	}
	return vars, nil
}

// errorLine is the line where b stops parsing: the one after the last line
// at which b's beginning parsed. godotenv's errors carry no position, and a
// quoted value may span lines, so the beginnings are tried one by one; this
// runs only when the file is broken.
func errorLine(b []byte) int {
	line, good := 0, 0
	for end := 0; end < len(b); {
		if i := bytes.IndexByte(b[end:], '\n'); i >= 0 {
			end += i + 1
		} else {
			end = len(b)
		}
		line++
		if _, err := parseEnv(b[:end]); err == nil {
			good = line
		}
	}
	return good + 1
}
