package batchjob

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelserve/modelserve/admission"
	"github.com/modelserve/modelserve/internal/testenv"
	"github.com/modelserve/modelserve/model"
	"github.com/modelserve/modelserve/workers"
)

// testEngine is a test model behind a real admission queue and worker pool.
type testEngine struct {
	sig   model.Signature
	queue *admission.Queue
}

func newEngine(t *testing.T, name string, sig func(model.Signature) model.Signature) testEngine {
	t.Helper()
	rt := testenv.Runtime(t)
	b, err := os.ReadFile(testenv.Model(t, name))
	if err != nil {
		t.Fatal(err)
	}
	info, err := rt.Inspect(b)
	if err != nil {
		t.Fatal(err)
	}
	all := make([]string, len(info.Outputs))
	for i, o := range info.Outputs {
		all[i] = o.Name
	}
	s := sig(model.Signature{Inputs: info.Inputs, Outputs: info.Outputs, Functions: []model.Function{{Name: "predict", Outputs: all}}})
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	pool, err := workers.Start(context.Background(), rt, workers.Model{Path: testenv.Model(t, name), Inputs: s.Inputs, Outputs: s.FetchedOutputs()},
		workers.Config{Device: workers.CPU, Workers: 2}, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	q, err := admission.New(pool, admission.Config{MaxBatchRows: 4, MaxQueuedRows: 1000, MemoryBudget: 64 << 20}, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		q.Close()
		pool.Close(context.Background())
	})
	return testEngine{sig: s, queue: q}
}

func irisEngine(t *testing.T) testEngine {
	return newEngine(t, "iris", func(s model.Signature) model.Signature {
		s.Functions = []model.Function{{Name: "predict", Outputs: []string{"label"}}, {Name: "predict_proba", Outputs: []string{"probabilities"}}}
		s.Features = map[string][]string{s.Inputs[0].Name: {"sepal_length", "sepal_width", "petal_length", "petal_width"}}
		return s
	})
}

