package batchjob

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/modelserve/modelserve/bind"
	"github.com/modelserve/modelserve/engine"
	"github.com/modelserve/modelserve/internal/atomicfile"
	"github.com/modelserve/modelserve/model"
)

// Job is one batch run: a model's function over every row of Input, into
// Output.
type Job struct {
	Input, Output string
	// InputFormat and OutputFormat default to the files' extensions; an
	// output with none known takes the input's format.
	InputFormat, OutputFormat Format
	Signature                 model.Signature
	Function                  model.Function
	// Model is NAME:VERSION, recorded so a resumed run uses the same one.
	Model string
	// IDColumn names the input column of row ids to carry to the output;
	// empty, rows are numbered from 0 in a column named "row".
	IDColumn string
	// ChunkRows is the rows run as one request and written as one part;
	// 0 takes ChunkRowsFor the model.
	ChunkRows int
	// InFlight is how many chunks are read, run or written at once.
	InFlight int
	// Resume continues the interrupted run that wrote Output's parts;
	// Overwrite discards any earlier output. With neither, an existing
	// output is an error.
	Resume, Overwrite bool
	// Progress receives the progress report, redrawn in place when
	// Terminal; nil for none.
	Progress io.Writer
	Terminal bool
}

// Chunk sizes when Job.ChunkRows is 0: DefaultChunkRows rows, fewer for
// wide rows, so that a chunk's inputs and outputs stay near ChunkBytes,
// but never fewer than MinChunkRows.
const (
	DefaultChunkRows = 10000
	MinChunkRows     = 100
	ChunkBytes       = 16 << 20
)

// ChunkRowsFor is the default chunk size for a model's rows.
func ChunkRowsFor(sig model.Signature) int {
	return int(min(DefaultChunkRows, max(MinChunkRows, ChunkBytes/max(sig.RowBytes(), 1))))
}

// Admitter is a loaded version's admission queue (an engine.Version).
type Admitter interface {
	Admit(bodyBytes int64) (*engine.Ticket, error)
}

// Result says what a run did.
type Result struct {
	Rows    int64 // rows in the output
	Ran     int64 // rows this run put through the model
	Chunks  int
	Resumed int // chunks an earlier run had finished
	// Complete: the output was already whole; nothing ran.
	Complete bool
	Elapsed  time.Duration
	// PeakBytes is the most memory the process held resident, 0 when
	// unknown.
	PeakBytes int64
}

// Summary is the line a run ends with: rows, time, rate, peak memory, and
// what an interrupted run had done.
func (r Result) Summary(output string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "wrote %d rows to %s in %s (%.0f rows/s", r.Rows, output, r.Elapsed.Round(time.Millisecond), float64(r.Ran)/r.Elapsed.Seconds())
	if r.PeakBytes > 0 {
		fmt.Fprintf(&b, ", peak memory %.1f MiB", float64(r.PeakBytes)/(1<<20))
	}
	b.WriteString(")")
	if r.Resumed > 0 {
		fmt.Fprintf(&b, "; %d of %d chunks were done by the interrupted run", r.Resumed, r.Chunks)
	}
	return b.String()
}

var peakRE = regexp.MustCompile(`peak memory ([0-9.]+) MiB`)

// PeakFromSummary reads the peak memory back from a Summary line, for
// tools that run predict-batch as a process: the process's own peak, which
// a parent's rusage would not give (it starts at the parent's).
func PeakFromSummary(summary string) (int64, bool) {
	m := peakRE.FindStringSubmatch(summary)
	if m == nil {
		return 0, false
	}
	mib, err := strconv.ParseFloat(m[1], 64)
	return int64(mib * (1 << 20)), err == nil
}

// manifest identifies a run, so that a resume continues the same one.
type manifest struct {
	Input         string    `json:"input"`
	InputSize     int64     `json:"input_size"`
	InputModified time.Time `json:"input_modified"`
	InputFormat   Format    `json:"input_format"`
	OutputFormat  Format    `json:"output_format"`
	Model         string    `json:"model"`
	Function      string    `json:"function"`
	IDColumn      string    `json:"id_column"`
	ChunkRows     int       `json:"chunk_rows"`
}

