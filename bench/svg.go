package main

import (
	"fmt"
	"html"
	"io"
	"math"
)

// Timeline picture geometry, in SVG user units.
const (
	svgWidth      = 1200
	svgLeft       = 70
	svgRight      = 20
	svgTop        = 56 // legend
	panelHeight   = 250
	rpsHeight     = 130
	failHeight    = 36
	bandHeight    = 16
	colorBlueHex  = "#2f6fde"
	colorGreenHex = "#23a559"
	colorFailHex  = "#d62728"
)

// renderSVG draws one panel per strategy: requests per second per 100 ms
// bucket (line, same scale in every panel), failures per bucket (red
// bars), the share of responses by color (blue/green band) and a marker
// at each switch.
func renderSVG(w io.Writer, res *result) {
	height := svgTop + panelHeight*len(res.Strategies) + 10
	plotW := float64(svgWidth - svgLeft - svgRight)
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n",
		svgWidth, height, svgWidth, height)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="#fff"/>`+"\n")
	o := res.Options
	fmt.Fprintf(w, `<text x="%d" y="18" font-size="14" font-weight="bold">%s</text>`+"\n", svgLeft,
		esc(fmt.Sprintf("Zero-downtime benchmark %q: K=%d, C=%d clients, %s, loads %s; %d CPUs, nginx %s",
			o.Name, o.K, o.C, rateText(o.Rate), loadsText(o), res.Machine.CPUs, res.Machine.NginxVersion)))
	// Legend.
	lx := svgLeft
	legend := []struct{ color, text string }{
		{"#333", "requests/s (100 ms buckets)"},
		{colorFailHex, "failed requests per 100 ms"},
		{colorBlueHex, "share served by blue"},
		{colorGreenHex, "share served by green"},
		{"#888", "switch or event (dashed; label: kind)"},
	}
	for _, l := range legend {
		fmt.Fprintf(w, `<rect x="%d" y="30" width="12" height="12" fill="%s"/><text x="%d" y="40">%s</text>`+"\n", lx, l.color, lx+16, esc(l.text))
		lx += 16 + 7*len(l.text) + 18
	}

	// Shared scales, so the panels compare at a glance.
	maxRPS, maxFail := 1.0, 1
	for _, s := range res.Strategies {
		for _, b := range s.Timeline {
			maxRPS = math.Max(maxRPS, float64(b.OK+b.Failed)*10)
			maxFail = max(maxFail, b.Failed)
		}
	}
	maxRPS = niceCeil(maxRPS)

	for i, s := range res.Strategies {
		y0 := float64(svgTop + i*panelHeight)
		dur := math.Max(s.DurationSec, 0.1)
		x := func(sec float64) float64 { return svgLeft + sec/dur*plotW }
		fmt.Fprintf(w, `<g id="panel-%s-%s">`+"\n", esc(s.Load), esc(s.Name))
		what := "switches"
		if isResilience(s.Name) {
			what = "events"
		}
		title := fmt.Sprintf("%s, %s load: %d requests, %.0f req/s, %d failed (GET %d, POST %d), %d %s",
			s.Name, s.Load, s.Requests, s.RPS, s.Failures.Total, s.Failures.sum(s.Failures.GET), s.Failures.sum(s.Failures.POST), len(s.Switches), what)
		fmt.Fprintf(w, `<text x="%d" y="%.0f" font-size="13" font-weight="bold">%s</text>`+"\n", svgLeft, y0+16, esc(title))

		rpsTop := y0 + 40
		rpsBot := rpsTop + rpsHeight
		failTop := rpsBot + 6
		failBot := failTop + failHeight
		bandTop := failBot + 6
		bandBot := bandTop + bandHeight
		// Frames and axes.
		fmt.Fprintf(w, `<rect x="%d" y="%.1f" width="%.1f" height="%d" fill="#fafafa" stroke="#ccc"/>`+"\n", svgLeft, rpsTop, plotW, rpsHeight)
		fmt.Fprintf(w, `<rect x="%d" y="%.1f" width="%.1f" height="%d" fill="#fff" stroke="#ccc"/>`+"\n", svgLeft, failTop, plotW, failHeight)
		for _, f := range []float64{0, 0.5, 1} {
			yy := rpsBot - f*rpsHeight
			fmt.Fprintf(w, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", svgLeft-6, yy+4, esc(humanInt(f*maxRPS)))
			if f > 0 {
				fmt.Fprintf(w, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#e4e4e4"/>`+"\n", svgLeft, svgLeft+plotW, yy, yy)
			}
		}
		fmt.Fprintf(w, `<text x="%d" y="%.1f" text-anchor="end" fill="%s">%d</text>`+"\n", svgLeft-6, failTop+10, colorFailHex, maxFail)
		fmt.Fprintf(w, `<text x="%d" y="%.1f" text-anchor="end" fill="%s">fail</text>`+"\n", svgLeft-6, failBot, colorFailHex)
		fmt.Fprintf(w, `<text x="%d" y="%.1f" text-anchor="end">color</text>`+"\n", svgLeft-6, bandBot-3)

		bw := bucket.Seconds() / dur * plotW
		// Color band and failures.
		for j, b := range s.Timeline {
			bx := x(float64(j) * bucket.Seconds())
			if n := b.Blue + b.Green; n > 0 {
				hb := float64(b.Blue) / float64(n) * bandHeight
				fmt.Fprintf(w, `<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="%s"/>`, bx, bandTop, bw+0.3, hb, colorBlueHex)
				fmt.Fprintf(w, `<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="%s"/>`+"\n", bx, bandTop+hb, bw+0.3, bandHeight-hb, colorGreenHex)
			} else if b.OK > 0 {
				fmt.Fprintf(w, `<rect x="%.2f" y="%.2f" width="%.2f" height="%d" fill="#bbb"/>`+"\n", bx, bandTop, bw+0.3, bandHeight)
			}
			if b.Failed > 0 {
				h := math.Max(2, float64(b.Failed)/float64(maxFail)*failHeight)
				fmt.Fprintf(w, `<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="%s"/>`+"\n", bx, failBot-h, math.Max(bw, 2), h, colorFailHex)
			}
		}
		// Requests per second.
		fmt.Fprintf(w, `<polyline fill="none" stroke="#333" stroke-width="1.2" points="`)
		for j, b := range s.Timeline {
			fmt.Fprintf(w, "%.1f,%.1f ", x((float64(j)+0.5)*bucket.Seconds()), rpsBot-float64(b.OK+b.Failed)*10/maxRPS*rpsHeight)
		}
		fmt.Fprintf(w, `"/>`+"\n")
		// Switch markers: dashed at the start, a shaded span to the end.
		for k, sw := range s.Switches {
			xs := x(float64(sw.Start) / 1e9)
			xe := x(float64(sw.End) / 1e9)
			fmt.Fprintf(w, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#888" opacity="0.18"/>`, xs, rpsTop, math.Max(xe-xs, 1), bandBot-rpsTop)
			fmt.Fprintf(w, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#666" stroke-dasharray="3,2"/>`, xs, xs, rpsTop-4, bandBot)
			// Labels alternate in two rows so that neighbours do not collide.
			ly := rpsTop - 6 - float64(k%2)*11
			fmt.Fprintf(w, `<text x="%.1f" y="%.1f" font-size="9" fill="#444" text-anchor="middle">%s</text>`+"\n", xs, ly, esc(sw.Label))
		}
		// Time axis.
		step := tickStep(dur)
		for t := 0.0; t <= dur+1e-9; t += step {
			fmt.Fprintf(w, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#999"/><text x="%.1f" y="%.1f" text-anchor="middle" fill="#555">%gs</text>`+"\n",
				x(t), x(t), bandBot, bandBot+4, x(t), bandBot+15, t)
		}
		fmt.Fprintln(w, `</g>`)
	}
	fmt.Fprintln(w, `</svg>`)
}

func esc(s string) string { return html.EscapeString(s) }

// niceCeil rounds up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// tickStep picks a time-axis step giving at most about 15 ticks.
func tickStep(dur float64) float64 {
	for _, s := range []float64{0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300} {
		if dur/s <= 15 {
			return s
		}
	}
	return 600
}

func humanInt(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%gk", math.Round(v/100)/10)
	}
	return fmt.Sprintf("%.0f", v)
}
