package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/modelserve/modelserve/doctor"
)

// checkOptions are doctor --run's own flags.
type checkOptions struct {
	models   []string // registry references
	files    []string // ONNX files, registered in a scratch registry
	batches  string
	duration time.Duration
	callers  int
	out      string
}

func (c *checkOptions) flags(f *pflag.FlagSet) {
	f.StringArrayVar(&c.models, "model", nil, "with --run: a registered model to check, NAME[:VERSION] (repeatable)")
	f.StringArrayVar(&c.files, "model-file", nil, "with --run: an ONNX file to check, registered in a scratch registry (repeatable)")
	f.StringVar(&c.batches, "batch-sizes", "1,64,4096", "with --run: the request sizes, in rows, raw ONNX Runtime and /predict are measured at")
	f.DurationVar(&c.duration, "duration", 3*time.Second, "with --run: how long each measurement lasts (longer when one call takes longer)")
	f.IntVar(&c.callers, "callers", 64, "with --run: concurrent 1-row callers in the batching and flood measurements")
	f.StringVar(&c.out, "out", "", "with --run: also write the report to this file")
}

// runCheck is doctor --run: the flags become doctor.Options, the models
// named are held while they are checked.
func runCheck(ctx context.Context, out io.Writer, g *globals, o *doctorOptions) error {
	c := &o.check
	batches, err := parseBatches(c.batches)
	if err != nil {
		return err
	}
	// serve's defaults, with the placement flags doctor shares with it.
	flags := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	so := newServeOptions(flags)
	so.device, so.workers, so.workersPerGPU, so.intraOp = o.device, o.workers, o.workersPerGPU, o.intraOp
	eo, err := so.engine(flags)
	if err != nil {
		return err
	}
	do := doctor.Options{Files: c.files, Batches: batches, Duration: c.duration, Callers: c.callers, Out: c.out, Engine: eo, Version: version}
	for _, ref := range c.models {
		reg, v, release, err := g.use(ref)
		if err != nil {
			return err
		}
		defer release()
		do.Targets = append(do.Targets, doctor.Target{Reg: reg, Version: v, Source: v.ModelPath()})
	}
	return doctor.Check(ctx, out, do)
}

func parseBatches(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 1<<20 {
			return nil, fmt.Errorf("--batch-sizes %q: give row counts from 1 to 1048576, separated by commas", s)
		}
		out = append(out, n)
	}
	return out, nil
}