const manifestName = "manifest.json"

// PartialDir is where a run keeps its finished chunks until the output is
// whole.
func PartialDir(output string) string { return output + ".partial" }

// Plan is a job checked and ready to run: its input open and matched to
// the model, its output's state known.
type Plan struct {
	job      Job
	want     manifest
	complete bool
	src      source
	b        *binding
	sink     sink
}

// Prepare checks a job before any model is loaded: the formats, what an
// earlier run left at the output, and the input's columns against the
// model's arguments.
func Prepare(job Job) (*Plan, error) {
	if job.Resume && job.Overwrite {
		return nil, errors.New("--resume and --overwrite contradict each other: give one")
	}
	if job.ChunkRows == 0 {
		job.ChunkRows = ChunkRowsFor(job.Signature)
	}
	if job.ChunkRows < 0 {
		return nil, fmt.Errorf("--chunk-rows %d: give a positive number", job.ChunkRows)
	}
	job.InFlight = max(job.InFlight, 2)
	if err := formats(&job); err != nil {
		return nil, err
	}
	info, err := os.Stat(job.Input)
	if err != nil {
		return nil, fmt.Errorf("the input: %w", err)
	}
	abs, err := filepath.Abs(job.Input)
	if err != nil {
		return nil, err
	}
	p := &Plan{want: manifest{Input: abs, InputSize: info.Size(), InputModified: info.ModTime().UTC(),
		InputFormat: job.InputFormat, OutputFormat: job.OutputFormat, Model: job.Model,
		Function: job.Function.Name, IDColumn: job.IDColumn, ChunkRows: job.ChunkRows}}
	if p.complete, err = checkOutput(&job, &p.want); err != nil || p.complete {
		p.job = job
		return p, err
	}
	p.job = job

	src, idNode, err := open(job.Input, job.InputFormat, job.IDColumn)
	if err != nil {
		return nil, err
	}
	p.src = src
	if p.b, err = newBinding(job.Signature, job.Function, src.columns(), job.IDColumn); err == nil {
		err = src.bind(p.b)
	}
	if err != nil {
		src.Close()
		return nil, fmt.Errorf("%s: %w", job.Input, err)
	}
	idName := job.IDColumn
	if idName == "" {
		idName = IDColumnDefault
	}
	l, err := newLayout(job.Signature, job.Function, idName)
	if err == nil {
		p.sink, err = newSink(job.OutputFormat, l, idNode)
	}
	if err != nil {
		src.Close()
		return nil, err
	}
	return p, nil
}

// Complete reports that the output is already whole: a resumed job has
// nothing to do.
func (p *Plan) Complete() bool { return p.complete }

// Ignored lists the input's columns the model does not take.
func (p *Plan) Ignored() []string {
	if p.b == nil {
		return nil
	}
	return p.b.ignored
}

// Close closes the input.
func (p *Plan) Close() error {
	if p.src == nil {
		return nil
	}
	return p.src.Close()
}

// Run runs the job to completion through q. Interrupted (ctx canceled, or
// an error), it leaves the finished chunks for a later run with Resume.
func (p *Plan) Run(ctx context.Context, q Admitter) (Result, error) {
	start := time.Now()
	if p.complete {
		return Result{Complete: true}, nil
	}
	done, err := startOutput(p.job, p.want)
	if err != nil {
		return Result{}, err
	}
	r := &run{job: p.job, src: p.src, b: p.b, sink: p.sink, q: q, done: done, partial: PartialDir(p.job.Output),
		progress: newProgress(p.job.Progress, p.job.Terminal)}
	res, err := r.all(ctx)
	r.progress.finish()
	res.Elapsed = time.Since(start)
	if peak, perr := engine.PeakResidentBytes(); perr == nil {
		res.PeakBytes = peak
	}
	return res, err
}

