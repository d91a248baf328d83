// Package replay runs the requests an inference log kept through another
// model version (locally through the engine, or on a running server) and
// reports, per output, how the answers changed: the check before an alias
// moves to a new version.
package replay

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/modelserve/modelserve/inferencelog"
	"github.com/modelserve/modelserve/model"
)

// Runner runs one request's inputs (named) and returns its outputs,
// named.
type Runner interface {
	Run(ctx context.Context, names []string, inputs []model.Tensor) (outNames []string, outs []model.Tensor, err error)
}

// Options choose what is replayed.
type Options struct {
	// Model is the logged model whose requests are replayed; Function,
	// when set, only that function's.
	Model, Function string
	// Output, when set, receives the row-level differences as Parquet.
	Output io.Writer
}

// Diff is one output of one row that changed.
type Diff struct {
	RequestID string  `parquet:"request_id"`
	Row       int64   `parquet:"row"`
	Output    string  `parquet:"output,dict"`
	Logged    string  `parquet:"logged"`
	Replayed  string  `parquet:"replayed"`
	MaxAbs    float64 `parquet:"max_abs_difference"`
	Flipped   bool    `parquet:"label_flipped"`
}

// OutputReport is how one output changed over the rows replayed.
type OutputReport struct {
	Name    string
	Changed int64
	MaxAbs  float64
	Flips   int64
	// Argmax says the flips are of the largest element (a vector of
	// scores), not of the value itself.
	Argmax bool
}

// Report is what a replay found.
type Report struct {
	Requests, Rows int64
	// Skipped are logged requests not replayed: failures, or rows
	// without their inputs.
	Skipped int64
	Outputs []*OutputReport
	// Logged and Replayed are the requests' latencies.
	Logged, Replayed []time.Duration
}

// request is one logged request's rows, gathered to run together.
type request struct {
	id     string
	rows   []inferencelog.Row
	logged time.Duration
}

