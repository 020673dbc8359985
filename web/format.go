package web

import (
	"fmt"
	"html/template"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

// relTime says how long ago t was, coarsely, as on the page: "just now",
// "12 min ago", "3 h ago", "2 d ago". app.js computes the same text when it
// refreshes the clocks.
func relTime(now, t time.Time) string {
	d := now.Sub(t)
	if d < 45*time.Second {
		return "just now"
	}
	m := int(math.Round(d.Minutes()))
	if m < 60 {
		return fmt.Sprintf("%d min ago", m)
	}
	h := m / 60
	if h < 24 {
		return fmt.Sprintf("%d h ago", h)
	}
	return fmt.Sprintf("%d d ago", h/24)
}

// uptime is how long a container has run: "42 s", "12 min", "3 h 4 min",
// "2 d 1 h".
func uptime(now, since time.Time) string {
	s := int(now.Sub(since) / time.Second)
	if s < 0 {
		s = 0
	}
	switch m := s / 60; {
	case s < 60:
		return fmt.Sprintf("%d s", s)
	case m < 60:
		return fmt.Sprintf("%d min", m)
	case m < 24*60:
		return fmt.Sprintf("%d h %d min", m/60, m%60)
	default:
		h := m / 60
		return fmt.Sprintf("%d d %d h", h/24, h%24)
	}
}

// duration formats how long something took: "1.2 s", "3 min 4 s",
// "1 h 2 min".
func duration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	if d < time.Minute {
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	s := int(d / time.Second)
	m := s / 60
	if m < 60 {
		return fmt.Sprintf("%d min %d s", m, s%60)
	}
	return fmt.Sprintf("%d h %d min", m/60, m%60)
}

// shortCommit is the first 12 characters of a commit, enough to be unique
// in any real repository and short enough for a phone.
func shortCommit(c string) string {
	r := []rune(c)
	if len(r) > 12 {
		return string(r[:12])
	}
	return c
}

// commitURL links commit into the repository's web UI, or returns "" when
// there is nothing safe to link to: the repository URL must be absolute
// http(s) with a host, and the commit is path-escaped so it stays one path
// segment whatever it holds.
func commitURL(repo, commit string) string {
	if commit == "" || !safeRepo(repo) {
		return ""
	}
	return strings.TrimRight(repo, "/") + "/commit/" + url.PathEscape(commit)
}

// compareURL links the changes from base to head in the repository's web
// UI (GitHub's and GitLab's /compare/base...head), under commitURL's rules;
// "" when either commit is missing or they are the same.
func compareURL(repo, base, head string) string {
	if base == "" || head == "" || base == head || !safeRepo(repo) {
		return ""
	}
	return strings.TrimRight(repo, "/") + "/compare/" + url.PathEscape(base) + "..." + url.PathEscape(head)
}

func safeRepo(repo string) bool {
	if repo == "" {
		return false
	}
	u, err := url.Parse(repo)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.User == nil
}

// colorKey is a color as a CSS/data attribute value: "blue", "green" or
// "none".
func colorKey(c controller.Color) string {
	if c.Valid() {
		return string(c)
	}
	return "none"
}

// colorLabel is a color as the badges spell it: "BLUE", "GREEN", "NONE".
func colorLabel(c controller.Color) string { return strings.ToUpper(colorKey(c)) }

// colorName is a color at the start of a sentence: "Blue", "Green".
func colorName(c controller.Color) string {
	k := colorKey(c)
	return strings.ToUpper(k[:1]) + k[1:]
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// exact is the tooltip of a relative time.
func exact(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 MST") }

// clockUTC is the time of day of t in UTC, "17:36 UTC", for the pause
// banner; the element's title carries the full time.
func clockUTC(t time.Time) string { return t.UTC().Format("15:04 UTC") }

// clockExact is t's UTC time to the second, "17:36:02 UTC", with its date
// when t is not on now's UTC day: the visible twin of a relative time,
// which a phone cannot show as a tooltip.
func clockExact(now, t time.Time) string {
	if now.UTC().Format(time.DateOnly) == t.UTC().Format(time.DateOnly) {
		return t.UTC().Format("15:04:05 UTC")
	}
	return t.UTC().Format("Jan 2 15:04:05 UTC")
}

// whenView is a relative time with its exact time beside it: what the
// "when" template renders.
type whenView struct {
	Now, T time.Time
	// Class is the <time> element's own class besides reltime.
	Class string
}

func newWhenView(now, t time.Time, class string) whenView {
	return whenView{Now: now, T: t, Class: class}
}

// imageBreaks are where an image reference may wrap: after its registry
// and path separators, its tag separator and its hyphens.
const imageBreaks = "/:-"

// imageRef is an image reference as HTML, escaped, with a <wbr> after
// every character of imageBreaks, so a narrow screen wraps
// "registry/team/app:v2" at those points; the image-name style forbids
// breaks anywhere else.
func imageRef(ref string) template.HTML {
	var b strings.Builder
	for _, r := range ref {
		b.WriteString(template.HTMLEscapeString(string(r)))
		if strings.ContainsRune(imageBreaks, r) {
			b.WriteString("<wbr>")
		}
	}
	return template.HTML(b.String())
}
