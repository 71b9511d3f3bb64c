package main

import (
	"bytes"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPlotFromFigures draws a PNG from a results file like make bench's,
// where the probe run's figure (N=1) is overridden by the real one.
func TestPlotFromFigures(t *testing.T) {
	var b strings.Builder
	for _, c := range []int{1, 8, 32} {
		for i, path := range []string{"bare", "engine", "haproxy"} {
			for _, kind := range []string{"added_p50_us", "added_p99_us"} {
				fmt.Fprintf(&b, `{"bench":"BenchmarkConnectConcurrency/c=%d","kind":%q,"path":%q,"concurrency":%d,"value":%d}`+"\n", c, kind, path, c, 99999)
				fmt.Fprintf(&b, `{"bench":"BenchmarkConnectConcurrency/c=%d","kind":%q,"path":%q,"concurrency":%d,"value":%d}`+"\n", c, kind, path, c, 100*c+10*i)
				if c == 1 {
					fmt.Fprintf(&b, `{"bench":"BenchmarkConnectFirstByte","kind":%q,"path":%q,"concurrency":1,"value":%d}`+"\n", kind, path, 500+i)
				}
			}
		}
	}
	for _, p := range []string{"bare", "engine", "haproxy", "dns bare/dnsmasq", "dns proxy_nocache/dnsmasq", "dns proxy/dnsmasq_cache"} {
		fmt.Fprintf(&b, `{"bench":"x","kind":"throughput_ratio","path":%q,"concurrency":1,"value":0.7}`+"\n", p)
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "results.jsonl"), filepath.Join(dir, "bench.png")
	if err := os.WriteFile(in, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	pts, err := readPoints(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pts {
		if p.Value == 99999 {
			t.Fatalf("the probe run's figure was kept: %+v", p)
		}
	}
	if err := run(in, out); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if r := img.Bounds(); r.Dx() < 800 || r.Dy() < 500 {
		t.Errorf("image %v is too small to read", r)
	}
}

func TestPlotRefusesEmptyResults(t *testing.T) {
	in := filepath.Join(t.TempDir(), "empty.jsonl")
	os.WriteFile(in, nil, 0o644)
	if err := run(in, filepath.Join(t.TempDir(), "x.png")); err == nil {
		t.Error("no figures: nil error")
	}
}
