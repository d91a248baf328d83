package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/modelserve/modelserve/engine"
	"github.com/modelserve/modelserve/gpu"
	"github.com/modelserve/modelserve/internal/bytesize"
	"github.com/modelserve/modelserve/onnxrt"
)

type doctorOptions struct {
	device        string
	workers       int
	workersPerGPU int
	intraOp       int

	run   bool
	check checkOptions
}

func newDoctorCmd(g *globals) *cobra.Command {
	o := &doctorOptions{}
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Print what a bug report needs: ONNX Runtime, NVIDIA driver, GPUs, CUDA libraries, the worker plan",
		Long: `Print what a user needs before filing a bug: the ONNX Runtime found and its
execution providers, NVML and the driver, the GPUs this process may use,
the CUDA libraries the providers need (found or missing), and the worker
plan serve would choose with the same --device and --workers flags.

With --run it also proves the plan: it loads each model given on the
device serve would choose, measures raw ONNX Runtime against /predict on
loopback at each --batch-sizes, 1-row callers with dynamic batching on and
off, device (or host) memory, what admission does with a request larger
than the memory it may fill and with a flood, and, on a GPU, the GPU
metrics under load. It prints a markdown report and exits non-zero if a
check failed. With no GPU it says so at once; --device cpu runs the same
check on the CPU.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.run {
				return runCheck(cmd.Context(), cmd.OutOrStdout(), g, o)
			}
			return report(cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.device, "device", "auto", "the --device serve would be given: auto, cpu or cuda")
	f.IntVar(&o.workers, "workers", 0, "the --workers serve would be given")
	f.IntVar(&o.workersPerGPU, "workers-per-gpu", 1, "the --workers-per-gpu serve would be given")
	f.IntVar(&o.intraOp, "intra-op-threads", 0, "the --intra-op-threads serve would be given")
	f.BoolVar(&o.run, "run", false, "load the models given and measure them on the device serve would choose (see above)")
	o.check.flags(f)
	return cmd
}

func report(out io.Writer, o *doctorOptions) error {
	device, err := engine.ParseDevice(o.device)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	defer w.Flush()
	line := func(k, format string, args ...any) { fmt.Fprintf(w, "  %s\t%s\n", k, fmt.Sprintf(format, args...)) }
	fmt.Fprintf(w, "modelserve %s (%s %s/%s, %d CPUs)\n\nONNX Runtime\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0))
	rt, err := onnxrt.Load("")
	if err != nil {
		line("library", "none: %v", err)
	} else {
		line("library", "%s (%s; this modelserve is tested with %s, its GPU images with %s)", rt.LibraryPath, rt.Version, onnxrt.PinnedVersion, onnxrt.PinnedGPUVersion)
		line("providers", "CPU: built in")
		dir := filepath.Dir(rt.LibraryPath)
		for _, p := range []string{"cuda", "tensorrt"} {
			providerLine(line, dir, p)
		}
	}
	if gpuDir := onnxrt.GPULibraryDir(); rt == nil || filepath.Dir(rt.LibraryPath) != gpuDir {
		if _, err := os.Stat(filepath.Join(gpuDir, "libonnxruntime_providers_cuda.so")); err == nil {
			line("GPU build", "%s (make ort-gpu; used by build --gpu and the cuda image)", gpuDir)
			providerLine(line, gpuDir, "cuda")
		}
	}

	fmt.Fprintln(w, "\nNVIDIA")
	inv := gpu.Discover(gpu.NewNVML(), os.LookupEnv)
	switch {
	case inv.Driver.Version != "":
		line("driver", "%s (NVML %s, supports CUDA up to %s)", inv.Driver.Version, inv.Driver.NVMLVersion, inv.Driver.CUDA())
	default:
		line("NVML", "%v", orNone(inv.Err))
	}
	for _, v := range []string{"CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"} {
		if value, ok := os.LookupEnv(v); ok {
			line(v, "%q", value)
		}
	}
	for _, n := range inv.Notes {
		line("note", "%s", n)
	}
	var mon *gpu.Monitor
	if len(inv.Devices) > 0 {
		if mon, err = gpu.NewMonitor(gpu.NewNVML(), inv, slog.New(slog.DiscardHandler)); err != nil {
			line("sampling", "failed: %v", err)
		} else {
			defer mon.Close()
		}
	}
	if len(inv.Devices) == 0 && inv.Driver.Version != "" {
		line("GPUs", "none: %v", orNone(inv.Err))
	}
	for _, d := range inv.Devices {
		desc := fmt.Sprintf("%s, %s, %s", d.Name, d.UUID, bytesize.Format(int64(d.MemoryTotal)))
		if mon != nil {
			if s, up := mon.Latest(d.Ordinal); up {
				desc += fmt.Sprintf(": %s used, %d%% busy, %.0f W of %.0f W, %d °C", bytesize.Format(int64(s.MemoryUsed)), s.Utilization,
					float64(s.PowerMilliwatts)/1000, float64(s.PowerLimitMilliwatts)/1000, s.TemperatureCelsius)
			} else {
				desc += ": not answering"
			}
		}
		line(fmt.Sprintf("GPU %d (cuda:%d)", d.Index, d.Ordinal), "%s", desc)
	}

	fmt.Fprintf(w, "\nWorker plan (serve --device %s)\n", device)
	if rt == nil {
		line("plan", "none: ONNX Runtime is missing")
		return nil
	}
	plan, err := engine.PlanWorkers(engine.Options{Device: device, Workers: o.workers, WorkersPerGPU: o.workersPerGPU, IntraOpThreads: o.intraOp}, rt, inv, mon)
	if err != nil {
		line("plan", "serve would fail at start: %v", err)
		return nil
	}
	line("device", "%s", plan.Device)
	if plan.Fallback != "" {
		line("why not a GPU", "%s", plan.Fallback)
	}
	line("workers", "%d × %d intra-op thread(s): %s", plan.Workers, plan.IntraOpThreads, plan.Reason)
	if len(plan.GPUs) > 0 {
		line("GPUs per worker", "%v (CUDA numbers)", plan.GPUs)
	}
	return nil
}

// providerLine reports a provider library beside dir, and the libraries
// it needs.
func providerLine(line func(string, string, ...any), dir, provider string) {
	name := map[string]string{"cuda": "CUDA", "tensorrt": "TensorRT"}[provider]
	lib := filepath.Join(dir, "libonnxruntime_providers_"+provider+".so")
	if _, err := os.Stat(lib); err != nil {
		line("", "%s: missing (no %s)", name, filepath.Base(lib))
		return
	}
	deps, err := onnxrt.ProviderDependencies(dir, provider)
	if err != nil {
		line("", "%s: %s, unreadable: %v", name, lib, err)
		return
	}
	line("", "%s: %s", name, lib)
	for _, d := range deps {
		var where string
		switch {
		case d.Path == "":
			where = "missing"
		case d.Preload:
			where = fmt.Sprintf("%s, in %s (loaded before the provider)", d.Path, d.Source)
		default:
			where = fmt.Sprintf("%s, in %s", d.Path, d.Source)
		}
		if d.OnDemand {
			where += "; opened on demand"
		}
		line("", "  %s  %s", d.Name, where)
	}
}

func orNone(err error) string {
	if err == nil {
		return "none"
	}
	return err.Error()
}
