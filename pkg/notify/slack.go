package notify

import (
	"strings"

	"github.com/deployd/deployd/pkg/controller"
)

var kindPhrases = map[string]string{
	controller.NotifyDeployStarted:     "deploy started",
	controller.NotifyDeploySucceeded:   "deploy succeeded",
	controller.NotifyDeployFailed:      "deploy failed",
	controller.NotifyDeployInterrupted: "deploy interrupted",
	controller.NotifyRolledBack:        "rolled back",
	controller.NotifyServiceUnhealthy:  "unhealthy",
	controller.NotifyRepair:            "repaired",
}

// SlackText renders a notification as the one line a chat shows, e.g.
// "deployd: web deploy succeeded: demoapp:v2 on green by alice: switched".
func SlackText(n controller.Notification) string {
	phrase, ok := kindPhrases[n.Kind]
	if !ok {
		phrase = n.Kind
	}
	var b strings.Builder
	b.WriteString("deployd: ")
	b.WriteString(n.Service)
	b.WriteString(" ")
	b.WriteString(phrase)
	var details []string
	if n.Image != "" {
		d := n.Image
		if n.Color != "" {
			d += " on " + string(n.Color)
		}
		details = append(details, d)
	} else if n.Color != "" {
		details = append(details, string(n.Color))
	}
	if n.Actor != "" {
		details = append(details, "by "+n.Actor)
		if n.OnBehalfOf != "" {
			details = append(details, "(on behalf of "+n.OnBehalfOf+", claimed)")
		}
	}
	if len(details) > 0 {
		b.WriteString(": ")
		b.WriteString(strings.Join(details, " "))
	}
	if n.Message != "" {
		b.WriteString(": ")
		b.WriteString(n.Message)
	}
	return slackEscape(oneLine(b.String()))
}

// oneLine folds line breaks: a multi-line error would otherwise split the
// chat message.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// slackEscape escapes the three characters Slack's mrkdwn treats as markup,
// so a message cannot ping @channel or forge a link.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
