package main

import (
	"fmt"
	"math"
	"os"
	"strings"
)

// chartSeries is one line of the scaling chart.
type chartSeries struct {
	Label, Color string
	Dash         string // SVG stroke-dasharray, "" for a solid line
	X, Y         []float64
}

// writeScalingChart writes the scaling curves of reps (populate and update
// items/s against contacts per user) as an SVG file.
func writeScalingChart(file string, reps []*serverReport) error {
	var pop, upd []chartSeries
	colors := map[string]string{"prosody": "#1f77b4", "ejabberd": "#2ca02c"}
	for _, r := range reps {
		if len(r.Scale) == 0 {
			continue
		}
		name := map[string]string{"prosody": "Prosody", "ejabberd": "ejabberd"}[r.Name]
		type line struct {
			label, dash string
			pop, upd    func(scalePoint) float64
		}
		lines := []line{
			{name + ": server limit (blaster)", "6 4", func(p scalePoint) float64 { return p.Blaster.Populate.Rate() }, func(p scalePoint) float64 { return p.Blaster.Update.Rate() }},
			{name + ": sidecar, item by item", "", func(p scalePoint) float64 { return p.PerItem.Populate.itemsPerSec() }, func(p scalePoint) float64 { return p.PerItem.Update.itemsPerSec() }},
		}
		if r.Scale[0].Helper.Populate.Items > 0 {
			lines = append(lines, line{name + ": sidecar through the helper", "2 3", func(p scalePoint) float64 { return p.Helper.Populate.itemsPerSec() }, func(p scalePoint) float64 { return p.Helper.Update.itemsPerSec() }})
		}
		for _, l := range lines {
			ps := chartSeries{Label: l.label, Color: colors[r.Name], Dash: l.dash}
			us := ps
			for _, pt := range r.Scale {
				ps.X, ps.Y = append(ps.X, float64(pt.Contacts)), append(ps.Y, l.pop(pt))
				us.X, us.Y = append(us.X, float64(pt.Contacts)), append(us.Y, l.upd(pt))
			}
			pop, upd = append(pop, ps), append(upd, us)
		}
	}
	if len(pop) == 0 {
		return nil
	}
	const panelW, panelH, top = 460, 300, 40
	var b strings.Builder
	legendH := 18 * len(pop)
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", 2*panelW+40, top+panelH+60+legendH)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	chartPanel(&b, 20, top, panelW, panelH, "populate from empty (items/s)", pop)
	chartPanel(&b, panelW+40, top, panelW, panelH, "update 10/10/10% (items/s)", upd)
	fmt.Fprintf(&b, `<text x="20" y="20" font-size="14">roster items written per second against contacts per user (both scales logarithmic); each point a fresh server</text>`+"\n")
	for i, s := range pop {
		y := top + panelH + 50 + 18*i
		fmt.Fprintf(&b, `<line x1="30" y1="%d" x2="70" y2="%d" stroke="%s" stroke-width="2" stroke-dasharray="%s"/><text x="78" y="%d">%s</text>`+"\n",
			y-4, y-4, s.Color, s.Dash, y, s.Label)
	}
	b.WriteString("</svg>\n")
	return os.WriteFile(file, []byte(b.String()), 0o644)
}

// chartPanel draws series in the box at (x0, y0) of size w×h, both axes
// on log scales (the helper's batch path and the per-item path at 5,000
// contacts differ by two orders of magnitude).
func chartPanel(b *strings.Builder, x0, y0, w, h int, title string, series []chartSeries) {
	const padL, padB = 56, 30
	minX, maxX, minY, maxY := math.Inf(1), math.Inf(-1), math.Inf(1), 0.0
	for _, s := range series {
		for i := range s.X {
			minX, maxX = min(minX, s.X[i]), max(maxX, s.X[i])
			if s.Y[i] > 0 {
				minY, maxY = min(minY, s.Y[i]), max(maxY, s.Y[i])
			}
		}
	}
	if maxX <= minX {
		maxX = minX * 10
	}
	if maxY == 0 {
		minY, maxY = 1, 10
	}
	loY, hiY := math.Floor(math.Log10(minY)), math.Ceil(math.Log10(maxY))
	if hiY <= loY {
		hiY = loY + 1
	}
	px := func(x float64) float64 {
		return float64(x0+padL) + (math.Log10(x)-math.Log10(minX))/(math.Log10(maxX)-math.Log10(minX))*float64(w-padL-10)
	}
	py := func(y float64) float64 {
		return float64(y0+h-padB) - (math.Log10(y)-loY)/(hiY-loY)*float64(h-padB)
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", x0+padL, y0-6, title)
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>`+"\n", x0+padL, y0, w-padL-10, h-padB)
	for e := loY; e <= hiY; e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if math.Log10(v) > hiY+1e-9 {
				break
			}
			fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n",
				x0+padL, py(v), x0+w-10, py(v), x0+padL-4, py(v)+4, num(v))
		}
	}
	for _, x := range series[0].X {
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", px(x), y0+h-padB+16, num(x))
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">contacts per user</text>`+"\n", x0+padL+(w-padL)/2, y0+h)
	for _, s := range series {
		var pts []string
		for i := range s.X {
			if s.Y[i] > 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(s.X[i]), py(s.Y[i])))
			}
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="2" stroke-dasharray="%s" points="%s"/>`+"\n", s.Color, s.Dash, strings.Join(pts, " "))
		for _, p := range pts {
			x, y, _ := strings.Cut(p, ",")
			fmt.Fprintf(b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", x, y, s.Color)
		}
	}
}
