package notify

import (
	"fmt"

	"github.com/sirupsen/logrus"
)

// redactingLogger routes retryablehttp's logging into logrus at debug,
// dropping the values that name the target URL ("url", "request") and the
// URL inside errors: a Slack webhook's URL is its secret.
type redactingLogger struct {
	log logrus.FieldLogger
}

func (l redactingLogger) Error(msg string, kv ...interface{}) { l.with(kv).Debug(msg) }
func (l redactingLogger) Warn(msg string, kv ...interface{})  { l.with(kv).Debug(msg) }
func (l redactingLogger) Info(msg string, kv ...interface{})  { l.with(kv).Debug(msg) }
func (l redactingLogger) Debug(msg string, kv ...interface{}) { l.with(kv).Debug(msg) }

func (l redactingLogger) with(kv []interface{}) logrus.FieldLogger {
	fields := logrus.Fields{}
	for i := 0; i+1 < len(kv); i += 2 {
		key, ok := kv[i].(string)
		if !ok {
			key = fmt.Sprintf("arg%d", i)
		}
		switch key {
		case "url", "request":
			continue
		}
		val := kv[i+1]
		if err, ok := val.(error); ok {
			val = stripURL(err).Error()
		}
		fields[key] = val
	}
	return l.log.WithFields(fields)
}