// run prepares and runs a job, failing the test on an error.
func (e testEngine) run(t *testing.T, job Job) Result {
	t.Helper()
	res, err := e.try(context.Background(), job, e.queue)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func (e testEngine) try(ctx context.Context, job Job, q Admitter) (Result, error) {
	job.Signature = e.sig
	if job.Function.Name == "" {
		job.Function = e.sig.DefaultFunction()
	}
	if job.Model == "" {
		job.Model = "test:1"
	}
	p, err := Prepare(job)
	if err != nil {
		return Result{}, err
	}
	defer p.Close()
	return p.Run(ctx, q)
}

// irisRows are the test's input rows: id, then the four features.
var irisRows = func() [][]string {
	var rows [][]string
	for i := range 23 {
		x := float64(i) / 23
		rows = append(rows, []string{fmt.Sprint(100 + i), fmt.Sprintf("%.2f", 4.5+3*x), fmt.Sprintf("%.2f", 2+2*x),
			fmt.Sprintf("%.2f", 1+5*(1-x)), fmt.Sprintf("%.2f", 0.1+2.4*x)})
	}
	return rows
}()

var irisColumns = []string{"id", "sepal_length", "sepal_width", "petal_length", "petal_width"}

type irisParquetRow struct {
	ID          int64   `parquet:"id"`
	SepalLength float32 `parquet:"sepal_length"`
	SepalWidth  float32 `parquet:"sepal_width"`
	PetalLength float32 `parquet:"petal_length"`
	PetalWidth  float32 `parquet:"petal_width"`
}

// writeIris writes irisRows in format f.
func writeIris(t *testing.T, path string, f Format) {
	t.Helper()
	switch f {
	case CSV:
		var b strings.Builder
		w := csv.NewWriter(&b)
		w.Write(irisColumns)
		w.WriteAll(irisRows)
		writeFile(t, path, b.String())
	case JSONLines:
		var b strings.Builder
		for _, r := range irisRows {
			fmt.Fprintf(&b, `{"id": %s, "sepal_length": %s, "sepal_width": %s, "petal_length": %s, "petal_width": %s, "extra": "x"}`+"\n", r[0], r[1], r[2], r[3], r[4])
		}
		writeFile(t, path, b.String())
	case Parquet:
		var rows []irisParquetRow
		for _, r := range irisRows {
			var p irisParquetRow
			fmt.Sscan(strings.Join(r, " "), &p.ID, &p.SepalLength, &p.SepalWidth, &p.PetalLength, &p.PetalWidth)
			rows = append(rows, p)
		}
		if err := parquet.WriteFile(path, rows); err != nil {
			t.Fatal(err)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// readTable reads any output back as text cells, the header first: CSV
// as written, JSON Lines as each value's JSON, Parquet each value's text
// (lists as JSON arrays).
func readTable(t *testing.T, path string) [][]string {
	t.Helper()
	switch FormatOf(path) {
	case CSV:
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		rows, err := csv.NewReader(f).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		return rows
	case JSONLines:
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var out [][]string
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			keys, err := objectKeys([]byte(line))
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			var obj map[string]json.RawMessage
			json.Unmarshal([]byte(line), &obj)
			if out == nil {
				out = append(out, keys)
			}
			var row []string
			for _, k := range keys {
				row = append(row, strings.Trim(string(obj[k]), `"`))
			}
			out = append(out, row)
		}
		return out
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, _ := f.Stat()
	pf, err := parquet.OpenFile(f, info.Size())
	if err != nil {
		t.Fatal(err)
	}
	var header []string
	for _, field := range pf.Schema().Fields() {
		header = append(header, field.Name())
	}
	out := [][]string{header}
	rows := pf.RowGroups()
	for _, rg := range rows {
		rr := rg.Rows()
		buf := make([]parquet.Row, 64)
		for {
			n, err := rr.ReadRows(buf)
			for _, row := range buf[:n] {
				cells := make([]string, len(header))
				lists := make([][]string, len(header))
				for _, v := range row {
					c := v.Column()
					if !pf.Schema().Fields()[c].Leaf() { // a list
						lists[c] = append(lists[c], v.String())
						continue
					}
					cells[c] = v.String()
				}
				for c, l := range lists {
					if l != nil {
						cells[c] = "[" + strings.Join(l, ",") + "]"
					}
				}
				out = append(out, cells)
			}
			if err != nil {
				break
			}
		}
		rr.Close()
	}
	return out
}

// reference runs the whole of irisRows as one request: what every format
// must give, row for row.
func (e testEngine) reference(t *testing.T) []string {
	t.Helper()
	x, _ := model.NewTensor(model.Float32, model.Shape{int64(len(irisRows)), 4})
	d := x.Data.([]float32)
	for i, r := range irisRows {
		for j := range 4 {
			fmt.Sscan(r[1+j], &d[4*i+j])
		}
	}
	ticket, err := e.queue.Admit(0)
	if err != nil {
		t.Fatal(err)
	}
	defer ticket.Done()
	outs, err := ticket.Run(context.Background(), []model.Tensor{x})
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, l := range outs[0].Data.([]int64) {
		labels = append(labels, fmt.Sprint(l))
	}
	return labels
}

func TestRun_everyFormatToEveryFormat(t *testing.T) {
	e := irisEngine(t)
	want := e.reference(t)
	dir := t.TempDir()
	formats := []Format{CSV, JSONLines, Parquet}
	for _, in := range formats {
		input := filepath.Join(dir, "in."+in.ext())
		writeIris(t, input, in)
		for _, out := range formats {
			t.Run(fmt.Sprintf("%s to %s", in, out), func(t *testing.T) {
				output := filepath.Join(dir, string(in)+"-out."+out.ext())
				res := e.run(t, Job{Input: input, Output: output, IDColumn: "id", ChunkRows: 5, InFlight: 3})
				if res.Rows != 23 || res.Chunks != 5 || res.Ran != 23 {
					t.Errorf("result %+v, want 23 rows in 5 chunks", res)
				}
				table := readTable(t, output)
				if !slices.Equal(table[0], []string{"id", "label"}) {
					t.Errorf("header %v", table[0])
				}
				if len(table) != 24 {
					t.Fatalf("%d rows, want 23", len(table)-1)
				}
				for i, row := range table[1:] {
					if row[0] != irisRows[i][0] || row[1] != want[i] {
						t.Errorf("row %d = %v, want [%s %s]", i, row, irisRows[i][0], want[i])
					}
				}
				if _, err := os.Stat(PartialDir(output)); err == nil {
					t.Error("the parts were left behind")
				}
			})
		}
	}
}

// TestRun_rowsAreNumberedWithoutAnIDColumn: with no id column the output's
// first column, "row", numbers the input's rows from 0, across chunks.
func TestRun_rowsAreNumberedWithoutAnIDColumn(t *testing.T) {
	e := irisEngine(t)
	dir := t.TempDir()
	input := filepath.Join(dir, "in.parquet")
	writeIris(t, input, Parquet)
	fn, _ := e.sig.Function("predict_proba")
	output := filepath.Join(dir, "out.csv")
	e.run(t, Job{Input: input, Output: output, ChunkRows: 4, Function: fn})
	table := readTable(t, output)
	if !slices.Equal(table[0], []string{"row", "probabilities"}) {
		t.Fatalf("header %v", table[0])
	}
	for i, row := range table[1:] {
		var p []float64
		if row[0] != fmt.Sprint(i) || json.Unmarshal([]byte(row[1]), &p) != nil || len(p) != 3 {
			t.Errorf("row %d = %v", i, row)
		}
	}
}

func TestRun_arraysAndTypes(t *testing.T) {
	tests := []struct {
		model, file, input, want string
	}{
		{"vectors", "in.csv", "embedding,weight\n\"[3,4,0,0,0,0,0,0]\",2\n\"[0,0,0,0,0,0,0,1]\",0.5\n",
			"row,norm,scaled,top\n0,5,\"[6,8,0,0,0,0,0,0]\",1\n1,1,\"[0,0,0,0,0,0,0,0.5]\",7\n"},
		{"image", "in.jsonl", `{"pixels": [[[1,2,3],[4,5,6],[7,8,9]], [[1,1,1],[1,1,1],[1,1,1]]]}` + "\n" +
			`{"pixels": [1,2,3,4,5,6,7,8,9, 1,1,1,1,1,1,1,1,1]}` + "\n",
			`{"row":0,"channel_max":[9,1],"grid":[[2,3,4],[5,6,7],[8,9,10]]}` + "\n" +
				`{"row":1,"channel_max":[9,1],"grid":[[2,3,4],[5,6,7],[8,9,10]]}` + "\n"},
		{"types", "in.csv", "flag,u8,i32,f64\ntrue,200,-7,0.25\nfalse,1,2.0,1\n",
			"row,sum,not_flag,doubled\n0,193.25,false,-14\n1,4,true,4\n"},
		{"types", "in.jsonl", `{"i32": -7, "u8": 200, "f64": 0.25, "flag": true}` + "\n" + `{"i32": "2", "u8": 1, "f64": 1, "flag": false}` + "\n",
			`{"row":0,"sum":193.25,"not_flag":false,"doubled":-14}` + "\n" + `{"row":1,"sum":4,"not_flag":true,"doubled":4}` + "\n"},
		{"strings", "in.jsonl", `{"COLOR": "RED", "amount": 2.5}` + "\n\n" + `{"COLOR": "violet", "amount": 3}` + "\n",
			`{"row":0,"normalized":"red","code":1,"score":2.5}` + "\n" + `{"row":1,"normalized":"violet","code":0,"score":0}` + "\n"},
		{"sequence", "in.csv", "tokens\n\"[1,0,3]\"\n\"[0,0,4]\"\n", "row,count\n0,2\n1,1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.model+" "+tt.file, func(t *testing.T) {
			e := newEngine(t, tt.model, func(s model.Signature) model.Signature { return s })
			dir := t.TempDir()
			input := filepath.Join(dir, tt.file)
			writeFile(t, input, tt.input)
			output := filepath.Join(dir, "out"+filepath.Ext(tt.file))
			e.run(t, Job{Input: input, Output: output})
			got, _ := os.ReadFile(output)
			if string(got) != tt.want {
				t.Errorf("output\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// TestRun_rowsOfAChunkShareAShape: an input with an open dimension takes
// the first row's length for the chunk; a row of another length is named.
func TestRun_rowsOfAChunkShareAShape(t *testing.T) {
	e := newEngine(t, "sequence", func(s model.Signature) model.Signature { return s })
	dir := t.TempDir()
	input := filepath.Join(dir, "in.csv")
	writeFile(t, input, "tokens\n\"[1,0,3]\"\n\"[0,4]\"\n")
	_, err := e.try(context.Background(), Job{Input: input, Output: filepath.Join(dir, "out.csv")}, e.queue)
	want := `row 1, column "tokens": an array of shape [2] where this chunk's earlier rows have [3]`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v\nwant %q", err, want)
	}
}

// TestRun_parquetListsInAndOut: a list column fills a vector input, and
// array outputs come back as lists, nested as the output is.
func TestRun_parquetListsInAndOut(t *testing.T) {
	dir := t.TempDir()
	type vectorsIn struct {
		Embedding []float32 `parquet:"embedding,list"`
		Weight    float64   `parquet:"weight"`
	}
	input := filepath.Join(dir, "vectors.parquet")
	if err := parquet.WriteFile(input, []vectorsIn{{[]float32{3, 4, 0, 0, 0, 0, 0, 0}, 2}, {[]float32{0, 0, 0, 0, 0, 0, 0, 1}, 0.5}}); err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, "vectors", func(s model.Signature) model.Signature { return s })
	output := filepath.Join(dir, "vectors-out.parquet")
	e.run(t, Job{Input: input, Output: output})
	type vectorsOut struct {
		Row    int64     `parquet:"row"`
		Norm   float32   `parquet:"norm"`
		Scaled []float32 `parquet:"scaled,list"`
		Top    int64     `parquet:"top"`
	}
	got, err := parquet.ReadFile[vectorsOut](output)
	if err != nil {
		t.Fatal(err)
	}
	want := []vectorsOut{{0, 5, []float32{6, 8, 0, 0, 0, 0, 0, 0}, 1}, {1, 1, []float32{0, 0, 0, 0, 0, 0, 0, 0.5}, 7}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("vectors: %v, want %v", got, want)
	}
	if header := readTable(t, output)[0]; !slices.Equal(header, []string{"row", "norm", "scaled", "top"}) {
		t.Errorf("columns %v, want the id then the outputs in order", header)
	}

	img := newEngine(t, "image", func(s model.Signature) model.Signature { return s })
	imgIn := filepath.Join(dir, "image.jsonl")
	writeFile(t, imgIn, `{"pixels": [1,2,3,4,5,6,7,8,9, 1,1,1,1,1,1,1,1,1]}`+"\n")
	imgOut := filepath.Join(dir, "image-out.parquet")
	img.run(t, Job{Input: imgIn, Output: imgOut})
	type imageOut struct {
		Row        int64       `parquet:"row"`
		ChannelMax []float32   `parquet:"channel_max,list"`
		Grid       [][]float32 `parquet:"grid,list"`
	}
	gotImg, err := parquet.ReadFile[imageOut](imgOut)
	if err != nil {
		t.Fatal(err)
	}
	wantImg := []imageOut{{0, []float32{9, 1}, [][]float32{{2, 3, 4}, {5, 6, 7}, {8, 9, 10}}}}
	if fmt.Sprint(gotImg) != fmt.Sprint(wantImg) {
		t.Errorf("image: %v, want %v", gotImg, wantImg)
	}
}

func TestRun_errorsNameTheRowAndColumn(t *testing.T) {
	e := irisEngine(t)
	header := "id,sepal_length,sepal_width,petal_length,petal_width\n"
	good := "10,5.1,3.5,1.4,0.2\n"
	tests := []struct {
		name, file, input, want string
	}{
		{"a word for a number", "in.csv", header + good + "11,5.1,abc,1.4,0.2\n",
			`row 1 (id 11), column "sepal_width": expected FLOAT (float32), got "abc"`},
		{"an empty cell", "in.csv", header + good + good + "12,5.1,3.5,,0.2\n",
			`row 2 (id 12), column "petal_length": expected FLOAT (float32), got null; this function does not take nulls`},
		{"a short record", "in.csv", header + good + "11,5.1\n", "wrong number of fields"},
		{"a missing key", "in.jsonl", `{"id": 1, "sepal_length": 1, "sepal_width": 1, "petal_length": 1, "petal_width": 1}` + "\n" + `{"id": 2, "sepal_length": 1}` + "\n",
			`row 1 (id 2), column "sepal_width": line 2 has no "sepal_width" key`},
		{"an array for a number", "in.jsonl", `{"id": "a", "sepal_length": [1], "sepal_width": 1, "petal_length": 1, "petal_width": 1}` + "\n",
			`row 0 (id a), column "sepal_length": expected FLOAT (float32), got an array`},
		{"a missing column", "in.csv", "id,sepal_length,sepal_width,petal_length\n1,1,1,1\n",
			"the input has no column for petal_width; the model takes 4 arguments (sepal_length FLOAT, sepal_width FLOAT, petal_length FLOAT, petal_width FLOAT) or 1 argument (features ARRAY)"},
		{"features twice", "in.csv", "features,sepal_length,sepal_width,petal_length,petal_width\n\"[1,1,1,1]\",1,1,1,1\n",
			`column "features": input "features" is given both whole and as feature columns`},
		{"a short array", "in.csv", "features\n\"[1,2,3,4]\"\n\"[1,2,3]\"\n",
			`row 1, column "features": an array of shape [3] where [4] belongs`},
		{"a cell nested past the input's shape", "in.csv", "features\n\"[[[[1,2,3,4]]]]\"\n",
			`row 0, column "features": the arrays nest deeper than the input's shape [4]`},
		{"a line nested past the limit", "in.jsonl", `{"id": 1, "sepal_length": 1, "sepal_width": 1, "petal_length": 1, "petal_width": 1}` + "\n" +
			`{"id": 2, "x": ` + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + `, "sepal_length": 1}` + "\n",
			`row 1: line 2 nests arrays and objects more than 64 levels deep (at byte 78)`},
		{"no id column", "in.csv", "sepal_length,sepal_width,petal_length,petal_width\n1,1,1,1\n",
			`the id column "id" is not in the input; its columns are sepal_length, sepal_width, petal_length, petal_width`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			input := filepath.Join(dir, tt.file)
			writeFile(t, input, tt.input)
			id := "id"
			if !strings.HasPrefix(tt.input, "id,") && !strings.HasPrefix(tt.input, "{") && tt.name != "no id column" {
				id = ""
			}
			_, err := e.try(context.Background(), Job{Input: input, Output: filepath.Join(dir, "out.csv"), IDColumn: id}, e.queue)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v\nwant %q", err, tt.want)
			}
		})
	}
}

// cancelAfter admits n requests, then cancels the run: an interruption
// after n chunks.
type cancelAfter struct {
	q      *admission.Queue
	n      int32
	cancel context.CancelFunc
}

func (c *cancelAfter) Admit(b int64) (*admission.Ticket, error) {
	if atomic.AddInt32(&c.n, -1) < 0 {
		c.cancel()
	}
	return c.q.Admit(b)
}

func TestRun_resumeFinishesWithoutDuplicates(t *testing.T) {
	e := irisEngine(t)
	for _, f := range []Format{CSV, JSONLines, Parquet} {
		t.Run(string(f), func(t *testing.T) {
			dir := t.TempDir()
			input := filepath.Join(dir, "in."+f.ext())
			writeIris(t, input, f)
			clean := filepath.Join(dir, "clean."+f.ext())
			e.run(t, Job{Input: input, Output: clean, IDColumn: "id", ChunkRows: 3})

			output := filepath.Join(dir, "out."+f.ext())
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_, err := e.try(ctx, Job{Input: input, Output: output, IDColumn: "id", ChunkRows: 3, InFlight: 2},
				&cancelAfter{q: e.queue, n: 4, cancel: cancel})
			if err == nil || !strings.Contains(err.Error(), "interrupted") || !strings.Contains(err.Error(), "--resume") {
				t.Fatalf("interrupted run: %v", err)
			}
			done := len(partsIn(PartialDir(output)))
			if done == 0 || done >= 8 {
				t.Fatalf("%d of 8 chunks done when interrupted", done)
			}
			// A resume with another chunk size keeps the first run's.
			res := e.run(t, Job{Input: input, Output: output, IDColumn: "id", ChunkRows: 7, Resume: true})
			if res.Resumed != done || res.Ran != int64(23-3*done) || res.Rows != 23 {
				t.Errorf("resume %+v; %d chunks were done", res, done)
			}
			a, _ := os.ReadFile(clean)
			b, _ := os.ReadFile(output)
			if string(a) != string(b) {
				t.Errorf("the resumed output differs from a clean run's:\n%s\nwant\n%s", b, a)
			}
		})
	}
}

func TestPrepare_anExistingOutput(t *testing.T) {
	e := irisEngine(t)
	dir := t.TempDir()
	input := filepath.Join(dir, "in.csv")
	writeIris(t, input, CSV)
	output := filepath.Join(dir, "out.csv")
	job := Job{Input: input, Output: output, IDColumn: "id", ChunkRows: 5}
	e.run(t, job)
	ctx := context.Background()

	if _, err := e.try(ctx, job, e.queue); err == nil || !strings.Contains(err.Error(), "exists: pass --overwrite") {
		t.Errorf("an existing output: %v", err)
	}
	resume := job
	resume.Resume = true
	if res, err := e.try(ctx, resume, e.queue); err != nil || !res.Complete {
		t.Errorf("resuming a finished run: %+v %v", res, err)
	}
	both := resume
	both.Overwrite = true
	if _, err := e.try(ctx, both, e.queue); err == nil || !strings.Contains(err.Error(), "contradict") {
		t.Errorf("--resume with --overwrite: %v", err)
	}

	// An interrupted run: refused without a flag, refused for another input.
	os.Remove(output)
	cctx, cancel := context.WithCancel(ctx)
	e.try(cctx, job, &cancelAfter{q: e.queue, n: 1, cancel: cancel})
	cancel()
	if _, err := e.try(ctx, job, e.queue); err == nil || !strings.Contains(err.Error(), "holds an interrupted run") {
		t.Errorf("an interrupted run without --resume: %v", err)
	}
	other := filepath.Join(dir, "other.csv")
	writeFile(t, other, "id,sepal_length,sepal_width,petal_length,petal_width\n1,1,1,1,1\n")
	moved := resume
	moved.Input = other
	if _, err := e.try(ctx, moved, e.queue); err == nil || !strings.Contains(err.Error(), "is not this one (the input was") {
		t.Errorf("resuming with another input: %v", err)
	}
	over := job
	over.Overwrite = true
	if res := e.run(t, over); res.Rows != 23 || res.Resumed != 0 {
		t.Errorf("--overwrite: %+v", res)
	}
}

func TestChunkRowsFor_keepsChunksNearTheirBytes(t *testing.T) {
	spec := func(dt model.DType, shape ...int64) model.Spec {
		return model.Spec{Name: "x", DType: dt, Shape: append(model.Shape{-1}, shape...)}
	}
	tests := []struct {
		name string
		in   model.Spec
		want int
	}{
		{"narrow rows take the default", spec(model.Float32, 4), DefaultChunkRows},
		{"4 KiB rows", spec(model.Float32, 1024), ChunkBytes / (4096 + 4)},
		{"images take the floor", spec(model.Float32, 3, 224, 224), MinChunkRows},
	}
	for _, tt := range tests {
		sig := model.Signature{Inputs: []model.Spec{tt.in}, Outputs: []model.Spec{{Name: "y", DType: model.Float32, Shape: model.Shape{-1}}},
			Functions: []model.Function{{Name: "predict", Outputs: []string{"y"}}}}
		if got := ChunkRowsFor(sig); got != tt.want {
			t.Errorf("%s: %d rows, want %d", tt.name, got, tt.want)
		}
	}
}
