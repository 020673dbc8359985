package config

import (
	"maps"
	"strings"

	"github.com/deployd/deployd/pkg/controller"
)

// ServiceSpecs returns the services as the controller wants them, sorted by
// name. The specs share nothing with c.
func (c *Config) ServiceSpecs() []controller.ServiceSpec {
	specs := make([]controller.ServiceSpec, 0, len(c.Services))
	for _, name := range c.serviceNames() {
		s := c.Services[name]
		env := maps.Clone(s.Env)
		specs = append(specs, controller.ServiceSpec{
			Name:          name,
			Image:         s.Image,
			Replicas:      s.Replicas,
			Port:          s.Port,
			Env:           env,
			EnvFile:       s.EnvFile,
			Network:       s.Network,
			RestartPolicy: s.Restart,
			Pull:          controller.PullPolicy(s.Pull),
			Health: controller.HealthSpec{
				Path:             s.Health.Path,
				Interval:         s.Health.Interval,
				Timeout:          s.Health.Timeout,
				HealthyThreshold: s.Health.HealthyThreshold,
				StartTimeout:     s.Health.StartTimeout,
				ExpectStatus:     s.Health.ExpectStatus,
				ExpectBody:       s.Health.ExpectBody,
			},
			PreDeploy: controller.PreDeploySpec{
				Command: append([]string(nil), s.PreDeploy.Command...),
				Timeout: s.PreDeploy.Timeout,
			},
			Backup:              s.Backup.spec(),
			Drain:               s.Drain,
			Standby:             controller.StandbyMode(s.Standby),
			StandbyDuringDeploy: controller.DeployStandbyMode(s.StandbyDuringDeploy),
			AllowedRefs:         append([]string(nil), s.AllowedRefs...),
			RepositoryURL:       strings.TrimRight(s.RepositoryURL, "/"),
			Bake:                s.Bake,
			BakeTraffic:         controller.TrafficRule{MaxErrorRate: float64(s.BakeMaxErrorRate), MinRequests: s.BakeMinRequests},
			AutoRollback:        s.AutoRollback,
			AllowedTags:         s.AllowedTags,
			Limits:              s.containerLimits(),
			Runtime:             controller.RuntimeKind(s.Runtime),
			Placement:           s.placement(),
			Schema: controller.SchemaSpec{
				Command:    append([]string(nil), s.Schema.Command...),
				Timeout:    s.Schema.Timeout,
				Compatible: s.Schema.Compatible,
			},
		})
	}
	return specs
}

// WatchSpec is the watchdog's and bake's configuration for the controller.
func (c *Config) WatchSpec() controller.WatchSpec {
	return controller.WatchSpec{
		UnhealthyThreshold: c.Watch.UnhealthyThreshold,
		Interval:           c.Watch.Interval,
		Traffic:            controller.TrafficRule{MaxErrorRate: float64(c.Watch.MaxErrorRate), MinRequests: c.Watch.MinRequests},
	}
}

// TrafficRules returns the field paths of the traffic rules that are set
// (watch.max_error_rate, services.<name>.bake_max_error_rate). They need
// per-color request counts, which only the traffic switch keeps; the
// daemon warns about them when there is none.
func (c *Config) TrafficRules() []string {
	var keys []string
	if c.Watch.MaxErrorRate != 0 {
		keys = append(keys, "watch.max_error_rate")
	}
	for _, name := range c.serviceNames() {
		if c.Services[name].BakeMaxErrorRate != 0 {
			keys = append(keys, joinKey(joinKey("services", name), "bake_max_error_rate"))
		}
	}
	return keys
}

// RetentionSpec is the retention configuration for the controller.
func (c *Config) RetentionSpec() controller.RetentionSpec {
	return controller.RetentionSpec{Images: c.Retention.Images,
		AuditMaxAge: c.Audit.Retention.MaxAge, AuditMaxEntries: c.Audit.Retention.MaxEntries}
}

// PauseLimits bounds every pause, for the controller.
func (c *Config) PauseLimits() controller.PauseLimits {
	return controller.PauseLimits{MaxHold: c.Traffic.Pause.MaxHold, MaxHeld: c.Traffic.Pause.MaxHeld}
}

// spec is the backup for the controller; nil when there is none.
func (b *Backup) spec() *controller.BackupSpec {
	if b == nil {
		return nil
	}
	return &controller.BackupSpec{
		Image:   b.Image,
		Command: append([]string(nil), b.Command...),
		Env:     maps.Clone(b.Env),
		EnvFile: b.EnvFile,
		Volume:  b.Volume,
		Keep:    b.Keep,
		Timeout: b.Timeout,
	}
}
