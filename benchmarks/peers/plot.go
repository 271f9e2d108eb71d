package peers

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"slices"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// systemColor is each system's colour in every plot.
func systemColor(system string) color.Color {
	switch system {
	case "rafting":
		return color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff} // blue
	case "etcd":
		return color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff} // red
	case "zookeeper":
		return color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff} // green
	}
	return color.Black
}

// WritePlots writes one PNG per workload into dir: the latency CDF of each
// system (log time axis), or for idle cost a bar chart of CPU; it returns
// the file name per workload key.
func WritePlots(res *Results, dir string) (map[string]string, error) {
	files := map[string]string{}
	for _, w := range res.Workloads {
		var p *plot.Plot
		var err error
		if w.Kind == KindIdle {
			p, err = idlePlot(w, res.Systems)
		} else {
			p, err = cdfPlot(w, res.Systems)
		}
		if err != nil {
			return files, fmt.Errorf("plot %s: %w", w.Key, err)
		}
		if p == nil {
			continue
		}
		name := w.Key + ".png"
		if err := p.Save(16*vg.Centimeter, 10*vg.Centimeter, filepath.Join(dir, name)); err != nil {
			return files, err
		}
		files[w.Key] = name
	}
	return files, nil
}

// cdfPlot is the fraction of samples at or below each latency, per system.
func cdfPlot(w *Workload, systems []string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = w.Title
	p.X.Label.Text = "latency (ms, log scale)"
	p.Y.Label.Text = "fraction of samples ≤ x"
	p.Y.Min, p.Y.Max = 0, 1
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = false // lower right: below every curve's end
	p.Legend.Left = false
	p.Add(plotter.NewGrid())
	lo, hi := math.Inf(1), math.Inf(-1)
	n := 0
	for _, s := range systems {
		r := w.Run(s)
		if !r.OK() || len(r.LatenciesUs) == 0 {
			continue
		}
		lat := r.Latencies()
		slices.Sort(lat)
		pts := make(plotter.XYs, 0, 2*len(lat))
		for i, d := range lat {
			x := max(float64(d)/float64(time.Millisecond), 0.001) // a log axis takes no zero
			lo, hi = min(lo, x), max(hi, x)
			// A step: up by 1/n at each sample (a single sample is a
			// vertical line from 0 to 1).
			pts = append(pts, plotter.XY{X: x, Y: float64(i) / float64(len(lat))}, plotter.XY{X: x, Y: float64(i+1) / float64(len(lat))})
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return nil, err
		}
		l.Color = systemColor(s)
		l.Width = vg.Points(1.5)
		p.Add(l)
		label := DisplayName(s)
		if r.Setting != "" && r.Lease > 0 {
			label += fmt.Sprintf(" (%s, lease %s)", r.Setting, FormatLease(r.Lease))
		}
		p.Legend.Add(fmt.Sprintf("%s, n=%d", label, r.Stats.N), l)
		n++
	}
	if n == 0 {
		return nil, nil
	}
	// Whole decades around the data, so the log ticks have labels.
	p.X.Min = math.Pow(10, math.Floor(math.Log10(lo)))
	p.X.Max = math.Pow(10, math.Ceil(math.Log10(hi)))
	if p.X.Max <= p.X.Min {
		p.X.Max = p.X.Min * 10
	}
	return p, nil
}

// idlePlot is a bar per system: CPU of the three members at rest.
func idlePlot(w *Workload, systems []string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = w.Title + ": CPU"
	p.Y.Label.Text = "% of one core (3 members)"
	var names []string
	var vals plotter.Values
	var cols []color.Color
	for _, s := range systems {
		r := w.Run(s)
		if !r.OK() || r.Idle == nil {
			continue
		}
		names = append(names, fmt.Sprintf("%s: %d inst., %.0f MiB", DisplayName(s), r.Idle.Instances, float64(r.Idle.RSSBytes)/(1<<20)))
		vals = append(vals, r.Idle.CPUPct)
		cols = append(cols, systemColor(s))
	}
	if len(vals) == 0 {
		return nil, nil
	}
	for i, v := range vals {
		one := make(plotter.Values, len(vals))
		one[i] = v
		bars, err := plotter.NewBarChart(one, vg.Points(40))
		if err != nil {
			return nil, err
		}
		bars.Color = cols[i]
		bars.LineStyle.Width = 0
		p.Add(bars)
	}
	p.NominalX(names...)
	p.Y.Min = 0
	return p, nil
}
