package e2e

import (
	"context"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/deployd/deployd/internal/testenv"
)

const (
	// screenshotDirEnv names the folder screenshots go to (CI keeps it);
	// without it they go to test/e2e/screenshots, which git ignores.
	screenshotDirEnv = "DEPLOYD_SCREENSHOT_DIR"

	browserStartTimeout = 30 * time.Second
	// pageTimeout bounds one browser action: a navigation, a click, a wait
	// for an element.
	pageTimeout = 15 * time.Second
)

// viewport is a window size the screenshots are taken at.
type viewport struct {
	name          string
	width, height int64
}

var (
	desktop = viewport{"desktop", 1280, 900}
	phone   = viewport{"phone", 360, 780}
)

// chromiumPath finds Debian's chromium, skipping the test when it is
// missing outside CI and failing it in CI.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	const debian = "/usr/bin/chromium"
	if _, err := os.Stat(debian); err == nil {
		return debian
	}
	msg := "chromium is not installed (Debian package chromium; scripts/ensure-deps.sh installs it)"
	if testenv.InCI() {
		t.Fatalf("%s (CI=true, so this is a failure, not a skip)", msg)
	}
	t.Skipf("%s; skipping (with CI=true this fails)", msg)
	return ""
}

// browser is one headless Chromium with a fresh profile and one tab,
// closed when the test ends.
type browser struct {
	t *testing.T
	// ctx is the tab. Its first Run started the browser without a
	// deadline, so that a per-action deadline derived from it ends only
	// that action, never the browser.
	ctx context.Context
	out *syncBuffer // chromium's output and chromedp's errors
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromiumPath(t)
	b := &browser{t: t, out: &syncBuffer{}}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.CombinedOutput(b.out),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithErrorf(func(format string, args ...any) {
		fmt.Fprintf(b.out, "chromedp: "+format+"\n", args...)
	}))
	t.Cleanup(func() {
		cancelTab()   // closes the browser and waits for it
		cancelAlloc() // kills it if it lingers and waits for the process
		if t.Failed() {
			t.Logf("chromium output:\n%s", b.out.String())
		}
	})
	// The start has no context deadline (see ctx), so a timer bounds it.
	watchdog := time.AfterFunc(browserStartTimeout, cancelAlloc)
	err := chromedp.Do(ctx)
	watchdog.Stop()
	if err != nil {
		t.Fatalf("start chromium %s: %v\n%s", path, err, b.out.String())
	}
	b.ctx = ctx
	return b
}

// do runs actions with a deadline and fails the test, naming what, when
// one fails.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, pageTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browser: %s: %v", what, err)
	}
}

// run runs one action that returns a value, with a deadline.
func run[T any](b *browser, what string, action chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, pageTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, action)
	if err != nil {
		b.t.Fatalf("browser: %s: %v", what, err)
	}
	return v
}

// eval evaluates a JavaScript expression in the page, awaiting it when it
// is a promise.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	return run(b, "evaluate "+expr, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// waitTrue waits until a JavaScript expression is truthy in the page. It
// polls in the browser, so it sees what the page's own script changed
// without any reload.
func (b *browser) waitTrue(what, expr string, timeout time.Duration) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout+time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		b.t.Fatalf("browser: waiting %s for %s (%s): %v", timeout, what, expr, err)
	}
}

// stampWhen makes the page note the time (its own clock, in ms since the
// epoch) at which a JavaScript expression first turns truthy, checked on
// every change of the DOM; stampedAt waits for that time and returns it.
// Install it before the action whose effect it times: it measures when the
// page showed the change, not when a poll from the test saw it, so the
// harness's own round trips to the browser do not count.
func (b *browser) stampWhen(name, expr string) {
	b.t.Helper()
	eval[bool](b, fmt.Sprintf(`(() => {
		const stamps = window.__stamps = window.__stamps || {};
		const key = %s;
		delete stamps[key];
		const check = () => { if (!(key in stamps) && (%s)) { stamps[key] = Date.now(); obs.disconnect(); } };
		const obs = new MutationObserver(check);
		obs.observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
		check();
		return true;
	})()`, jsString(name), expr))
}

