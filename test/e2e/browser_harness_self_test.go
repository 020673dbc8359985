package e2e

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/chromedp/chromedp"
)

// The harness itself, on a trivial local page: the browser starts with a
// fresh profile, types, clicks, waits for script changes, and shoots at
// both widths.
func TestBrowser_HarnessDrivesALocalPageAndShootsBothWidths(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><html><head><meta name="viewport" content="width=device-width"></head>
<body><input id="name"><button id="go">go</button><p id="out"></p>
<script>
document.getElementById('go').addEventListener('click', () => {
  setTimeout(() => { document.getElementById('out').textContent = 'hello ' + document.getElementById('name').value; }, 200);
});
</script></body></html>`))
	}))
	t.Cleanup(srv.Close)

	b := newBrowser(t)
	b.do("open the page", chromedp.Navigate(srv.URL), chromedp.WaitVisible(chromedp.CSS("#name")))
	b.do("type and click", chromedp.SendKeys(chromedp.CSS("#name"), "deployd"), chromedp.Click(chromedp.CSS("#go")))
	b.waitTrue("the script's answer", `document.getElementById('out').textContent === 'hello deployd'`, pageTimeout)
	if got := b.text("#out"); got != "hello deployd" {
		t.Errorf("text of #out = %q, want %q", got, "hello deployd")
	}
	if got := b.count("button, input"); got != 2 {
		t.Errorf("count of button, input = %d, want 2", got)
	}

	paths := b.screenshot("local")
	for _, v := range []viewport{desktop, phone} {
		w, h := pngSize(t, paths[v.name])
		if w != int(v.width) || h != int(v.height) {
			t.Errorf("%s screenshot = %dx%d, want %dx%d", v.name, w, h, v.width, v.height)
		}
	}
	if got := eval[int](b, "window.innerWidth"); got != int(desktop.width) {
		t.Errorf("width after the screenshots = %d, want %d (desktop)", got, desktop.width)
	}
}
