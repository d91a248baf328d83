package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/modelserve/modelserve/engine"
	"github.com/modelserve/modelserve/internal/bytesize"
	"github.com/modelserve/modelserve/registry"
	"github.com/spf13/cobra"
)

// settingsFlags are the serving settings a version can carry.
type settingsFlags struct {
	cmd               *cobra.Command
	maxBatchRows      int
	maxBatchDelay     engine.BatchDelay
	deviceBytesPerRow byteSize
	gpuMemLimit       byteSize
	arenaStrategy     string
	convAlgoSearch    string
}

func (s *settingsFlags) register(cmd *cobra.Command) {
	s.cmd = cmd
	f := cmd.Flags()
	f.IntVar(&s.maxBatchRows, "max-batch-rows", 0, "serve this version with at most this many rows per ONNX Runtime call")
	f.Var((*batchDelayFlag)(&s.maxBatchDelay), "max-batch-delay", "serve this version waiting up to this long to fill a batch: auto or a duration")
	f.Var(&s.deviceBytesPerRow, "device-bytes-per-row", "on a GPU, the device memory one row takes, for admission (default: measured at load)")
	f.Var(&s.gpuMemLimit, "gpu-mem-limit", "on a GPU, cap each session's memory arena, e.g. 8Gi")
	f.StringVar(&s.arenaStrategy, "arena-extend-strategy", "", "on a GPU, how the arena grows: "+engine.SameAsRequested+" or "+engine.NextPowerOfTwo)
	f.StringVar(&s.convAlgoSearch, "cudnn-conv-algo-search", "", "on a GPU, how cuDNN picks convolution algorithms: EXHAUSTIVE, HEURISTIC or DEFAULT")
}

// apply sets, over base, the settings given on the command line.
func (s *settingsFlags) apply(base registry.Settings) (registry.Settings, error) {
	f := s.cmd.Flags()
	if f.Changed("max-batch-rows") {
		base.MaxBatchRows = s.maxBatchRows
	}
	if f.Changed("max-batch-delay") {
		base.MaxBatchDelay = s.maxBatchDelay.String()
	}
	if f.Changed("device-bytes-per-row") {
		base.DeviceBytesPerRow = int64(s.deviceBytesPerRow)
	}
	if f.Changed("gpu-mem-limit") {
		base.GPUMemLimit = int64(s.gpuMemLimit)
	}
	if f.Changed("arena-extend-strategy") {
		base.ArenaExtendStrategy = s.arenaStrategy
	}
	if f.Changed("cudnn-conv-algo-search") {
		base.ConvAlgoSearch = strings.ToUpper(s.convAlgoSearch)
	}
	err := engine.ValidateGPUSettings(base.ArenaExtendStrategy, base.ConvAlgoSearch)
	return base, err
}

// batchDelayFlag reads --max-batch-delay: auto or a duration.
type batchDelayFlag engine.BatchDelay

func (f *batchDelayFlag) Set(s string) error {
	d, err := engine.ParseBatchDelay(s)
	*f = batchDelayFlag(d)
	return err
}

func (f *batchDelayFlag) String() string { return engine.BatchDelay(*f).String() }
func (f *batchDelayFlag) Type() string   { return "delay" }

func newSetCmd(g *globals) *cobra.Command {
	var settings settingsFlags
	cmd := &cobra.Command{
		Use:   "set NAME:VERSION [--max-batch-rows N] [--max-batch-delay D]",
		Short: "Change a version's serving settings (services pick them up when they restart)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !strings.Contains(args[0], ":") {
				return fmt.Errorf("set needs NAME:VERSION; %q names no version", args[0])
			}
			reg, v, err := g.version(args[0])
			if err != nil {
				return err
			}
			st, err := settings.apply(v.Settings)
			if err != nil {
				return err
			}
			if v, err = reg.SetSettings(v.Name, v.Version, st); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", v.Ref(), describeSettings(v.Settings))
			return nil
		},
	}
	settings.register(cmd)
	return cmd
}

func describeSettings(st registry.Settings) string {
	rows, delay := "the server's default", "the server's default"
	if st.MaxBatchRows > 0 {
		rows = strconv.Itoa(st.MaxBatchRows)
	}
	if st.MaxBatchDelay != "" {
		delay = st.MaxBatchDelay
	}
	s := "max batch rows " + rows + ", max batch delay " + delay
	if st.DeviceBytesPerRow > 0 {
		s += ", device bytes per row " + bytesize.Format(st.DeviceBytesPerRow)
	}
	if st.GPUMemLimit > 0 {
		s += ", GPU memory limit " + bytesize.Format(st.GPUMemLimit)
	}
	if st.ArenaExtendStrategy != "" {
		s += ", arena " + st.ArenaExtendStrategy
	}
	if st.ConvAlgoSearch != "" {
		s += ", cuDNN search " + st.ConvAlgoSearch
	}
	return s
}
