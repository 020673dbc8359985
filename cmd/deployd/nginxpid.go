package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/deployd/deployd/internal/config"
	"github.com/deployd/deployd/pkg/nginxconf"
)

// pidAskTimeout bounds the nginx -T (and -V) run at startup and by check.
const pidAskTimeout = 30 * time.Second

// nginxPID is what startup and `deployd check` learn about nginx's pid
// file in exec mode: the configured path, the one nginx's config names, and
// why nginx could not be asked, if it could not.
type nginxPID struct {
	configured string
	fromNginx  string
	askErr     error
}

// askNginxPID runs nginx -T through the configured test command.
func askNginxPID(ctx context.Context, n config.Nginx) nginxPID {
	ctx, cancel := context.WithTimeout(ctx, pidAskTimeout)
	defer cancel()
	p := nginxPID{configured: n.PIDFile}
	p.fromNginx, p.askErr = nginxconf.ConfiguredPIDFile(ctx, n.TestCommand)
	return p
}

// resolve returns the pid file deploys will use. A configured path that
// differs from nginx's is an error: every reload would fail to confirm,
// and the first deploy would fail at its switch after starting its
// containers. With nothing configured, nginx's answer is required.
func (p nginxPID) resolve(cfg *config.Config) (path string, warning string, err error) {
	switch {
	case p.askErr != nil && p.configured == "":
		return "", "", cfg.FieldErrorf("nginx.pid_file", "not set, and nginx could not be asked for it: %w", p.askErr)
	case p.askErr != nil:
		return p.configured, fmt.Sprintf("nginx.pid_file: could not check %s against nginx's config: %v", p.configured, p.askErr), nil
	case p.configured == "":
		return p.fromNginx, "", nil
	case filepath.Clean(p.configured) != p.fromNginx:
		return "", "", cfg.FieldErrorf("nginx.pid_file",
			"is %s, but nginx's config writes its pid to %s (nginx -T): reloads could not be confirmed and every deploy would fail at its switch; set pid_file to %s or leave it out",
			p.configured, p.fromNginx, p.fromNginx)
	}
	return p.configured, "", nil
}
