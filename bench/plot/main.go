// Command plot draws docs/bench.png from the figures `make bench` records
// (bench/results_test.go, one JSON point per line): the latency each path
// adds over a direct connection, per concurrency, and the throughput of
// each path as a ratio to direct. Every figure comes from the same run's
// side-by-side measurement; the image says so, and that the machine was
// shared.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"image/color"
	"os"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

type point struct {
	Bench       string  `json:"bench"`
	Kind        string  `json:"kind"`
	Path        string  `json:"path"`
	Concurrency int     `json:"concurrency"`
	Value       float64 `json:"value"`
}

// pathColors: one colour per path in every panel.
var pathColors = map[string]color.Color{
	"bare":    color.RGBA{R: 0x88, G: 0x88, B: 0x88, A: 0xff},
	"engine":  color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	"haproxy": color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
}

var pathLabels = map[string]string{"bare": "bare Go floor", "engine": "forge-supervisor engine", "haproxy": "HAProxy 2.6"}

func main() {
	in := flag.String("in", "", "results file (JSON lines) written by the benchmarks")
	out := flag.String("out", "docs/bench.png", "PNG to write")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintf(os.Stderr, "bench/plot: %v\n", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	pts, err := readPoints(in)
	if err != nil {
		return err
	}
	p50, err := latencyPlot(pts, "added_p50_us", "Added latency, p50 (plain HTTP connect + first byte)")
	if err != nil {
		return err
	}
	p99, err := latencyPlot(pts, "added_p99_us", "Added latency, p99 (plain HTTP connect + first byte)")
	if err != nil {
		return err
	}
	tls, err := tlsPlot(pts)
	if err != nil {
		return err
	}
	thr, err := throughputPlot(pts)
	if err != nil {
		return err
	}
	const w, h = 30 * vg.Centimeter, 22 * vg.Centimeter
	img := vgimg.New(w, h)
	dc := draw.New(img)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	// A footer line: where the figures come from.
	footer := fmt.Sprintf("make bench, %s UTC: every path measured side by side in one run, interleaved; 2 shared vCPUs, so absolute values move between runs — compare paths.",
		time.Now().UTC().Format("2006-01-02 15:04"))
	sty := text.Style{Color: color.Gray{Y: 0x55}, Font: font.From(plot.DefaultFont, vg.Points(8)), Handler: plot.DefaultTextHandler}
	dc.FillText(sty, vg.Point{X: vg.Centimeter * 0.5, Y: vg.Centimeter * 0.3}, footer)
	body := draw.Crop(dc, 0, 0, vg.Centimeter*0.8, 0)
	tiles := draw.Tiles{Rows: 2, Cols: 2, PadX: vg.Centimeter, PadY: vg.Centimeter, PadTop: vg.Centimeter * 0.3}
	plots := [][]*plot.Plot{{p50, p99}, {tls, thr}}
	canvases := plot.Align(plots, tiles, body)
	for r := range plots {
		for c := range plots[r] {
			plots[r][c].Draw(canvases[r][c])
		}
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	return f.Close()
}

// readPoints reads the file; a figure recorded twice (the benchmark's
// probe run with N=1, then the real run) keeps its last value.
func readPoints(path string) ([]point, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	idx := map[string]int{}
	var pts []point
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var p point
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		key := fmt.Sprintf("%s|%s|%s|%d", p.Bench, p.Kind, p.Path, p.Concurrency)
		if i, ok := idx[key]; ok {
			pts[i] = p
			continue
		}
		idx[key] = len(pts)
		pts = append(pts, p)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(pts) == 0 {
		return nil, fmt.Errorf("%s: no figures", path)
	}
	return pts, nil
}

// latencyPlot draws one line per path: the added latency (kind) of
// BenchmarkConnectConcurrency against the number of clients at once.
func latencyPlot(pts []point, kind, title string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "clients at once"
	p.Y.Label.Text = "µs over direct"
	p.Legend.Top, p.Legend.Left = true, true
	var levels []int
	for _, pt := range pts {
		if strings.HasPrefix(pt.Bench, "BenchmarkConnectConcurrency") && !slices.Contains(levels, pt.Concurrency) {
			levels = append(levels, pt.Concurrency)
		}
	}
	slices.Sort(levels)
	if len(levels) == 0 {
		return nil, fmt.Errorf("no BenchmarkConnectConcurrency figures")
	}
	var ticks []plot.Tick
	for i, c := range levels {
		ticks = append(ticks, plot.Tick{Value: float64(i), Label: fmt.Sprint(c)})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	for _, path := range []string{"bare", "engine", "haproxy"} {
		var xy plotter.XYs
		for i, c := range levels {
			for _, pt := range pts {
				if strings.HasPrefix(pt.Bench, "BenchmarkConnectConcurrency") && pt.Kind == kind && pt.Path == path && pt.Concurrency == c {
					xy = append(xy, plotter.XY{X: float64(i), Y: pt.Value})
				}
			}
		}
		if len(xy) == 0 {
			continue
		}
		line, dots, err := plotter.NewLinePoints(xy)
		if err != nil {
			return nil, err
		}
		line.Color, dots.Color = pathColors[path], pathColors[path]
		line.Width = vg.Points(2)
		p.Add(line, dots)
		p.Legend.Add(pathLabels[path], line, dots)
	}
	p.Y.Min = 0
	p.Y.Max *= 1.3 // room for the legend
	p.Add(plotter.NewGrid())
	return p, nil
}

// tlsPlot draws grouped bars: the latency each path adds to a TLS 1.3
// connection + first byte, p50 and p99, one client.
func tlsPlot(pts []point) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Added latency, TLS 1.3 connect + first byte (1 client)"
	p.Y.Label.Text = "µs over direct"
	p.Legend.Top, p.Legend.Left = true, true
	width := vg.Points(18)
	for i, path := range []string{"bare", "engine", "haproxy"} {
		var vals plotter.Values
		for _, kind := range []string{"added_p50_us", "added_p99_us"} {
			v := 0.0
			for _, pt := range pts {
				if pt.Bench == "BenchmarkConnectFirstByte" && pt.Kind == kind && pt.Path == path {
					v = pt.Value
				}
			}
			vals = append(vals, v)
		}
		bars, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return nil, err
		}
		bars.Color, bars.LineStyle.Width = pathColors[path], 0
		bars.Offset = vg.Length(i-1) * width
		p.Add(bars)
		p.Legend.Add(pathLabels[path], bars)
	}
	p.NominalX("p50", "p99")
	p.Y.Max *= 1.3 // room for the legend
	p.Add(plotter.NewGrid())
	return p, nil
}

// throughputPlot draws one bar per path: bulk TCP throughput as a ratio
// to direct, DNS queries per second as a ratio to the dnsmasq forwarder
// (each without a cache, and each with its answer cache), all from the
// same run.
func throughputPlot(pts []point) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Throughput: TCP relative to direct, DNS relative to dnsmasq"
	p.Y.Label.Text = "ratio (1.0 = as fast as the reference)"
	var names []string
	var vals plotter.Values
	var colors []color.Color
	for _, want := range []struct{ path, label string }{
		{"bare", "TCP bulk:\nbare floor"}, {"engine", "TCP bulk:\nengine"}, {"haproxy", "TCP bulk:\nHAProxy"},
		{"dns bare/dnsmasq", "DNS qps: floor\n/ dnsmasq"}, {"dns proxy_nocache/dnsmasq", "DNS qps: proxy\n/ dnsmasq"},
		{"dns proxy/dnsmasq_cache", "DNS qps: proxy+cache\n/ dnsmasq+cache"},
	} {
		for _, pt := range pts {
			if pt.Kind == "throughput_ratio" && pt.Path == want.path {
				names = append(names, want.label)
				vals = append(vals, pt.Value)
				c := pathColors[want.path]
				switch want.path {
				case "dns bare/dnsmasq":
					c = pathColors["bare"]
				case "dns proxy_nocache/dnsmasq", "dns proxy/dnsmasq_cache":
					c = pathColors["engine"]
				}
				colors = append(colors, c)
			}
		}
	}
	if len(vals) == 0 {
		return nil, fmt.Errorf("no throughput figures")
	}
	for i, v := range vals {
		one := make(plotter.Values, len(vals))
		one[i] = v
		bars, err := plotter.NewBarChart(one, vg.Points(26))
		if err != nil {
			return nil, err
		}
		bars.Color, bars.LineStyle.Width = colors[i], 0
		p.Add(bars)
	}
	p.NominalX(names...)
	p.Y.Min = 0
	p.Y.Max = max(p.Y.Max, 1) * 1.15 // the 1.0 line always shows
	ref := plotter.NewFunction(func(float64) float64 { return 1 })
	ref.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(ref, plotter.NewGrid())
	return p, nil
}
