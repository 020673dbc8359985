package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/deployd/deployd/pkg/controller"
)

// The status page as an on-call engineer meets it at night: on a phone,
// in dark mode, with a screen reader. These tests drive it the way the
// issue that asked for it did.

// minContrast is WCAG 2's AA level for normal text.
const minContrast = 4.5

// emulate sets what the page's media queries and clocks see.
func (b *browser) emulate(scheme, timezone string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, pageTimeout)
	defer cancel()
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
	}); err != nil {
		b.t.Fatalf("emulate prefers-color-scheme %s: %v", scheme, err)
	}
	if timezone != "" {
		if _, err := chromedp.Call(ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: timezone}); err != nil {
			b.t.Fatalf("emulate timezone %s: %v", timezone, err)
		}
	}
}

// inViewport is a JavaScript expression: "" when the element at sel is
// drawn whole inside the window's width and not clipped by a scrolling
// box, else what is wrong.
func inViewport(sel string) string {
	return fmt.Sprintf(`(() => { const el = document.querySelector(%s);
		if (!el) return 'missing';
		const r = el.getBoundingClientRect();
		if (r.width === 0 || r.height === 0) return 'not drawn';
		if (r.left < 0 || r.right > window.innerWidth) return 'spans ' + r.left + '..' + r.right + ' px of ' + window.innerWidth;
		for (let p = el.parentElement; p; p = p.parentElement) {
			if (getComputedStyle(p).overflowX === 'visible') continue;
			const pr = p.getBoundingClientRect();
			if (r.left < pr.left - 0.5 || r.right > pr.right + 0.5) return 'clipped by ' + p.tagName.toLowerCase() + '.' + p.className;
		}
		return ''; })()`, jsString(sel))
}

// imageLinesJS defines lines(el): the text of el line by line as drawn,
// found by the client rectangle of each character.
const imageLinesJS = `const lines = (el) => {
	const out = []; let top = null, cur = '';
	const walk = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
	const range = document.createRange();
	for (let n = walk.nextNode(); n; n = walk.nextNode()) {
		for (let i = 0; i < n.data.length; i++) {
			range.setStart(n, i); range.setEnd(n, i + 1);
			const rects = range.getClientRects();
			if (!rects.length) continue;
			const t = Math.round(rects[0].top);
			if (top !== null && Math.abs(t - top) > 2) { out.push(cur); cur = ''; }
			top = t; cur += n.data[i];
		}
	}
	if (cur) out.push(cur);
	return out;
};`

// badImageBreaks lists every drawn image name on the page whose lines
// end elsewhere than after / : or -.
func (b *browser) badImageBreaks() []string {
	b.t.Helper()
	return eval[[]string](b, `(() => { `+imageLinesJS+`
		const bad = [];
		document.querySelectorAll('.image-name').forEach((el) => {
			const ls = lines(el);
			for (let i = 0; i < ls.length - 1; i++) {
				if (!/[\/:\-]$/.test(ls[i])) bad.push(JSON.stringify(ls));
			}
		});
		return bad; })()`)
}

var (
	exactUTC  = regexp.MustCompile(`^ · ([A-Z][a-z]{2} \d{1,2} )?\d{2}:\d{2}:\d{2} UTC \(([A-Z][a-z]{2} \d{1,2} )?\d{2}:\d{2} local\)$`)
	flashTime = regexp.MustCompile(`^\d{2}:\d{2}:\d{2}$`)
)

