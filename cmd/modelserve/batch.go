package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/modelserve/modelserve/deploy/batchjob"
	"github.com/modelserve/modelserve/engine"
	"github.com/modelserve/modelserve/internal/liveline"
)

type batchOptions struct {
	serveOptions // the workers and admission, as serve sets them up
	function     string
	input        string
	output       string
	inputFormat  string
	outputFormat string
	idColumn     string
	chunkRows    int
	resume       bool
	overwrite    bool
}

// batchMaxBatchRows is a batch job's batch size when the registry sets
// none: larger than serving's, since no caller waits on one row.
const batchMaxBatchRows = 1024

func newPredictBatchCmd(g *globals) *cobra.Command {
	o := &batchOptions{}
	cmd := &cobra.Command{
		Use:   "predict-batch --model NAME[:VERSION] --input FILE --output FILE",
		Short: "Run a model over a CSV, JSON Lines or Parquet file",
		Long: `Run a model's function over every row of a file — CSV, JSON Lines or
Parquet, told by the extension — through the same workers and admission
queue as serve, and write the outputs with each row's id.

Columns are matched to the model's arguments by name, as serve matches a
wide row's keys (modelserve registry show lists them); other columns are
ignored. A feature-matrix input comes as one column per feature or as one
column of arrays. In CSV an array is written as JSON; in Parquet it is a
list. The output holds the id column (--id-column, or "row": the row's
number in the input, from 0), then one column per output of the function.

The input is read and run a chunk at a time, so memory stays flat however
large it is; each finished chunk is kept under OUTPUT.partial/ until the
output is whole. --resume finishes an interrupted run from the chunks it
left, --overwrite starts again; with neither, an existing output is an
error. On a terminal a progress line shows rows, rows/s and the time left.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return predictBatch(cmd, g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.model, "model", "", "model to run, NAME[:VERSION] (default version: the latest)")
	f.StringVar(&o.function, "function", "", "function to run (default: predict, or the model's first)")
	f.StringVar(&o.input, "input", "", "file of rows: .csv (with a header line), .jsonl or .parquet")
	f.StringVar(&o.output, "output", "", "file to write, in the format its extension names (default: the input's)")
	f.StringVar(&o.inputFormat, "input-format", "", "csv, jsonl or parquet, when the input's extension does not say")
	f.StringVar(&o.outputFormat, "output-format", "", "csv, jsonl or parquet, when the output's extension does not say")
	f.StringVar(&o.idColumn, "id-column", "", "input column of row ids to carry to the output (default: number the rows from 0)")
	f.IntVar(&o.chunkRows, "chunk-rows", 0, fmt.Sprintf("rows run as one request and kept as one part (default: %d, fewer for rows wider than %d bytes); a resume keeps the interrupted run's",
		batchjob.DefaultChunkRows, batchjob.ChunkBytes/batchjob.DefaultChunkRows))
	f.BoolVar(&o.resume, "resume", false, "finish an interrupted run from the chunks it left")
	f.BoolVar(&o.overwrite, "overwrite", false, "replace the output and discard an interrupted run")
	f.IntVar(&o.workers, "workers", 0, "workers, each with its own session (default: as serve)")
	f.IntVar(&o.intraOp, "intra-op-threads", 0, "threads per session (default: cores divided among the workers)")
	f.StringVar(&o.device, "device", "auto", "auto, cpu or cuda")
	f.IntVar(&o.maxBatchRows, "max-batch-rows", 0, fmt.Sprintf("most rows in one ONNX Runtime call (default: registry setting, else %d)", batchMaxBatchRows))
	f.Var(&o.memoryBudget, "memory-budget", "bytes the chunks in flight may hold, e.g. 2Gi (default: --memory-fraction of the memory left once the model is loaded)")
	f.Float64Var(&o.memoryFraction, "memory-fraction", 0.5, "share of the memory left after loading that becomes the budget")
	o.gpuFlags(f)
	for _, name := range []string{"model", "input", "output"} {
		cmd.MarkFlagRequired(name)
	}
	return cmd
}

func predictBatch(cmd *cobra.Command, g *globals, o *batchOptions) error {
	ctx := cmd.Context()
	log, err := g.logger()
	if err != nil {
		return err
	}
	eo, err := o.engine(cmd.Flags())
	if err != nil {
		return err
	}
	job := batchjob.Job{Input: o.input, Output: o.output, IDColumn: o.idColumn, ChunkRows: o.chunkRows,
		Resume: o.resume, Overwrite: o.overwrite, Progress: cmd.ErrOrStderr(), Terminal: liveline.IsTerminal(cmd.ErrOrStderr())}
	for _, f := range []struct {
		flag string
		dst  *batchjob.Format
	}{{o.inputFormat, &job.InputFormat}, {o.outputFormat, &job.OutputFormat}} {
		if f.flag != "" {
			if *f.dst, err = batchjob.ParseFormat(f.flag); err != nil {
				return err
			}
		}
	}
	reg, v, release, err := g.use(o.model)
	if err != nil {
		return err
	}
	defer release()
	job.Model, job.Signature = v.Ref(), v.Signature
	job.Function = v.Signature.DefaultFunction()
	if o.function != "" {
		var ok bool
		if job.Function, ok = v.Signature.Function(o.function); !ok {
			names := make([]string, len(v.Signature.Functions))
			for i, fn := range v.Signature.Functions {
				names[i] = fn.Name
			}
			return fmt.Errorf("%s has no function %q; its functions are %s", v.Ref(), o.function, strings.Join(names, ", "))
		}
	}
	// Enough chunks in flight that the workers never wait on reading or
	// writing; each is at most about batchjob.ChunkBytes.
	job.InFlight = 6
	plan, err := batchjob.Prepare(job)
	if err != nil {
		return err
	}
	defer plan.Close()
	out := cmd.OutOrStdout()
	if plan.Complete() {
		fmt.Fprintf(out, "%s is already complete; nothing to do (--overwrite runs it again)\n", o.output)
		return nil
	}
	if len(plan.Ignored()) > 0 {
		log.Info("input columns the model does not take are left out", "columns", plan.Ignored())
	}
	if eo.Admission.MaxBatchRows == 0 && v.Settings.MaxBatchRows == 0 {
		eo.Admission.MaxBatchRows = batchMaxBatchRows
	}
	// The job is the queue's only caller: it may queue every chunk in
	// flight, and a free worker runs what is queued at once.
	eo.Admission.MaxQueue = plan.InFlight() + 1
	eo.Admission.MaxQueueRows = plan.ChunkRows() * plan.InFlight()
	eo.Admission.MaxBatchDelay = &engine.BatchDelay{}
	log = log.With("model", v.Name, "version", v.Version)
	version, err := engine.Load(ctx, reg, v, eo, engine.Env{Log: log})
	if err != nil {
		return err
	}
	defer version.Close(context.Background())

	res, err := plan.Run(ctx, version)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, res.Summary(o.output))
	return nil
}