// formats fills in the formats from the file names.
func formats(job *Job) error {
	if job.InputFormat == "" {
		if job.InputFormat = FormatOf(job.Input); job.InputFormat == "" {
			return fmt.Errorf("cannot tell %s's format from its name: name it .csv, .jsonl or .parquet, or give --input-format", job.Input)
		}
	}
	if job.OutputFormat == "" {
		if job.OutputFormat = FormatOf(job.Output); job.OutputFormat == "" {
			job.OutputFormat = job.InputFormat
		}
	}
	return nil
}

// checkOutput applies --resume and --overwrite to what an earlier run
// left, changing nothing yet: complete when the output is whole and the
// job resumes. A resume keeps the interrupted run's chunk size.
func checkOutput(job *Job, want *manifest) (complete bool, err error) {
	partial := PartialDir(job.Output)
	_, outErr := os.Stat(job.Output)
	outExists := outErr == nil
	old, partErr := readManifest(partial)
	partExists := !errors.Is(partErr, fs.ErrNotExist)
	switch {
	case job.Overwrite:
	case job.Resume && partExists:
		if partErr != nil {
			return false, fmt.Errorf("%s: %w; start again with --overwrite", partial, partErr)
		}
		if diff := old.differences(want); diff != "" {
			return false, fmt.Errorf("the interrupted run in %s is not this one (%s): run it with the same input, model and options, or start again with --overwrite", partial, diff)
		}
		want.ChunkRows = old.ChunkRows
		job.ChunkRows = old.ChunkRows
	case job.Resume && outExists:
		return true, nil
	case partExists:
		return false, fmt.Errorf("%s holds an interrupted run (%d chunks done): pass --resume to finish it, or --overwrite to start again", partial, len(partsIn(partial)))
	case outExists:
		return false, fmt.Errorf("%s exists: pass --overwrite to replace it", job.Output)
	}
	return false, nil
}

// startOutput readies the parts folder: emptied for --overwrite, the
// manifest written, and returns the chunks already done.
func startOutput(job Job, want manifest) (map[int]bool, error) {
	partial := PartialDir(job.Output)
	if job.Overwrite {
		if err := os.RemoveAll(partial); err != nil {
			return nil, fmt.Errorf("removing the earlier run's parts: %w", err)
		}
	}
	if err := os.MkdirAll(partial, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", partial, err)
	}
	if err := atomicfile.Write(filepath.Join(partial, manifestName), 0o644, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(want)
	}); err != nil {
		return nil, err
	}
	done := map[int]bool{}
	for _, k := range partsIn(partial) {
		done[k] = true
	}
	return done, nil
}

func readManifest(dir string) (manifest, error) {
	var m manifest
	data, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		if _, statErr := os.Stat(dir); statErr == nil && errors.Is(err, fs.ErrNotExist) {
			return m, fmt.Errorf("it has no %s", manifestName)
		}
		return m, err
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("reading its %s: %w", manifestName, err)
	}
	return m, nil
}

// differences lists what differs between two runs, the chunk size aside:
// a resume keeps the interrupted run's.
func (m manifest) differences(o *manifest) string {
	var d []string
	add := func(what, a, b string) {
		if a != b {
			d = append(d, fmt.Sprintf("%s was %s, now %s", what, a, b))
		}
	}
	add("the input", m.Input, o.Input)
	add("the input's size", fmt.Sprint(m.InputSize), fmt.Sprint(o.InputSize))
	add("the input's modification time", m.InputModified.Format(time.RFC3339Nano), o.InputModified.Format(time.RFC3339Nano))
	add("the input format", string(m.InputFormat), string(o.InputFormat))
	add("the output format", string(m.OutputFormat), string(o.OutputFormat))
	add("the model", m.Model, o.Model)
	add("the function", m.Function, o.Function)
	add("the id column", m.IDColumn, o.IDColumn)
	return strings.Join(d, "; ")
}

