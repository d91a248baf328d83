package doctor

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"
	"github.com/valyala/fasthttp"

	"github.com/modelserve/modelserve/internal/loadgen"
)

func verdict(ok bool) string {
	if ok {
		return "pass"
	}
	return "**FAIL**"
}

func short(d time.Duration) string { return loadgen.Round(d).String() }

// errorText is the "error" of a JSON answer, shortened; the body itself
// when it is not one.
func errorText(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	s := string(body)
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		s = e.Error
	}
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return strings.ReplaceAll(s, "|", "\\|")
}

// gpuScrape reads the server's own /metrics while the load runs and keeps
// the highest GPU readings: what a Prometheus server would have seen.
type gpuScrape struct {
	utilization, memory, power, samples atomic.Int64 // percent, bytes, milliwatts, count
	done                                chan struct{}
	wg                                  sync.WaitGroup
}

func startScrape(url string, every time.Duration) *gpuScrape {
	s := &gpuScrape{done: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-t.C:
				s.read(url)
			}
		}
	}()
	return s
}

func (s *gpuScrape) read(url string) {
	status, body, err := fasthttp.GetTimeout(nil, url, 5*time.Second)
	if err != nil || status != fasthttp.StatusOK {
		return
	}
	p := expfmt.NewTextParser(pmodel.UTF8Validation)
	families, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return
	}
	s.samples.Add(1)
	keep := func(a *atomic.Int64, v int64) {
		for {
			old := a.Load()
			if v <= old || a.CompareAndSwap(old, v) {
				return
			}
		}
	}
	for name, scale := range map[string]float64{"modelserve_gpu_utilization_ratio": 100, "modelserve_gpu_memory_used_bytes": 1,
		"modelserve_gpu_power_watts": 1000} {
		f, ok := families[name]
		if !ok {
			continue
		}
		for _, m := range f.GetMetric() {
			v := int64(m.GetGauge().GetValue() * scale)
			switch name {
			case "modelserve_gpu_utilization_ratio":
				keep(&s.utilization, v)
			case "modelserve_gpu_memory_used_bytes":
				keep(&s.memory, v)
			default:
				keep(&s.power, v)
			}
		}
	}
}

func (s *gpuScrape) stop() {
	close(s.done)
	s.wg.Wait()
}

// labelsOf lists, for each series of a gauge, the values of the named
// labels.
func labelsOf(g prometheus.Gatherer, name string, labels ...string) [][]string {
	var out [][]string
	for _, m := range family(g, name) {
		vals := make([]string, len(labels))
		for _, lp := range m.GetLabel() {
			if i := slices.Index(labels, lp.GetName()); i >= 0 {
				vals[i] = lp.GetValue()
			}
		}
		out = append(out, vals)
	}
	slices.SortFunc(out, func(a, b []string) int { return strings.Compare(strings.Join(a, " "), strings.Join(b, " ")) })
	return out
}

func histogram(g prometheus.Gatherer, name string) (sum, count float64) {
	for _, m := range family(g, name) {
		sum += m.GetHistogram().GetSampleSum()
		count += float64(m.GetHistogram().GetSampleCount())
	}
	return sum, count
}

func counterSum(g prometheus.Gatherer, name string) float64 {
	var n float64
	for _, m := range family(g, name) {
		n += m.GetCounter().GetValue()
	}
	return n
}

func family(g prometheus.Gatherer, name string) []*dto.Metric {
	families, err := g.Gather()
	if err != nil {
		return nil
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()
		}
	}
	return nil
}
