package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"io"

	"github.com/modelserve/modelserve/engine"
	"github.com/modelserve/modelserve/internal/atomicfile"
	"github.com/modelserve/modelserve/replay"
)

type replayOptions struct {
	serveOptions // the workers, as serve sets them up
	log          string
	loggedModel  string
	function     string
	against      string
	output       string
	token        string
}

func newReplayCmd(g *globals) *cobra.Command {
	o := &replayOptions{}
	o.memoryFraction = engine.DefaultMemoryFraction
	cmd := &cobra.Command{
		Use:   "replay --log DIR --model NAME:VERSION [--against URL] [--output FILE]",
		Short: "Run the requests an inference log kept through another version, and compare",
		Long: `Run the requests an inference log kept (serve --inference-log) through
another version of the model: here, through the engine, or with --against
on a running server (over the Open Inference Protocol, inputs sent
exactly as logged). For each output it reports how many rows changed,
the largest difference, and the label flips (a label's value, or the
largest score of a vector); and the latency of the requests as logged and
as replayed. --output writes every changed row (request, row, output,
both values) as Parquet. Failed requests the log kept are skipped.

The requests replayed are those of the model named by --model (or
--logged-model, when the log's model had another name).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runReplay(cmd, g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.log, "log", "", "the inference log's folder (serve --inference-log)")
	f.StringVar(&o.model, "model", "", "the version to replay against, NAME[:VERSION] (default version: the latest)")
	f.StringVar(&o.loggedModel, "logged-model", "", "the logged model whose requests are replayed (default: --model's name)")
	f.StringVar(&o.function, "function", "", "replay only this function's requests (default: every one)")
	f.StringVar(&o.against, "against", "", "a running server's URL to replay against (default: load the version here)")
	f.StringVar(&o.output, "output", "", "write the changed rows to this Parquet file")
	f.StringVar(&o.token, "token", "", "bearer token for --against (default: $MODELSERVE_TOKEN)")
	f.IntVar(&o.workers, "workers", 0, "workers, each with its own session (default: as serve)")
	f.StringVar(&o.device, "device", "auto", "auto, cpu or cuda")
	o.gpuFlags(f)
	for _, name := range []string{"log", "model"} {
		cmd.MarkFlagRequired(name)
	}
	return cmd
}

func runReplay(cmd *cobra.Command, g *globals, o *replayOptions) error {
	ctx := cmd.Context()
	log, err := g.logger()
	if err != nil {
		return err
	}
	name, version, _ := strings.Cut(o.model, ":")
	logged := o.loggedModel
	if logged == "" {
		logged = name
	}
	var runner replay.Runner
	target := o.model
	if o.against != "" {
		token := o.token
		if token == "" {
			token = os.Getenv("MODELSERVE_TOKEN")
		}
		runner = replay.Remote{URL: strings.TrimSuffix(o.against, "/"), Model: name, Version: version, Token: token}
		target += " at " + o.against
	} else {
		eo, err := o.engine(cmd.Flags())
		if err != nil {
			return err
		}
		reg, v, release, err := g.use(o.model)
		if err != nil {
			return err
		}
		defer release()
		loaded, err := engine.Load(ctx, reg, v, eo, engine.Env{Log: log.With("model", v.Name, "version", v.Version)})
		if err != nil {
			return err
		}
		defer loaded.Close(context.Background())
		runner = replay.Local{Queue: loaded, Signature: v.Signature}
		target = v.Ref() + " (here)"
	}
	run := func(w io.Writer) (*replay.Report, error) {
		return replay.Run(ctx, o.log, runner, replay.Options{Model: logged, Function: o.function, Output: w})
	}
	var rep *replay.Report
	if o.output != "" {
		err = atomicfile.Write(o.output, 0o644, func(w io.Writer) error {
			rep, err = run(w)
			return err
		})
	} else {
		rep, err = run(nil)
	}
	if err != nil {
		return err
	}
	if rep.Requests == 0 && rep.Skipped == 0 {
		return fmt.Errorf("the log in %s has no request of model %q to replay", o.log, logged)
	}
	rep.Write(cmd.OutOrStdout(), target)
	return nil
}
