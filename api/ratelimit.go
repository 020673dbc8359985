package api

import "time"

const (
	// maxSignatureFailures failed signatures within failureWindow block an
	// address until the oldest of them is failureWindow old.
	maxSignatureFailures = 10
	failureWindow        = time.Minute
	// maxTrackedClients bounds the limiter's memory whatever the number of
	// addresses an attacker has.
	maxTrackedClients = 4096
)