func (b *browser) stampedAt(name string, timeout time.Duration) time.Time {
	b.t.Helper()
	key := fmt.Sprintf("window.__stamps?.[%s]", jsString(name))
	b.waitTrue(name, key+" > 0", timeout)
	return time.UnixMilli(eval[int64](b, key))
}

// text returns the visible text of the first element matching the CSS
// selector, trimmed, once the element is there. It finds and reads the
// element in one script run: the page swaps in fresh cards as events
// arrive, and a node found in one call may be gone by the next.
func (b *browser) text(sel string) string {
	b.t.Helper()
	b.waitTrue("element "+sel, fmt.Sprintf("!!document.querySelector(%s)", jsString(sel)), pageTimeout)
	return strings.TrimSpace(eval[string](b, fmt.Sprintf(`(() => { const el = document.querySelector(%s);
		return el ? el.innerText : ''; })()`, jsString(sel))))
}

// attr returns an attribute of the first element matching the CSS
// selector once it is there, read as text does, in one script run.
func (b *browser) attr(sel, name string) string {
	b.t.Helper()
	b.waitTrue("element "+sel, fmt.Sprintf("!!document.querySelector(%s)", jsString(sel)), pageTimeout)
	return eval[string](b, fmt.Sprintf(`(() => { const el = document.querySelector(%s);
		return el ? (el.getAttribute(%s) || '') : ''; })()`, jsString(sel), jsString(name)))
}

// click clicks the element matching the CSS selector as a user would. A
// card swapped in between finding the node and clicking it makes the
// click miss; it is tried again on the fresh node.
func (b *browser) click(what, sel string) {
	b.t.Helper()
	var err error
	for range 3 {
		ctx, cancel := context.WithTimeout(b.ctx, pageTimeout)
		err = chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel)))
		cancel()
		if err == nil || !strings.Contains(err.Error(), "node") {
			break
		}
	}
	if err != nil {
		b.t.Fatalf("browser: %s: %v", what, err)
	}
}

// count returns how many elements match the CSS selector now.
func (b *browser) count(sel string) int {
	b.t.Helper()
	return eval[int](b, fmt.Sprintf("document.querySelectorAll(%s).length", jsString(sel)))
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	return fmt.Sprintf("%q", s) // Go's quoting is valid JS for the ASCII selectors used here
}

// screenshot saves the page at desktop and phone width as
// <test>-<name>-<viewport>.png and returns the paths by viewport name. The
// window is left at desktop size.
func (b *browser) screenshot(name string) map[string]string {
	b.t.Helper()
	dir := screenshotDir(b.t)
	paths := map[string]string{}
	for _, v := range []viewport{phone, desktop} {
		b.do("resize to "+v.name, chromedp.EmulateViewport(v.width, v.height))
		png := run(b, "screenshot "+name+" at "+v.name, chromedp.CaptureScreenshot())
		path := filepath.Join(dir, fmt.Sprintf("%s-%s-%s.png", fileSafe(b.t.Name()), name, v.name))
		if err := os.WriteFile(path, png, 0o644); err != nil {
			b.t.Fatalf("save screenshot: %v", err)
		}
		b.t.Logf("screenshot %s (%s %dx%d): %s", name, v.name, v.width, v.height, path)
		paths[v.name] = path
	}
	return paths
}

func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(screenshotDirEnv)
	if dir == "" {
		dir = "screenshots" // go test runs in the package's folder: test/e2e/screenshots
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("screenshot folder: %v", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatalf("screenshot folder: %v", err)
	}
	return abs
}

var unsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

func fileSafe(s string) string { return unsafeFileChars.ReplaceAllString(s, "_") }

// pngSize decodes a PNG's dimensions.
func pngSize(t *testing.T, path string) (int, int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	if err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	return cfg.Width, cfg.Height
}
