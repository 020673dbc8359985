package main

import (
	"fmt"
	"regexp"
	"time"
)

// Strategy names.
const (
	strategyDeployd       = "deployd"        // traffic.mode reload
	strategyDeploydSwitch = "deployd-switch" // traffic.mode switch
	// strategyDeploydSwarm is traffic.mode switch with the service on
	// runtime: swarm (see swarm.go).
	strategyDeploydSwarm = "deployd-swarm"
	strategyRecreate     = "recreate"
	strategyReload       = "reload"
	// strategyResilience is no way of switching: it kills, restarts and
	// upgrades deployd's processes under load (see resilience.go).
	strategyResilience = "resilience"
)

// Load names: every strategy runs under each load asked for.
const (
	loadMixed = "mixed" // 1 in PostEvery requests a POST
	loadPOST  = "post"  // every request a POST
)

// postEvery is the load's POST ratio (see loadConfig.PostEvery).
func (o options) postEvery(load string) int {
	if load == loadPOST {
		return 1
	}
	return o.PostEvery
}

// options is one benchmark run's configuration; it is written into the
// JSON result as is.
type options struct {
	K              int           `json:"k"`
	C              int           `json:"c"`
	Rate           int           `json:"rate"`
	PostEvery      int           `json:"post_every"`
	PerCycle       time.Duration `json:"duration_per_cycle_ns"`
	Name           string        `json:"name"`
	OutDir         string        `json:"-"`
	Strategies     []string      `json:"strategies"`
	Loads          []string      `json:"loads"`
	NginxWorkers   int           `json:"nginx_workers"`
	NginxHTTPExtra string        `json:"nginx_http_extra"`
	NginxMainExtra string        `json:"nginx_main_extra"`
	// ResilienceN is how many times the resilience strategy does each of
	// its events per load; 0 means max(K, 3).
	ResilienceN int `json:"resilience_n"`
	// Tail is how long the load keeps running after a phase's last switch.
	Tail time.Duration `json:"tail_ns"`
	// Settle is the least time after a switch before the next one.
	Settle time.Duration `json:"settle_ns"`
	// MaxRecords bounds the memory of one phase's results.
	MaxRecords int `json:"max_records"`
	// Service names deployd's service; the recreate strategy's container
	// is Service+"rc", the swarm strategy's service Service+"sm". Empty
	// means a random name.
	Service string `json:"-"`
	// TempDir is where the run's temp directory is made; empty means
	// os.TempDir(). (Unix socket paths under it must stay short.)
	TempDir string `json:"-"`
	// Race builds deployd with the race detector (slow; off by default).
	Race bool `json:"race"`
}

func defaultOptions() options {
	return options{
		K:            10,
		C:            16,
		PostEvery:    4,
		PerCycle:     fullCycle,
		Name:         "full",
		OutDir:       "bench/results",
		Strategies:   []string{strategyDeployd, strategyDeploydSwitch, strategyDeploydSwarm, strategyRecreate, strategyReload, strategyResilience},
		Loads:        []string{loadMixed, loadPOST},
		NginxWorkers: 2,
		Tail:         1500 * time.Millisecond,
		Settle:       time.Second,
		MaxRecords:   20_000_000,
	}
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func (o options) validate() error {
	switch {
	case o.K < 1:
		return fmt.Errorf("-k %d: want at least 1", o.K)
	case o.C < 1 || o.C > 1024:
		return fmt.Errorf("-c %d: want 1..1024", o.C)
	case o.Rate < 0:
		return fmt.Errorf("-rate %d: want 0 (max) or more", o.Rate)
	case o.PostEvery < 0:
		return fmt.Errorf("-post-every %d: want 0 or more", o.PostEvery)
	case !validName.MatchString(o.Name):
		return fmt.Errorf("-name %q: want letters, digits, dot, dash, underscore", o.Name)
	case o.ResilienceN < 0:
		return fmt.Errorf("-resilience-n %d: want 0 (max(k, 3)) or more", o.ResilienceN)
	case o.Settle < 0:
		return fmt.Errorf("-settle %s: want 0 or more", o.Settle)
	case o.NginxWorkers < 1:
		return fmt.Errorf("-nginx-workers %d: want at least 1", o.NginxWorkers)
	case len(o.Strategies) == 0:
		return fmt.Errorf("-strategies: name at least one")
	case len(o.Loads) == 0:
		return fmt.Errorf("-loads: name at least one")
	}
	for _, s := range o.Strategies {
		switch s {
		case strategyDeployd, strategyDeploydSwitch, strategyDeploydSwarm, strategyRecreate, strategyReload, strategyResilience:
		default:
			return fmt.Errorf("-strategies: unknown strategy %q (want deployd, deployd-switch, deployd-swarm, recreate, reload, resilience)", s)
		}
	}
	for _, l := range o.Loads {
		switch l {
		case loadMixed, loadPOST:
		default:
			return fmt.Errorf("-loads: unknown load %q (want mixed, post)", l)
		}
	}
	return nil
}

func (o options) has(strategy string) bool {
	for _, s := range o.Strategies {
		if s == strategy {
			return true
		}
	}
	return false
}

// resilienceN is how many times each resilience event runs per load.
func (o options) resilienceN() int {
	if o.ResilienceN > 0 {
		return o.ResilienceN
	}
	return max(o.K, 3)
}
