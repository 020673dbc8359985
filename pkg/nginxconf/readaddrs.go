package nginxconf

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ReadAddrs returns the addresses the service's upstream file in dir sends
// traffic to, sorted and without duplicates, for rebuilding state from what
// nginx serves. Servers marked down (the placeholder's only server) are
// not addresses; a placeholder file therefore has none. A missing file
// returns an error wrapping fs.ErrNotExist.
func ReadAddrs(dir, service string) ([]string, error) {
	if err := ValidateService(service); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(dir, service+".conf"))
	if err != nil {
		return nil, fmt.Errorf("read upstream of %s: %w", service, err)
	}
	return parseServers(data), nil
}

// parseServers reads the "server <address> [params];" lines of an upstream
// file. It is deliberately lenient: a hand-edited file still yields what
// nginx would use, and anything that is not a server line is ignored.
func parseServers(data []byte) []string {
	var addrs []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		line = strings.TrimSpace(line)
		line, ok := strings.CutSuffix(line, ";")
		if !ok {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] != "server" {
			continue
		}
		if slices.Contains(fields[2:], "down") || ValidateAddress(fields[1]) != nil {
			continue
		}
		addrs = append(addrs, fields[1])
	}
	slices.Sort(addrs)
	return slices.Compact(addrs)
}
