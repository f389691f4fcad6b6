package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
)

// Geometry of the chart, in SVG user units.
const (
	chartWidth  = 1040
	labelWidth  = 340
	barMaxWidth = 440
	barHeight   = 16
	rowHeight   = 62
	chartTop    = 56
)

// chart draws each path's rate beside the raw limit it is measured against, with the target
// (target × limit) as a dashed mark: a plain SVG with no script, no font file and no external
// reference, so it renders the same on GitHub and offline.
func chart(rows []Row) []byte {
	maxV := 1.0
	for _, r := range rows {
		maxV = max(maxV, r.RPS, r.LimitRPS)
	}
	scale := func(v float64) float64 { return v / maxV * barMaxWidth }
	height := chartTop + rowHeight*len(rows) + 40
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="13">`+"\n",
		chartWidth, height, chartWidth, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	fmt.Fprintf(&b, `<text x="16" y="26" font-size="17" font-weight="bold">Latchkey: requests per second on one core, beside the raw limit</text>`+"\n")
	fmt.Fprintf(&b, `<text x="16" y="44" fill="#555">server pinned to one CPU with GOMAXPROCS=1; limits are go-jose ES256 sign or verify on the same CPU; dashed mark = target</text>`+"\n")
	for i, r := range rows {
		y := chartTop + i*rowHeight + 8
		text(&b, 16, y+14, "#111", true, r.Title)
		switch {
		case r.Limit != "" && r.Target > 0:
			text(&b, 16, y+30, "#555", false, fmt.Sprintf("%s × limit, %s in CPU time (target ≥ %s)", f2(r.Ratio), f2(r.CPURatio), f2(r.Target)))
		case r.Limit != "":
			text(&b, 16, y+30, "#555", false, fmt.Sprintf("%s × limit", f2(r.Ratio)))
		}
		p99y := y + 46
		if r.Limit == "" {
			p99y = y + 30
		}
		text(&b, 16, p99y, "#555", false, fmt.Sprintf("p99 %s ms at concurrency %d", f2(r.P99), r.Concurrency))
		x := float64(labelWidth)
		bar(&b, x, y, scale(r.RPS), "#2b6cb0")
		// The value goes after the bar and after the target mark, whichever ends later.
		end := scale(r.RPS)
		if r.Limit != "" && r.Target > 0 {
			end = max(end, scale(r.Target*r.LimitRPS))
		}
		text(&b, int(x+end)+6, y+13, "#111", true, f0(r.RPS)+"/s")
		if r.Limit != "" {
			bar(&b, x, y+barHeight+4, scale(r.LimitRPS), "#b8c2cc")
			text(&b, int(x+scale(r.LimitRPS))+6, y+barHeight+17, "#555", false, f0(r.LimitRPS)+"/s "+r.LimitTitle)
			if r.Target > 0 {
				tx := x + scale(r.Target*r.LimitRPS)
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#c53030" stroke-width="2" stroke-dasharray="4 3"/>`+"\n",
					tx, y-3, tx, y+barHeight+1)
			}
		}
	}
	fmt.Fprintf(&b, `<text x="16" y="%d" fill="#777" font-size="11">drawn by hack/loadgen report from the JSON lines of make bench</text>`+"\n", height-12)
	b.WriteString("</svg>\n")
	return b.Bytes()
}

func bar(b *bytes.Buffer, x float64, y int, w float64, fill string) {
	fmt.Fprintf(b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" rx="2" fill="%s"/>`+"\n", x, y, max(w, 1), barHeight, fill)
}

func text(b *bytes.Buffer, x, y int, fill string, bold bool, s string) {
	weight := ""
	if bold {
		weight = ` font-weight="bold"`
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" fill="%s"%s>`, x, y, fill, weight)
	_ = xml.EscapeText(b, []byte(s))
	b.WriteString("</text>\n")
}