// partName is chunk k's part file.
func partName(k int) string { return fmt.Sprintf("part-%08d", k) }

// partsIn lists the chunks whose parts are written, in order.
func partsIn(dir string) []int {
	entries, _ := os.ReadDir(dir)
	var ks []int
	for _, e := range entries {
		var k int
		if _, err := fmt.Sscanf(e.Name(), "part-%08d", &k); err == nil && strings.HasPrefix(e.Name(), partName(k)) {
			ks = append(ks, k)
		}
	}
	slices.Sort(ks)
	return ks
}

func open(path string, f Format, idColumn string) (source, parquet.Node, error) {
	switch f {
	case CSV:
		s, err := openCSV(path)
		return s, nil, err
	case JSONLines:
		s, err := openJSONL(path)
		return s, nil, err
	case Parquet:
		s, err := openParquet(path)
		if err != nil {
			return nil, nil, err
		}
		if idColumn == "" {
			return s, nil, nil
		}
		for _, field := range s.file.Schema().Fields() {
			if field.Name() == idColumn && field.Leaf() {
				return s, field, nil
			}
		}
		return s, nil, nil
	}
	return nil, nil, fmt.Errorf("unknown input format %q", f)
}

func newSink(f Format, l *layout, idNode parquet.Node) (sink, error) {
	switch f {
	case CSV:
		return csvSink{l}, nil
	case JSONLines:
		return jsonlSink{l}, nil
	case Parquet:
		if l.id == IDColumnDefault && idNode == nil {
			idNode = parquet.Int(64)
		}
		return newParquetSink(l, idNode)
	}
	return nil, fmt.Errorf("unknown output format %q", f)
}

// run is one invocation's state.
type run struct {
	job      Job
	src      source
	b        *binding
	sink     sink
	q        Admitter
	done     map[int]bool
	partial  string
	progress *progress
}

// all reads chunks in order and runs up to InFlight of them at once; each
// finished chunk becomes a part. Once every chunk has a part, the parts
// become the output.
func (r *run) all(ctx context.Context) (Result, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var res Result
	free := make(chan *chunk, r.job.InFlight)
	for range r.job.InFlight {
		free <- newChunk(r.b, r.job.ChunkRows)
	}
	work := make(chan *chunk)
	var wg sync.WaitGroup
	for range r.job.InFlight {
		wg.Go(func() {
			for c := range work {
				if err := r.chunk(ctx, c); err != nil {
					cancel(err)
				}
				free <- c
			}
		})
	}
	chunks, readErr := r.read(ctx, free, work, &res)
	close(work)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		if readErr == nil || errors.Is(readErr, context.Canceled) {
			readErr = err
		}
	}
	res.Chunks = chunks
	res.Ran = r.progress.ran.Load()
	if errors.Is(readErr, context.Canceled) {
		readErr = errors.New("interrupted")
	}
	if readErr != nil {
		left := len(partsIn(r.partial))
		var rowErr *bind.Error
		if errors.As(readErr, &rowErr) {
			// A resume would meet the same row: the input must change.
			return res, fmt.Errorf("%w\nfix the input and run again with --overwrite", readErr)
		}
		return res, fmt.Errorf("%w\n%d of the input's chunks are done and kept in %s; run again with --resume to finish", readErr, left, r.partial)
	}
	rows, err := r.assemble(chunks)
	res.Rows = rows
	return res, err
}