// Run replays the log in dir through r.
func Run(ctx context.Context, dir string, r Runner, o Options) (*Report, error) {
	rep := &Report{}
	outputs := map[string]*OutputReport{}
	var w *parquet.GenericWriter[Diff]
	if o.Output != nil {
		w = parquet.NewGenericWriter[Diff](o.Output, parquet.Compression(&parquet.Zstd), parquet.CreatedBy("modelserve", "", ""))
	}
	var cur *request
	flush := func() error {
		if cur == nil {
			return nil
		}
		req := cur
		cur = nil
		return replayRequest(ctx, req, r, rep, outputs, w)
	}
	err := inferencelog.Each(ctx, dir, func(row inferencelog.Row) error {
		if row.Model != o.Model || o.Function != "" && row.Function != o.Function {
			return nil
		}
		if cur != nil && cur.id != row.RequestID {
			if err := flush(); err != nil {
				return err
			}
		}
		if cur == nil {
			cur = &request{id: row.RequestID, logged: time.Duration(row.LatencyMS * float64(time.Millisecond))}
		}
		cur.rows = append(cur.rows, row)
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return nil, err
	}
	if w != nil {
		if err := w.Close(); err != nil {
			return nil, fmt.Errorf("writing the differences: %w", err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(outputs)) {
		rep.Outputs = append(rep.Outputs, outputs[name])
	}
	return rep, nil
}

// replayRequest runs one logged request and compares its outputs row by
// row with the logged ones.
func replayRequest(ctx context.Context, req *request, r Runner, rep *Report, outputs map[string]*OutputReport, w *parquet.GenericWriter[Diff]) error {
	if req.rows[0].Status != 200 || len(req.rows[0].InputData) == 0 {
		rep.Skipped++
		return nil
	}
	names, inputs, err := gather(req.rows)
	if err != nil {
		return fmt.Errorf("request %s: %w", req.id, err)
	}
	began := time.Now()
	outNames, outs, err := r.Run(ctx, names, inputs)
	if err != nil {
		return fmt.Errorf("replaying request %s (%d rows): %w", req.id, len(req.rows), err)
	}
	rep.Replayed = append(rep.Replayed, time.Since(began))
	rep.Logged = append(rep.Logged, req.logged)
	rep.Requests++
	rep.Rows += int64(len(req.rows))
	replayed := inferencelog.JSONRows(outNames, outs)
	var diffs []Diff
	for i, row := range req.rows {
		var was, now map[string]json.RawMessage
		if err := json.Unmarshal([]byte(row.Outputs), &was); err != nil {
			return fmt.Errorf("request %s row %d: the logged outputs are not JSON: %w", req.id, i, err)
		}
		if err := json.Unmarshal([]byte(replayed(i)), &now); err != nil {
			return err
		}
		for _, name := range outNames {
			o := outputs[name]
			if o == nil {
				o = &OutputReport{Name: name}
				outputs[name] = o
			}
			a, b := was[name], now[name]
			if string(a) == string(b) {
				continue
			}
			o.Changed++
			d := compare(a, b)
			o.MaxAbs = math.Max(o.MaxAbs, d.maxAbs)
			o.Argmax = o.Argmax || d.argmax
			if d.flipped {
				o.Flips++
			}
			num := int64(i)
			if row.Row != nil {
				num = *row.Row
			}
			diffs = append(diffs, Diff{RequestID: req.id, Row: num, Output: name, Logged: string(a), Replayed: string(b), MaxAbs: d.maxAbs, Flipped: d.flipped})
		}
	}
	if w != nil && len(diffs) > 0 {
		if _, err := w.Write(diffs); err != nil {
			return fmt.Errorf("writing the differences: %w", err)
		}
	}
	return nil
}

// gather joins a request's logged rows into its input tensors.
func gather(rows []inferencelog.Row) ([]string, []model.Tensor, error) {
	var names []string
	parts := [][]model.Tensor{}
	for i, row := range rows {
		ins, err := inferencelog.ReadInputData(row.InputData)
		if err != nil {
			return nil, nil, fmt.Errorf("row %d: %w", i, err)
		}
		if i == 0 {
			for _, in := range ins {
				names = append(names, in.Name)
			}
			parts = make([][]model.Tensor, len(ins))
		} else if len(ins) != len(names) {
			return nil, nil, fmt.Errorf("row %d has %d inputs, row 0 %d", i, len(ins), len(names))
		}
		for k, in := range ins {
			if in.Name != names[k] {
				return nil, nil, fmt.Errorf("row %d: input %d is %q, row 0's %q", i, k, in.Name, names[k])
			}
			parts[k] = append(parts[k], in.Tensor)
		}
	}
	inputs := make([]model.Tensor, len(names))
	for k := range names {
		t, err := model.ConcatRows(parts[k])
		if err != nil {
			return nil, nil, fmt.Errorf("input %q: %w", names[k], err)
		}
		inputs[k] = t
	}
	return names, inputs, nil
}

type difference struct {
	maxAbs  float64
	flipped bool
	argmax  bool
}

// compare measures how a row's output changed: the largest difference of
// its numbers, and whether its label flipped (a single value changed, or
// for a vector of numbers, which element is largest).
func compare(a, b json.RawMessage) difference {
	var x, y any
	json.Unmarshal(a, &x)
	json.Unmarshal(b, &y)
	xs, ys := numbers(x, nil), numbers(y, nil)
	var d difference
	if len(xs) == len(ys) {
		for i := range xs {
			d.maxAbs = math.Max(d.maxAbs, math.Abs(xs[i]-ys[i]))
		}
	} else {
		d.maxAbs = math.Inf(1)
	}
	_, xa := x.([]any)
	_, ya := y.([]any)
	if !xa && !ya {
		d.flipped = true // a label, or a single score: it changed
		return d
	}
	d.argmax = true
	d.flipped = argmax(xs) != argmax(ys)
	return d
}

// numbers flattens a JSON value's numbers (null, for NaN, as NaN).
func numbers(v any, out []float64) []float64 {
	switch v := v.(type) {
	case float64:
		return append(out, v)
	case nil:
		return append(out, math.NaN())
	case []any:
		for _, e := range v {
			out = numbers(e, out)
		}
	case bool:
		if v {
			return append(out, 1)
		}
		return append(out, 0)
	}
	return out
}

func argmax(xs []float64) int {
	best := -1
	for i, x := range xs {
		if best < 0 || x > xs[best] {
			best = i
		}
	}
	return best
}

// Write prints the report as a table.
func (rep *Report) Write(w io.Writer, target string) {
	fmt.Fprintf(w, "replayed %d requests (%d rows) against %s", rep.Requests, rep.Rows, target)
	if rep.Skipped > 0 {
		fmt.Fprintf(w, "; %d logged failures skipped", rep.Skipped)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-24s %14s %20s %12s\n", "output", "rows changed", "largest difference", "label flips")
	for _, o := range rep.Outputs {
		flips := fmt.Sprint(o.Flips)
		if o.Argmax {
			flips += " (argmax)"
		}
		fmt.Fprintf(w, "%-24s %14s %20s %12s\n", o.Name, fmt.Sprintf("%d of %d", o.Changed, rep.Rows), fmt.Sprintf("%.6g", o.MaxAbs), flips)
	}
	if len(rep.Logged) > 0 {
		fmt.Fprintf(w, "latency a request: logged p50 %s p99 %s; replayed p50 %s p99 %s\n",
			quantile(rep.Logged, 0.5), quantile(rep.Logged, 0.99), quantile(rep.Replayed, 0.5), quantile(rep.Replayed, 0.99))
	}
}

func quantile(ds []time.Duration, q float64) string {
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	d := s[min(len(s)-1, int(q*float64(len(s))))]
	return strings.TrimSpace(fmt.Sprintf("%.3g ms", float64(d.Microseconds())/1000))
}