// On a phone the history and the audit trail are stacked cards: every
// cell on its own line under its column's name, nothing hidden to the
// right. Image names wrap only after / : and -, relative times carry
// their exact UTC and local time as text, and the per-row buttons have
// names that say which row they act on.
func TestBrowser_PhoneShowsHistoryAsCardsWithExactTimesAndNamedButtons(t *testing.T) {
	t.Parallel()
	e, d := greenOverWarmBlue(t, false)
	sv := d.service()
	b := newBrowser(t)
	// India is 5:30 from UTC, so local and UTC clocks never agree.
	b.emulate("light", "Asia/Kolkata")
	b.login(d, e.token)
	b.do("resize to phone", chromedp.EmulateViewport(phone.width, phone.height))

	row := `#history tr.deployment`
	if n := b.count(row); n < 2 {
		t.Fatalf("history rows = %d, want at least 2", n)
	}
	for _, sel := range []string{"td.actor", "td.when time", "td.when .exact-time", "a.details", "button.redeploy"} {
		if problem := eval[string](b, inViewport(row+" "+sel)); problem != "" {
			t.Errorf("history %s at phone width: %s", sel, problem)
		}
	}
	for _, sel := range []string{"td.audit-actor", "td.when time", "td.audit-result", "td.audit-address"} {
		if problem := eval[string](b, inViewport("#audit tr.audit-entry "+sel)); problem != "" {
			t.Errorf("audit %s at phone width: %s", sel, problem)
		}
	}
	if w, iw := eval[int](b, "document.scrollingElement.scrollWidth"), eval[int](b, "window.innerWidth"); w > iw {
		t.Errorf("page scroll width %d > window %d at phone width", w, iw)
	}
	for _, box := range []string{"#history-section .table-wrap", ".audit-section .table-wrap"} {
		if wide := eval[bool](b, fmt.Sprintf(`(() => { const el = document.querySelector(%s); return el.scrollWidth > el.clientWidth; })()`, jsString(box))); wide {
			t.Errorf("%s scrolls sideways at phone width", box)
		}
	}
	// Each cell says which column it is.
	if got := eval[string](b, `getComputedStyle(document.querySelector('#history tr.deployment td.actor'), '::before').content`); got != `"Actor"` {
		t.Errorf("actor cell's label = %s, want \"Actor\"", got)
	}
	if got := eval[string](b, `getComputedStyle(document.querySelector('#history tr.deployment td.when'), '::before').content`); got != `"When"` {
		t.Errorf("when cell's label = %s, want \"When\"", got)
	}

	// Image names: every one on the page wraps only after / : -, and one
	// squeezed to ten characters proves it wraps there rather than not at
	// all.
	if bad := b.badImageBreaks(); len(bad) > 0 {
		t.Errorf("image names broken elsewhere than after / : -: %v", bad)
	}
	squeezed := eval[[]string](b, fmt.Sprintf(`(() => { `+imageLinesJS+`
		const el = document.querySelector(%s);
		el.style.display = 'inline-block'; el.style.width = '10ch';
		const ls = lines(el);
		el.style.display = ''; el.style.width = '';
		return ls; })()`, jsString(card(e.svc, ".active-image"))))
	if len(squeezed) < 2 {
		t.Errorf("active image at 10ch = %q, want it wrapped", squeezed)
	}
	for i, l := range squeezed[:max(len(squeezed)-1, 0)] {
		if !strings.ContainsAny(l[len(l)-1:], "/:-") {
			t.Errorf("active image at 10ch: line %d %q ends mid-word (lines %q)", i, l, squeezed)
		}
	}
	if got := strings.Join(squeezed, ""); got != sv.ActiveImage {
		t.Errorf("active image reads %q, want %q", got, sv.ActiveImage)
	}

	// Exact times: UTC from the server, local from the script, and both
	// name the same instant as the relative time's datetime.
	type when struct {
		Datetime, Exact, LocalHM, UTCHMS string
	}
	whens := eval[[]when](b, `Array.from(document.querySelectorAll('time.reltime')).map((t) => {
		const d = new Date(t.getAttribute('datetime')); const p = (n) => String(n).padStart(2, '0');
		const ex = t.nextElementSibling && t.nextElementSibling.classList.contains('exact-time') ? t.nextElementSibling.textContent : '';
		return {Datetime: t.getAttribute('datetime'), Exact: ex,
			LocalHM: p(d.getHours()) + ':' + p(d.getMinutes()),
			UTCHMS: p(d.getUTCHours()) + ':' + p(d.getUTCMinutes()) + ':' + p(d.getUTCSeconds())}; })`)
	if len(whens) < 4 {
		t.Fatalf("relative times on the page = %d, want the card's, the history's and the audit's", len(whens))
	}
	for _, w := range whens {
		if !exactUTC.MatchString(w.Exact) || !strings.Contains(w.Exact, w.UTCHMS+" UTC") || !strings.Contains(w.Exact, w.LocalHM+" local)") {
			t.Errorf("time %s shows %q, want \" · %s UTC (%s local)\"", w.Datetime, w.Exact, w.UTCHMS, w.LocalHM)
		}
	}

	// Buttons and links repeated per row say which row: distinct, and
	// naming the service and the image.
	type named struct{ Label, Service, Image string }
	labels := eval[[]named](b, `Array.from(document.querySelectorAll('#history tr.deployment a.details, #history tr.deployment button.redeploy, .service button.rollback, .service a.details'))
		.map((el) => { const tr = el.closest('tr');
			return {Label: el.getAttribute('aria-label') || '',
				Service: tr ? tr.dataset.service : el.closest('section.service').dataset.service,
				Image: tr ? tr.querySelector('td.image').textContent.trim() : (el.classList.contains('rollback') ? document.querySelector('#service-' + el.closest('section.service').dataset.service + ' .standby-image').textContent.trim() : '')}; })`)
	seen := map[string]bool{}
	for _, l := range labels {
		if l.Label == "" || !strings.Contains(l.Label, l.Service) || !strings.Contains(l.Label, l.Image) {
			t.Errorf("accessible name %q, want it to name service %q and image %q", l.Label, l.Service, l.Image)
		}
		if seen[l.Label] {
			t.Errorf("accessible name %q appears twice", l.Label)
		}
		seen[l.Label] = true
	}
	if len(labels) < 5 {
		t.Errorf("named row controls = %d, want 2 details, 2 redeploys and the rollback", len(labels))
	}
	if got, want := eval[string](b, fmt.Sprintf(`document.querySelector(%s).getAttribute('aria-label')`, jsString(card(e.svc, "button.rollback")))),
		"Roll back "+e.svc+" to BLUE: "+sv.StandbyImage+" @"+v1Commit[:12]; got != want {
		t.Errorf("rollback's accessible name = %q, want %q", got, want)
	}

	b.do("scroll to the history", chromedp.Evaluate[chromedp.Void](`document.getElementById('history-section').scrollIntoView()`))
	b.screenshot("history-cards")

	// The details page: the image wraps at its separators and the start
	// time is there in full.
	b.click("open details", row+" a.details")
	b.do("wait for the details", chromedp.WaitVisible(chromedp.CSS(".deployment-page")))
	b.do("resize to phone", chromedp.EmulateViewport(phone.width, phone.height))
	if bad := b.badImageBreaks(); len(bad) > 0 {
		t.Errorf("details page: image names broken elsewhere than after / : -: %v", bad)
	}
	if got := b.text(".deployment-page .facts .exact-time"); !exactUTC.MatchString(" " + got) {
		t.Errorf("details page exact time = %q, want \"· hh:mm:ss UTC (hh:mm local)\"", got)
	}
	b.phoneFits("the details page")
}

