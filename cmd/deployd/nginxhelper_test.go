package main

import (
	"bufio"
	"bytes"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// fakeHelper answers every connection on a fresh socket with answer,
// after reading the request line, which it sends on got.
func fakeHelper(t *testing.T, answer string) (string, <-chan string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "helper.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	got := make(chan string, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		line, _ := bufio.NewReader(conn).ReadString('\n')
		got <- line
		_, _ = conn.Write([]byte(answer))
	}()
	return sock, got
}

func TestNginxHelperClient(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		answer     string
		wantCode   int
		wantSent   string
		wantStdout string
		wantStderr string
	}{
		{"test passes", []string{"-t"}, "nginx: syntax is ok\nstatus=0\n", 0, "-t\n", "nginx: syntax is ok\n", ""},
		{"reload fails with nginx's status", []string{"reload"}, "nginx: [emerg] bad\nstatus=1\n", 1, "reload\n", "nginx: [emerg] bad\n", ""},
		{"dump is passed through whole", []string{"-T"}, "# configuration file /x:\npid /run/x.pid;\nstatus=0\n", 0, "-T\n", "pid /run/x.pid;\n", ""},
		{"no status line is a failure", []string{"-t"}, "half an answer\n", 1, "-t\n", "half an answer", "without a status line"},
		{"unknown request is refused before connecting", []string{"-s", "stop"}, "", 2, "", "", "usage: deployd nginx"},
		{"two requests are refused", []string{"-t", "reload"}, "", 2, "", "", "usage: deployd nginx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock, got := fakeHelper(t, tt.answer)
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"nginx", "--socket", sock}, tt.args...), &stdout, &stderr)
			if code != tt.wantCode {
				t.Fatalf("exit = %d, want %d; stderr %q", code, tt.wantCode, &stderr)
			}
			if tt.wantSent != "" {
				if sent := <-got; sent != tt.wantSent {
					t.Errorf("sent %q, want %q", sent, tt.wantSent)
				}
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) || strings.Contains(stdout.String(), "status=") {
				t.Errorf("stdout = %q, want it to contain %q and no status line", &stdout, tt.wantStdout)
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", &stderr, tt.wantStderr)
			}
		})
	}
}
