// Package e2e holds whole-daemon tests: they build the deployd binary, run
// it as a subprocess against the real Docker engine and a private nginx,
// and check what a user would see: HTTP answers through nginx, containers,
// the upstream file and the API's records. Every answer of a daemon's API
// is also checked against the OpenAPI document that daemon serves.
package e2e
