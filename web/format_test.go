package web

import (
	"html"
	"strings"
	"testing"
	"time"

	"github.com/deployd/deployd/pkg/controller"
)

func TestRelTime_SaysHowLongAgoCoarsely(t *testing.T) {
	tests := []struct {
		ago  time.Duration
		want string
	}{
		{0, "just now"},
		{-time.Minute, "just now"}, // a clock a little ahead
		{44 * time.Second, "just now"},
		{50 * time.Second, "1 min ago"},
		{12 * time.Minute, "12 min ago"},
		{59 * time.Minute, "59 min ago"},
		{3*time.Hour + 20*time.Minute, "3 h ago"},
		{23*time.Hour + 59*time.Minute, "23 h ago"},
		{49 * time.Hour, "2 d ago"},
	}
	for _, tt := range tests {
		if got := relTime(testNow, testNow.Add(-tt.ago)); got != tt.want {
			t.Errorf("relTime(%v ago) = %q, want %q", tt.ago, got, tt.want)
		}
	}
}

func TestDuration_ReadsLikeAPerson(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0.0 s"},
		{350 * time.Millisecond, "0.3 s"},
		{1200 * time.Millisecond, "1.2 s"},
		{59 * time.Second, "59.0 s"},
		{3*time.Minute + 4*time.Second, "3 min 4 s"},
		{time.Hour + 2*time.Minute + 3*time.Second, "1 h 2 min"},
	}
	for _, tt := range tests {
		if got := duration(tt.d); got != tt.want {
			t.Errorf("duration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestUptime_CountsFromStart(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{42 * time.Second, "42 s"},
		{12 * time.Minute, "12 min"},
		{3*time.Hour + 4*time.Minute, "3 h 4 min"},
		{49 * time.Hour, "2 d 1 h"},
		{-time.Second, "0 s"},
	}
	for _, tt := range tests {
		if got := uptime(testNow, testNow.Add(-tt.d)); got != tt.want {
			t.Errorf("uptime(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestShortCommit_KeepsTwelveCharacters(t *testing.T) {
	tests := map[string]string{
		"":                     "",
		"abc":                  "abc",
		"0123456789abcdef0123": "0123456789ab",
		"ééééééééééééé":        "éééééééééééé",
	}
	for in, want := range tests {
		if got := shortCommit(in); got != want {
			t.Errorf("shortCommit(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCommitURL_LinksOnlyIntoHTTPRepositories(t *testing.T) {
	tests := []struct {
		repo, commit, want string
	}{
		{"https://github.com/acme/web", "abc123", "https://github.com/acme/web/commit/abc123"},
		{"https://github.com/acme/web/", "abc123", "https://github.com/acme/web/commit/abc123"},
		{"http://git.local/acme/web", "abc", "http://git.local/acme/web/commit/abc"},
		{"https://github.com/acme/web", "../../evil?x=1#y", "https://github.com/acme/web/commit/..%2F..%2Fevil%3Fx=1%23y"},
		{"https://github.com/acme/web", "", ""},
		{"", "abc", ""},
		{"javascript:alert(1)//", "abc", ""},
		{"JavaScript://github.com/%0aalert(1)", "abc", ""},
		{"data:text/html,x", "abc", ""},
		{"ftp://git.local/web", "abc", ""},
		{"//github.com/acme/web", "abc", ""},
		{"https:///nohost", "abc", ""},
		{"https://user:pw@github.com/acme/web", "abc", ""},
	}
	for _, tt := range tests {
		if got := commitURL(tt.repo, tt.commit); got != tt.want {
			t.Errorf("commitURL(%q, %q) = %q, want %q", tt.repo, tt.commit, got, tt.want)
		}
	}
}

func TestColorWords_AlwaysSayTheColor(t *testing.T) {
	tests := []struct {
		c                  controller.Color
		key, label, spoken string
	}{
		{controller.Blue, "blue", "BLUE", "Blue"},
		{controller.Green, "green", "GREEN", "Green"},
		{controller.NoColor, "none", "NONE", "None"},
		{controller.Color("red"), "none", "NONE", "None"},
	}
	for _, tt := range tests {
		if got := colorKey(tt.c); got != tt.key {
			t.Errorf("colorKey(%q) = %q, want %q", tt.c, got, tt.key)
		}
		if got := colorLabel(tt.c); got != tt.label {
			t.Errorf("colorLabel(%q) = %q, want %q", tt.c, got, tt.label)
		}
		if got := colorName(tt.c); got != tt.spoken {
			t.Errorf("colorName(%q) = %q, want %q", tt.c, got, tt.spoken)
		}
	}
}

func TestCompareURL_OnlySafeRepositoriesAndTwoDifferentCommits(t *testing.T) {
	tests := []struct{ repo, base, head, want string }{
		{"https://github.com/acme/web/", "aaa", "bbb", "https://github.com/acme/web/compare/aaa...bbb"},
		{"https://github.com/acme/web", "a/../b", "c", "https://github.com/acme/web/compare/a%2F..%2Fb...c"},
		{"https://github.com/acme/web", "aaa", "aaa", ""},
		{"https://github.com/acme/web", "", "bbb", ""},
		{"javascript:alert(1)//", "aaa", "bbb", ""},
		{"https://user:pw@github.com/acme/web", "aaa", "bbb", ""},
		{"", "aaa", "bbb", ""},
	}
	for _, tt := range tests {
		if got := compareURL(tt.repo, tt.base, tt.head); got != tt.want {
			t.Errorf("compareURL(%q, %q, %q) = %q, want %q", tt.repo, tt.base, tt.head, got, tt.want)
		}
	}
}

func TestImageRef_BreaksOnlyAfterSeparatorsAndEscapes(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"app", "app"},
		{"app:v2", "app:<wbr>v2"},
		{"pagecheck-app:v2", "pagecheck-<wbr>app:<wbr>v2"},
		{"registry.example.com:5000/team/web-api:1.2.3", "registry.example.com:<wbr>5000/<wbr>team/<wbr>web-<wbr>api:<wbr>1.2.3"},
		{"app@sha256:abc", "app@sha256:<wbr>abc"},
		{`<script>alert("x")</script>:v1`, "&lt;script&gt;alert(&#34;x&#34;)&lt;/<wbr>script&gt;:<wbr>v1"},
		{"a&b'c", "a&amp;b&#39;c"},
		{"naïve-ü:v1", "naïve-<wbr>ü:<wbr>v1"},
	}
	for _, tt := range tests {
		if got := string(imageRef(tt.in)); got != tt.want {
			t.Errorf("imageRef(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzImageRef: whatever the reference, the HTML holds no markup but
// <wbr>, and reads back as the reference.
func FuzzImageRef(f *testing.F) {
	for _, s := range []string{"app:v2", "registry:5000/a/b-c:d", "<b>&amp;", "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		out := strings.ReplaceAll(string(imageRef(ref)), "<wbr>", "")
		if strings.ContainsAny(out, "<>\"'") {
			t.Fatalf("imageRef(%q) leaves markup: %q", ref, out)
		}
		// html/template's escaper turns NUL into U+FFFD, as browsers would.
		want := strings.ReplaceAll(string([]rune(ref)), "\x00", "\uFFFD")
		if got := html.UnescapeString(out); got != want {
			t.Fatalf("imageRef(%q) reads back as %q", ref, got)
		}
	})
}

func TestClockExact_SecondsInUTCWithTheDateWhenNotToday(t *testing.T) {
	now := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		t    time.Time
		want string
	}{
		{time.Date(2025, 5, 1, 11, 48, 7, 0, time.UTC), "11:48:07 UTC"},
		{time.Date(2025, 5, 1, 13, 48, 7, 0, time.FixedZone("CEST", 2*3600)), "11:48:07 UTC"},
		{time.Date(2025, 4, 30, 23, 59, 59, 0, time.UTC), "Apr 30 23:59:59 UTC"},
	}
	for _, tt := range tests {
		if got := clockExact(now, tt.t); got != tt.want {
			t.Errorf("clockExact(%v) = %q, want %q", tt.t, got, tt.want)
		}
	}
}
