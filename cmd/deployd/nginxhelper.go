package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// The host install runs deployd unprivileged under NoNewPrivileges, where
// neither `nginx -t` (it opens the root-owned pid file) nor sudo works. A
// root helper (deploy/systemd/deployd-nginx-helper, one instance per
// connection of deploy/systemd/deployd-nginx.socket) answers these
// requests; `deployd nginx` is its client, named in nginx.test_command and
// nginx.reload_command.

const (
	defaultHelperSocket = "/run/deployd-nginx.sock"
	// helperTimeout bounds one request: nginx -t on a large config with
	// many upstream names to resolve takes seconds, not minutes.
	helperTimeout = 60 * time.Second
	helperStatus  = "status="
)

// helperRequests are the only requests the helper runs; the client
// refuses anything else before connecting.
var helperRequests = map[string]bool{"-t": true, "-T": true, "-V": true, "reload": true}

const nginxHelperUsage = `usage: deployd nginx [--socket PATH] -t|-T|-V|reload
  asks the root helper on PATH (default ` + defaultHelperSocket + `) to run nginx -t,
  nginx -T, nginx -V, or nginx -t and then nginx -s reload; prints nginx's
  output and exits with its status
`

// nginxHelper is `deployd nginx`. Flags are parsed by hand: -t and -T are
// nginx's, not ours, and read as they would on nginx's command line.
func nginxHelper(args []string, stdout, stderr io.Writer) int {
	socket, request := defaultHelperSocket, ""
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--socket" || a == "-socket":
			if i+1 >= len(args) {
				fmt.Fprint(stderr, nginxHelperUsage)
				return 2
			}
			i++
			socket = args[i]
		case strings.HasPrefix(a, "--socket="):
			socket = strings.TrimPrefix(a, "--socket=")
		case helperRequests[a] && request == "":
			request = a
		default:
			fmt.Fprint(stderr, nginxHelperUsage)
			return 2
		}
	}
	if request == "" {
		fmt.Fprint(stderr, nginxHelperUsage)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), helperTimeout)
	defer cancel()
	code, err := askHelper(ctx, socket, request, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "deployd nginx: %v\n", err)
		return 1
	}
	return code
}

// askHelper sends request to the helper on socket, copies its output to
// out and returns the exit status it reports.
func askHelper(ctx context.Context, socket, request string, out io.Writer) (int, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return 0, fmt.Errorf("connect to the nginx helper (is deployd-nginx.socket running?): %w", err)
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(deadline); err != nil {
			return 0, fmt.Errorf("nginx helper: %w", err)
		}
	}
	if _, err := io.WriteString(conn, request+"\n"); err != nil {
		return 0, fmt.Errorf("send %s to the nginx helper: %w", request, err)
	}
	// The status is the last line; hold each line back until the next
	// one shows it was not.
	r := bufio.NewReader(conn)
	var last string
	for {
		line, err := r.ReadString('\n')
		if line != "" {
			if last != "" {
				if _, werr := io.WriteString(out, last); werr != nil {
					return 0, werr
				}
			}
			last = line
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("read the nginx helper's answer: %w", err)
		}
	}
	code, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(last, helperStatus)))
	if !strings.HasPrefix(last, helperStatus) || err != nil {
		if _, werr := io.WriteString(out, last); werr != nil {
			return 0, werr
		}
		return 0, errors.New("the nginx helper ended without a status line")
	}
	return code, nil
}