// Dark and light, every kind of text the page shows reaches 4.5:1
// against what is behind it.
func TestBrowser_TextContrastReachesAAInLightAndDark(t *testing.T) {
	t.Parallel()
	e, d := greenOverWarmBlue(t, false)
	b := newBrowser(t)
	b.login(d, e.token)
	b.waitTrue("active GREEN", colorIs(card(e.svc, ".active-color"), "green"), pageTimeout)
	// The flash's two looks, as the script builds them (a real message
	// needs a real failure; the colors are what is measured here).
	eval[bool](b, `(() => { const f = document.getElementById('flash');
		for (const k of ['ok', 'error']) { const m = document.createElement('span'); m.className = 'flash-msg ' + k;
			m.innerHTML = '<time class="flash-time">12:00:00</time> <span class="flash-text">measured ' + k + '</span>'; f.append(m); }
		return true; })()`)

	categories := map[string]string{
		"BLUE badge":       `.badge[data-color="blue"]`,
		"GREEN badge":      `.badge[data-color="green"]`,
		"danger button":    `button.rollback.danger`,
		"buttons":          `button.redeploy, button.link-button`,
		"muted text":       `.active-word, .facts dt, .exact-time, th, .missing, .claimed`,
		"links":            `a`,
		"flash messages":   `.flash-msg.ok, .flash-msg.error`,
		"status words":     `.status, .standby-state, .audit-result, .c-state, .c-health, .color-role`,
		"ordinary text":    `.state-sentence, td.actor, .facts dd`,
		"brand and topbar": `.brand, .who`,
	}
	type measured struct {
		Text  string
		Ratio float64
	}
	for _, scheme := range []string{"light", "dark"} {
		b.emulate(scheme, "")
		if got, want := eval[bool](b, `matchMedia('(prefers-color-scheme: dark)').matches`), scheme == "dark"; got != want {
			t.Fatalf("%s: prefers-color-scheme dark matches = %v", scheme, got)
		}
		for name, sel := range categories {
			got := eval[[]measured](b, fmt.Sprintf(`(() => {
				const parse = (c) => { const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return null;
					const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
				const over = (top, under) => top[3] >= 1 ? top : [0, 1, 2].map((i) => top[i] * top[3] + under[i] * (1 - top[3])).concat([1]);
				const bg = (el) => { if (!el) return [255, 255, 255, 1];
					const c = parse(getComputedStyle(el).backgroundColor) || [0, 0, 0, 0];
					return c[3] >= 1 ? c : over(c, bg(el.parentElement)); };
				const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
					return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
				return Array.from(document.querySelectorAll(%s))
					.filter((el) => el.getClientRects().length > 0 && !el.closest('.visually-hidden, [disabled], dialog') && el.textContent.trim() !== '')
					.map((el) => { const b = bg(el); const fg = over(parse(getComputedStyle(el).color), b);
						const l1 = lum(fg), l2 = lum(b);
						return {Text: el.tagName.toLowerCase() + '.' + el.className + ' "' + el.textContent.trim().slice(0, 30) + '"',
							Ratio: (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05)}; }); })()`, jsString(sel)))
			if len(got) == 0 {
				t.Errorf("%s: no %s on the page (%s)", scheme, name, sel)
			}
			worst := measured{Ratio: 21}
			for _, m := range got {
				if m.Ratio < minContrast {
					t.Errorf("%s: %s %s contrast %.2f:1, want at least %.1f:1", scheme, name, m.Text, m.Ratio, minContrast)
				}
				if m.Ratio < worst.Ratio {
					worst = m
				}
			}
			t.Logf("%s: %-16s %2d measured, lowest %.2f:1 (%s)", scheme, name, len(got), worst.Ratio, worst.Text)
		}
	}
	b.emulate("dark", "")
	b.screenshot("dark")
}

