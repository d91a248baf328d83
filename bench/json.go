package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/modelserve/modelserve/engine"
	"github.com/modelserve/modelserve/model"
	"github.com/modelserve/modelserve/onnxrt"
	"github.com/modelserve/modelserve/server"
)

// jsonRows is the gateway batch the JSON section measures.
const jsonRows = 4096

// jsonSection: where the time of a large flat batch goes — decoding the
// JSON, running the model, encoding the answer — against the whole trip.
func jsonSection(e *env) (string, error) {
	rt, err := onnxrt.Load("")
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(e.modelPath(mlp))
	if err != nil {
		return "", err
	}
	info, err := rt.Inspect(b)
	if err != nil {
		return "", err
	}
	sig := model.Signature{Inputs: info.Inputs, Outputs: info.Outputs, Functions: []model.Function{{Name: "predict", Outputs: []string{"y"}}}}
	codec, err := server.NewCodec(sig, "predict")
	if err != nil {
		return "", err
	}
	body := body(mlp, jsonRows, true)
	decoded, err := codec.Decode(body)
	if err != nil {
		return "", err
	}
	outs := []model.Tensor{{DType: model.Float32, Shape: model.Shape{jsonRows, 8}, Data: make([]float32, jsonRows*8)}}
	for i := range outs[0].Data.([]float32) {
		outs[0].Data.([]float32)[i] = float32(i%97) / 31
	}
	encoded := codec.Encode(nil, decoded, outs)

	d := e.o.duration
	fmt.Fprintf(os.Stderr, "bench: json decode\n")
	decode := perSecond(d, func() error {
		_, err := codec.Decode(body)
		return err
	})
	// The same rows wide: one object per row keyed x_0..x_63, as a warehouse
	// sends a table's columns by name.
	wide := wideBody(body)
	if _, err := codec.Decode(wide); err != nil {
		return "", fmt.Errorf("wide rows: %w", err)
	}
	decodeWide := perSecond(d, func() error {
		_, err := codec.Decode(wide)
		return err
	})
	fmt.Fprintf(os.Stderr, "bench: json encode\n")
	var buf []byte
	encode := perSecond(d, func() error {
		buf = codec.Encode(buf[:0], decoded, outs)
		return nil
	})
	fmt.Fprintf(os.Stderr, "bench: json raw\n")
	plan := engine.PlanCPU(engine.Options{}, runtime.GOMAXPROCS(0))
	raw, err := measureRaw(e.modelPath(mlp), mlp, jsonRows, plan, d)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "bench: json end to end\n")
	s, err := e.serve(mlp)
	if err != nil {
		return "", err
	}
	conns := plan.Workers + 1
	st := closedLoop(s.host, body, conns, d, nil)
	s.stop()
	if n := st.Others(); n > 0 {
		return "", fmt.Errorf("end to end: %d requests failed: %v", n, st.Statuses)
	}
	served := st.OKPerSecond() * jsonRows

	var out strings.Builder
	fmt.Fprintf(&out, "## A large flat batch: where the time goes\n\n")
	fmt.Fprintf(&out, "Gateway batches of %d rows, each 64 float features as 64 scalar arguments (%.1f MB of JSON in, %.1f MB out), on the MLP. Decode and encode are one goroutine of the server's own code; raw ONNX Runtime and /predict use both cores (%d×%d workers; %d callers for /predict, each batch split into calls as the server's defaults cut it: up to 1024 rows for this model).\n\n",
		jsonRows, float64(len(body))/1e6, float64(len(encoded))/1e6, plan.Workers, plan.IntraOpThreads, conns)
	fmt.Fprintln(&out, "| stage | rows/s | MB/s of JSON |")
	fmt.Fprintln(&out, "|---|---:|---:|")
	fmt.Fprintf(&out, "| JSON decode only, 1 core | %.0f | %.0f |\n", decode*jsonRows, decode*float64(len(body))/1e6)
	fmt.Fprintf(&out, "| JSON decode only, the same rows wide (`{\"x_0\": ..., \"x_63\": ...}`, %.1f MB), 1 core | %.0f | %.0f |\n",
		float64(len(wide))/1e6, decodeWide*jsonRows, decodeWide*float64(len(wide))/1e6)
	fmt.Fprintf(&out, "| JSON encode only, 1 core | %.0f | %.0f |\n", encode*jsonRows, encode*float64(len(encoded))/1e6)
	fmt.Fprintf(&out, "| raw ONNX Runtime, %d rows per call | %.0f | |\n", jsonRows, raw)
	fmt.Fprintf(&out, "| /predict end to end (p50 %s, p99 %s) | %.0f | %.0f |\n", short(percentile(st.OK, 0.5)), short(percentile(st.OK, 0.99)),
		served, st.OKPerSecond()*float64(len(body))/1e6)
	// Core time per row: one core decodes and encodes; the model and the
	// whole trip use every core.
	us := func(rowsPerSecond float64, cores int) float64 { return float64(cores) / rowsPerSecond * 1e6 }
	cores := runtime.GOMAXPROCS(0)
	dec, model, enc, trip := us(decode*jsonRows, 1), us(raw, cores), us(encode*jsonRows, 1), us(served, cores)
	fmt.Fprintf(&out, "\nPer row, in core time: decoding %.2f µs, the model %.2f µs, encoding %.2f µs; the whole trip %.2f µs of the %d cores. The rest, %.2f µs (%.0f%%), is HTTP, copies, splitting the batch into calls, garbage collection and the load generator.\n",
		dec, model, enc, trip, cores, trip-dec-model-enc, 100*(trip-dec-model-enc)/trip)
	return out.String(), nil
}

// wideBody rewrites a body of flat MLP rows ([row, v0, ..., v63]) as
// wide ones ([row, {"x_0": v0, ..., "x_63": v63}]).
func wideBody(flat []byte) []byte {
	var rows [][]json.Number
	d := json.NewDecoder(bytes.NewReader(flat))
	d.UseNumber()
	var v struct{ Data [][]json.Number }
	if d.Decode(&v) != nil {
		return nil
	}
	rows = v.Data
	b := []byte(`{"data":[`)
	for r, row := range rows {
		if r > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = append(b, row[0]...)
		b = append(b, ",{"...)
		for j, x := range row[1:] {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, `"x_`...)
			b = strconv.AppendInt(b, int64(j), 10)
			b = append(b, `":`...)
			b = append(b, x...)
		}
		b = append(b, "}]"...)
	}
	return append(b, "]}"...)
}

// perSecond runs f in a loop for d (after a warm-up) and returns its rate.
func perSecond(d time.Duration, f func() error) float64 {
	for range 3 {
		if f() != nil {
			return 0
		}
	}
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		if f() != nil {
			return 0
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds()
}
