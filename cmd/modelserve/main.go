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

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

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
	root.AddCommand(newRegistryCmd(g), newServeCmd(g), newSQLCmd(g), newBuildCmd(g), newHealthCmd(), newVersionCmd())
	return root
}

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
		if f.Value.Type() == "stringArray" || f.Value.Type() == "stringSlice" {
			return // repeated flags have no one-variable form
		}
		if serr := cmd.Flags().Set(f.Name, v); serr != nil {
			err = fmt.Errorf("%s=%q: %w", name, v, serr)
		}
	})
	return err
}

func (g *globals) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", g.logLevel)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})), nil
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print modelserve's version and the ONNX Runtime it expects",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "modelserve %s (ONNX Runtime %s)\n", version, onnxrt.PinnedVersion)
			return nil
		},
	}
}
