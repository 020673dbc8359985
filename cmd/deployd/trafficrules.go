package main

import (
	"github.com/sirupsen/logrus"

	"github.com/deployd/deployd/internal/config"
	"github.com/deployd/deployd/pkg/controller"
)

// warnTrafficRulesOff warns about each traffic rule the configuration sets
// when nothing counts requests per color (traffic is nil): nginx reloads
// never see a request, so the controller leaves the rules off. It is a
// warning rather than an error so that one file serves both router modes.
func warnTrafficRulesOff(log logrus.FieldLogger, cfg *config.Config, traffic controller.TrafficReader) {
	if traffic != nil {
		return
	}
	for _, key := range cfg.TrafficRules() {
		log.WithField("key", key).Warnf("%s is set, but only traffic.mode: switch counts requests per color: the rule is off", key)
	}
}
