package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// versionMigrations are the migrations app version vN ships, in the shape
// of Django's names: app.0001_initial, then one per version, expand-only
// ("_add_") for even numbers and breaking ("_drop_") for odd ones. So v1 to
// v2 adds a column old code ignores, and v2 to v3 drops one old code reads.
// A version that is not vN ships only the first.
func versionMigrations(version string) []string {
	n, err := strconv.Atoi(strings.TrimPrefix(version, "v"))
	if err != nil || !strings.HasPrefix(version, "v") || n < 1 {
		n = 1
	}
	// Bounded: a version is a build arg, not a schema size.
	n = min(n, 9999)
	ms := []string{"app.0001_initial"}
	for k := 2; k <= n; k++ {
		kind := "add"
		if k%2 == 1 {
			kind = "drop"
		}
		ms = append(ms, fmt.Sprintf("app.%04d_%s_field%d", k, kind, k))
	}
	return ms
}

// showMigrations prints the version's migrations as `manage.py
// showmigrations --plan` does, all applied: the demo app has no database,
// so its schema is always the one its version ships.
func showMigrations(cfg config, stdout io.Writer) int {
	for _, m := range versionMigrations(cfg.Version) {
		fmt.Fprintf(stdout, "[X]  %s\n", m)
	}
	return 0
}