// A deploy's progress is spoken politely as it goes; after confirming a
// rollback the focus is on its progress, not lost to the page; flash
// messages say when they were said, the one about the rollback leaves
// with the rollback, and an error stays until dismissed.
func TestBrowser_ProgressIsAnnouncedAndRollbackKeepsFocus(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "v1", "v2", "v2-slow")
	cfg := defaultSvc()
	// A drain long enough that the rollback is still running when the
	// page asks for its card.
	cfg.Drain = 2 * time.Second
	d := e.startDaemon("main", e.writeConfig("deployd.yml", cfg))
	d.mustSucceed("v1")
	d.mustSucceed("v2")
	b := newBrowser(t)
	b.login(d, e.token)

	slow := d.deploy("v2-slow")
	b.do("reload mid-deploy", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(card(e.svc, ".deployment-live .live-progress"))))
	region := card(e.svc, ".deployment-live .live-progress")
	if got := eval[string](b, fmt.Sprintf(`(() => { const r = document.querySelector(%s); return r.getAttribute('role') + ' ' + r.getAttribute('aria-live'); })()`, jsString(region))); got != "status polite" {
		t.Errorf("progress region role and aria-live = %q, want \"status polite\"", got)
	}
	eval[bool](b, `(() => { window.progressSaid = [];
		const note = () => document.querySelectorAll('.live-progress').forEach((r) => {
			if (window.progressSaid[window.progressSaid.length - 1] !== r.textContent) window.progressSaid.push(r.textContent); });
		note(); new MutationObserver(note).observe(document.body, {subtree: true, childList: true, characterData: true});
		return true; })()`)
	b.screenshot("progress")
	if dep := d.waitDeployment(slow.ID); dep.Status != controller.StatusSucceeded {
		t.Fatalf("deploy of v2-slow: %s (%s), want succeeded", dep.Status, dep.Error)
	}
	b.waitTrue("the region said the deploy succeeded", `window.progressSaid.some((s) => s.endsWith(': succeeded'))`, liveTimeout)
	said := eval[[]string](b, `window.progressSaid`)
	prefix := "deploy " + slow.Image + " of " + e.svc + ": "
	steps := 0
	for _, s := range said {
		if !strings.HasPrefix(s, prefix) {
			t.Errorf("progress said %q, want it to start with %q", s, prefix)
		}
		if strings.Contains(s, "health") || strings.Contains(s, "switch") || strings.Contains(s, "start") {
			steps++
		}
	}
	if len(said) < 3 || steps == 0 {
		t.Errorf("progress said %q, want it to change and name the steps", said)
	}

	// An error: the page's CSRF token spoiled, a redeploy is refused.
	eval[bool](b, `(() => { const m = document.querySelector('meta[name="csrf-token"]'); window.goodCSRF = m.content; m.content = 'spoiled'; return true; })()`)
	b.click("click Redeploy", `#history tr.deployment button.redeploy`)
	b.do("wait for the dialog", chromedp.WaitVisible(chromedp.CSS("#confirm-dialog")))
	b.do("confirm", chromedp.Click(chromedp.CSS("#confirm-yes")), chromedp.WaitVisible(chromedp.CSS("#flash .flash-msg.error")))
	if got := b.text("#flash .flash-msg.error .flash-time"); !flashTime.MatchString(got) {
		t.Errorf("error flash time = %q, want hh:mm:ss", got)
	}
	if got := b.text("#flash .flash-msg.error .flash-text"); !strings.Contains(got, "403") {
		t.Errorf("error flash = %q, want the refusal", got)
	}
	eval[bool](b, `(() => { document.querySelector('meta[name="csrf-token"]').content = window.goodCSRF; return true; })()`)

	rollback := card(e.svc, "button.rollback")
	b.waitTrue("rollback enabled", fmt.Sprintf(`!document.querySelector(%s).disabled`, jsString(rollback)), liveTimeout)
	b.click("click Rollback", rollback)
	b.do("wait for the dialog", chromedp.WaitVisible(chromedp.CSS("#confirm-dialog")))
	b.do("confirm", chromedp.Click(chromedp.CSS("#confirm-yes")), chromedp.WaitNotVisible(chromedp.CSS("#confirm-dialog")))
	b.waitTrue("the rollback's flash", `!!document.querySelector('#flash .flash-msg.ok[data-deployment]')`, pageTimeout)
	id := eval[string](b, `document.querySelector('#flash .flash-msg.ok[data-deployment]').dataset.deployment`)
	b.waitTrue("focus on the rollback's progress", fmt.Sprintf(`(() => { const a = document.activeElement;
		const live = a && a.closest('.deployment-live'); return !!live && live.dataset.deployment === %s; })()`, jsString(id)), pageTimeout)
	if got, want := b.text("#flash .flash-msg.ok .flash-text"), "Rollback of "+e.svc+" started ("+id+")."; got != want {
		t.Errorf("rollback flash = %q, want %q", got, want)
	}
	if got := b.text("#flash .flash-msg.ok .flash-time"); !flashTime.MatchString(got) {
		t.Errorf("rollback flash time = %q, want hh:mm:ss", got)
	}
	b.screenshot("rollback-progress-focused")

	if dep := d.waitDeployment(id); dep.Status != controller.StatusSucceeded {
		t.Fatalf("rollback %s: %s (%s), want succeeded", id, dep.Status, dep.Error)
	}
	b.waitTrue("the rollback's 'started' flash gone", fmt.Sprintf(`!document.querySelector('#flash .flash-msg[data-deployment=%s]')`, jsString(id)), liveTimeout)
	if n := b.count("#flash .flash-msg.error"); n != 1 {
		t.Fatalf("error flashes after the rollback = %d, want 1: an error stays until dismissed", n)
	}
	b.do("dismiss the error", chromedp.Click(chromedp.CSS("#flash .flash-msg.error .flash-close")))
	if n := b.count("#flash .flash-msg.error"); n != 0 {
		t.Errorf("error flashes after dismissing = %d, want 0", n)
	}
	b.screenshot("after-rollback-flash")
}