// read feeds chunks to the workers, skipping those already done, and
// returns how many chunks the input makes.
func (r *run) read(ctx context.Context, free chan *chunk, work chan<- *chunk, res *Result) (int, error) {
	n := r.job.ChunkRows
	var rows int64
	for k := 0; ; k++ {
		if r.done[k] {
			skipped, err := r.src.skip(n)
			if err != nil {
				return k, err
			}
			rows += int64(skipped)
			res.Resumed++
			r.progress.done.Add(int64(skipped))
			r.report(rows)
			if skipped < n {
				return k + 1, nil
			}
			continue
		}
		var c *chunk
		select {
		case c = <-free:
		case <-ctx.Done():
			return k, context.Cause(ctx)
		}
		c.reset(k, rows)
		err := r.src.read(c)
		if errors.Is(err, io.EOF) {
			free <- c
			if k == 0 {
				// An empty input still gets an output, with its header.
				return 1, r.writePart(c, nil)
			}
			return k, nil
		}
		if err != nil {
			free <- c
			return k, err
		}
		rows += int64(c.rows)
		r.report(rows)
		full := c.full()
		select {
		case work <- c:
		case <-ctx.Done():
			return k, context.Cause(ctx)
		}
		if !full {
			return k + 1, nil
		}
	}
}

func (r *run) report(rows int64) {
	f, total := r.src.position()
	r.progress.position(rows, f, total)
}

// chunk runs one chunk through admission and writes its part.
func (r *run) chunk(ctx context.Context, c *chunk) error {
	outs, release, err := r.predict(ctx, c)
	if err != nil {
		return err
	}
	defer release()
	if err := r.writePart(c, outs); err != nil {
		return err
	}
	r.progress.done.Add(int64(c.rows))
	r.progress.ran.Add(int64(c.rows))
	return nil
}

// predict runs a chunk as one request. The queue refuses work while it is
// full; a batch job then waits its turn instead of failing.
func (r *run) predict(ctx context.Context, c *chunk) ([]model.Tensor, func(), error) {
	wait := 5 * time.Millisecond
	for {
		inputs, err := c.tensors()
		if err != nil {
			return nil, nil, err
		}
		t, err := r.q.Admit(0)
		if err == nil {
			var outs []model.Tensor
			if outs, err = t.Run(ctx, inputs); err == nil {
				return outs, t.Done, nil
			}
			t.Done()
		}
		switch {
		case errors.Is(err, engine.ErrOverloaded):
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return nil, nil, context.Cause(ctx)
			}
			wait = min(2*wait, time.Second)
			continue
		case errors.Is(err, engine.ErrTooLarge):
			return nil, nil, fmt.Errorf("a chunk of %d rows does not fit the memory budget: lower --chunk-rows or raise --memory-budget (%w)", c.rows, err)
		case ctx.Err() != nil:
			return nil, nil, context.Cause(ctx)
		}
		return nil, nil, fmt.Errorf("input rows %d to %d: %w", c.first, c.first+int64(c.rows)-1, err)
	}
}

func (r *run) writePart(c *chunk, outs []model.Tensor) error {
	path := filepath.Join(r.partial, partName(c.index)+"."+r.job.OutputFormat.ext())
	return atomicfile.Write(path, 0o644, func(w io.Writer) error { return r.sink.writePart(w, c, outs) })
}

// assemble joins the parts, in order, into the output, then removes them.
func (r *run) assemble(chunks int) (int64, error) {
	parts := make([]string, chunks)
	for k := range parts {
		parts[k] = filepath.Join(r.partial, partName(k)+"."+r.job.OutputFormat.ext())
		if _, err := os.Stat(parts[k]); err != nil {
			return 0, fmt.Errorf("chunk %d's part is missing: %w; run again with --resume", k, err)
		}
	}
	tmp := filepath.Join(r.partial, "output."+r.job.OutputFormat.ext())
	if err := atomicfile.Write(tmp, 0o644, func(w io.Writer) error { return r.sink.assemble(w, parts) }); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, r.job.Output); err != nil {
		return 0, fmt.Errorf("moving the output into place: %w", err)
	}
	if err := os.RemoveAll(r.partial); err != nil {
		return 0, fmt.Errorf("removing the parts: %w", err)
	}
	return r.progress.done.Load(), nil
}

// ChunkRows is the chunk size the run uses: a resume keeps the
// interrupted run's.
func (p *Plan) ChunkRows() int { return p.job.ChunkRows }

// InFlight is how many chunks the run holds at once.
func (p *Plan) InFlight() int { return p.job.InFlight }
