// Command modelserve registers ONNX models and serves them to SQL gateways
// and HTTP clients.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/modelserve/modelserve/internal/logbuf"
	"github.com/modelserve/modelserve/onnxrt"
	"github.com/modelserve/modelserve/registry"
)

// version is set at link time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "modelserve:", err)
		os.Exit(1)
	}
}

// globals are the flags every command shares.
type globals struct {
	registry string
	logLevel string
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "modelserve",
		Short:         "Serve ONNX models to SQL warehouses and HTTP clients",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return bindEnv(cmd)
		},
	}
	root.PersistentFlags().StringVar(&g.registry, "registry", registry.DefaultRoot(), "registry directory (env "+registry.RootEnv+")")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.AddCommand(newRegistryCmd(g), newServeCmd(g), newSQLCmd(g), newBuildCmd(g), newHealthCmd(), newVersionCmd(),
		newValidateCmd(), newServiceCmd(g), newJobCmd(g), newPredictBatchCmd(g), newReplayCmd(g), newDeployCmd(), newDoctorCmd(g))
	return root
}

// envList marks a repeated flag whose values hold no comma: its variable
// takes a comma-separated list (MODELSERVE_MODEL=iris,dlrm:3).
const envList = "modelserve-env-list"

// bindEnv lets MODELSERVE_<FLAG_NAME> set any flag not given on the command
// line (--max-queue ← MODELSERVE_MAX_QUEUE), so a container's environment
// configures it.
func bindEnv(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := "MODELSERVE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v, ok := os.LookupEnv(name)
		if !ok {
			return
		}
		values := []string{v}
		if f.Value.Type() == "stringArray" || f.Value.Type() == "stringSlice" {
			if _, ok := f.Annotations[envList]; !ok {
				return // a repeated flag whose values may hold commas has no one-variable form
			}
			values = strings.Split(v, ",")
		}
		for _, v := range values {
			if serr := cmd.Flags().Set(f.Name, strings.TrimSpace(v)); serr != nil {
				err = fmt.Errorf("%s=%q: %w", name, v, serr)
				return
			}
		}
	})
	return err
}

func (g *globals) logger() (*slog.Logger, error) {
	level, err := g.level()
	if err != nil {
		return nil, err
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})), nil
}

func (g *globals) level() (slog.Level, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return level, fmt.Errorf("--log-level %q: use debug, info, warn or error", g.logLevel)
	}
	return level, nil
}

// auditLogger is the logger of the lines a server writes per request:
// to standard error like the others, but gathered into a write every
// tenth of a second (or 64 KiB), so a line per request costs no system
// call per request. close writes what waits.
func (g *globals) auditLogger() (log *slog.Logger, close func(), err error) {
	level, err := g.level()
	if err != nil {
		return nil, nil, err
	}
	w := logbuf.New(os.Stderr, 100*time.Millisecond, 64<<10)
	h := logbuf.NewHandler(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}), w)
	return slog.New(h), func() { w.Close() }, nil
}

func newVersionCmd() *cobra.Command {
	var ortOnly bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print modelserve's version and the ONNX Runtime it finds",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			rt, err := onnxrt.Load("")
			if ortOnly {
				if err != nil {
					return err
				}
				fmt.Fprintln(out, rt.Version)
				return nil
			}
			fmt.Fprintf(out, "modelserve %s\n", version)
			if err != nil {
				fmt.Fprintf(out, "ONNX Runtime: none found (this modelserve is tested with %s): %v\n", onnxrt.PinnedVersion, err)
				return nil
			}
			fmt.Fprintf(out, "ONNX Runtime %s at %s (this modelserve is tested with %s; its GPU images with %s)\n",
				rt.Version, rt.LibraryPath, onnxrt.PinnedVersion, onnxrt.PinnedGPUVersion)
			return nil
		},
	}
	cmd.Flags().BoolVar(&ortOnly, "onnxruntime", false, "print only the version of the ONNX Runtime library found (an error if none is)")
	return cmd
}
