package health

import (
	"fmt"

	"github.com/sirupsen/logrus"
)

// leveledLogger routes retryablehttp's logging into logrus. Everything goes
// to debug: a failing probe is expected while a replica starts, and the
// controller reports the outcome that matters from Probe's error.
type leveledLogger struct {
	log logrus.FieldLogger
}

func (l leveledLogger) Error(msg string, kv ...interface{}) { l.with(kv).Debug(msg) }
func (l leveledLogger) Warn(msg string, kv ...interface{})  { l.with(kv).Debug(msg) }
func (l leveledLogger) Info(msg string, kv ...interface{})  { l.with(kv).Debug(msg) }
func (l leveledLogger) Debug(msg string, kv ...interface{}) { l.with(kv).Debug(msg) }

// with turns retryablehttp's alternating key/value pairs into fields; a
// key that is not a string is logged under its position.
func (l leveledLogger) with(kv []interface{}) logrus.FieldLogger {
	if len(kv) == 0 {
		return l.log
	}
	fields := make(logrus.Fields, (len(kv)+1)/2)
	for i := 0; i < len(kv); i += 2 {
		key, ok := kv[i].(string)
		if !ok {
			key = fmt.Sprintf("arg%d", i)
		}
		if i+1 < len(kv) {
			fields[key] = kv[i+1]
		} else {
			fields[key] = nil
		}
	}
	return l.log.WithFields(fields)
}
