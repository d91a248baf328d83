package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/modelserve/modelserve/engine"
	"github.com/modelserve/modelserve/internal/bytesize"
	"github.com/modelserve/modelserve/model"
	"github.com/modelserve/modelserve/onnxrt"
	"github.com/modelserve/modelserve/registry"
)

func newRegistryCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Register, list, show and delete model versions",
	}
	cmd.AddCommand(newLogCmd(g), newListCmd(g), newShowCmd(g), newSetCmd(g), newDeleteCmd(g), newAliasCmd(g))
	return cmd
}

func newLogCmd(g *globals) *cobra.Command {
	var (
		req       registry.LogRequest
		functions []string
		features  []string
		nullAsNaN []string
		settings  settingsFlags
	)
	cmd := &cobra.Command{
		Use:   "log --name NAME --version VERSION --file model.onnx",
		Short: "Register an ONNX model as a new version",
		Long: `Register an ONNX model as a new version. The model is opened with ONNX
Runtime first; a file it cannot load is refused with the reason.

A function is a named view returning some outputs, e.g.
  --function predict=label --function predict_proba=probabilities
Without --function, one function "predict" returns every output.

--features names the columns of a [batch, F] numeric input, so SQL callers
may pass F scalar arguments: --features sepal_length,sepal_width,... (the
only such input), or --features INPUT=a,b,c when there are several.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if req.Functions, err = parseFunctions(functions, nullAsNaN); err != nil {
				return err
			}
			if req.Features, err = parseFeatures(features); err != nil {
				return err
			}
			if req.Settings, err = settings.apply(registry.Settings{}); err != nil {
				return err
			}
			rt, err := onnxrt.Load("")
			if err != nil {
				return err
			}
			reg, err := registry.Open(g.registry, rt)
			if err != nil {
				return err
			}
			v, err := reg.Log(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "registered %s (sha256 %s) in %s\n", v.Ref(), v.SHA256, reg.Root())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Name, "name", "", "model name (required)")
	f.StringVar(&req.Version, "version", "", "version (required)")
	f.StringVar(&req.File, "file", "", "ONNX model file (required)")
	f.StringArrayVar(&functions, "function", nil, "NAME=OUTPUT[,OUTPUT...] (repeatable)")
	f.StringArrayVar(&features, "features", nil, "[INPUT=]NAME,NAME,... feature names of a [batch, F] input (repeatable)")
	f.StringArrayVar(&nullAsNaN, "null-as-nan", nil, "FUNCTION whose SQL NULLs in float arguments become NaN, for models that treat NaN as missing (repeatable)")
	f.StringVar(&req.Comment, "comment", "", "free text kept with the version")
	settings.register(cmd)
	for _, name := range []string{"name", "version", "file"} {
		cmd.MarkFlagRequired(name)
	}
	return cmd
}

func parseFunctions(specs, nullAsNaN []string) ([]model.Function, error) {
	var fns []model.Function
	for _, s := range specs {
		name, outs, ok := strings.Cut(s, "=")
		if !ok || outs == "" {
			return nil, fmt.Errorf("--function %q: write NAME=OUTPUT[,OUTPUT...]", s)
		}
		fns = append(fns, model.Function{Name: name, Outputs: strings.Split(outs, ",")})
	}
	if len(nullAsNaN) > 0 && len(fns) == 0 {
		// The default function, every output; the registry fills them in.
		fns = append(fns, model.Function{Name: "predict"})
	}
	for _, name := range nullAsNaN {
		found := false
		for i := range fns {
			if fns[i].Name == name {
				fns[i].NullAsNaN, found = true, true
			}
		}
		if !found {
			return nil, fmt.Errorf("--null-as-nan %q: no such function (give it with --function)", name)
		}
	}
	return fns, nil
}

// parseFeatures reads --features; names without INPUT= go under "", for
// the registry to give to the model's only feature-matrix input.
func parseFeatures(specs []string) (map[string][]string, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	out := map[string][]string{}
	for _, s := range specs {
		input, names, ok := strings.Cut(s, "=")
		if !ok {
			input, names = "", s
		}
		if _, dup := out[input]; dup {
			return nil, fmt.Errorf("--features %q: names for that input were already given", s)
		}
		out[input] = strings.Split(names, ",")
	}
	return out, nil
}

func newListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List registered model versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			reg, err := registry.Open(g.registry, nil)
			if err != nil {
				return err
			}
			vs, err := reg.List()
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tVERSION\tALIASES\tCREATED\tSIZE\tFUNCTIONS")
			aliases := map[string]map[string]string{}
			for _, v := range vs {
				if _, ok := aliases[v.Name]; !ok {
					if aliases[v.Name], err = reg.Aliases(v.Name); err != nil {
						return err
					}
				}
				names := make([]string, len(v.Signature.Functions))
				for i, f := range v.Signature.Functions {
					names[i] = f.Name
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, v.Version, aliasesOf(aliases[v.Name], v.Version), created(v),
					bytesize.Format(v.Size), strings.Join(names, ","))
			}
			return w.Flush()
		},
	}
}

func newShowCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show NAME[:VERSION]",
		Short: "Show a version's signature, functions, SQL arguments and checksum",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			reg, v, err := g.version(args[0])
			if err != nil {
				return err
			}
			aliases, err := reg.Aliases(v.Name)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			}
			return printVersion(cmd.OutOrStdout(), v, aliasesOf(aliases, v.Version))
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the manifest as JSON")
	return cmd
}

func printVersion(out io.Writer, v registry.Version, aliases string) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	sig := v.Signature
	fmt.Fprintf(w, "%s\n", v.Ref())
	if aliases != "-" {
		fmt.Fprintf(w, "  aliases\t%s\n", aliases)
	}
	fmt.Fprintf(w, "  created\t%s\n", created(v))
	fmt.Fprintf(w, "  size\t%s (%d bytes)\n", bytesize.Format(v.Size), v.Size)
	fmt.Fprintf(w, "  sha256\t%s\n", v.SHA256)
	fmt.Fprintf(w, "  file\t%s\n", v.ModelPath())
	if v.Comment != "" {
		fmt.Fprintf(w, "  comment\t%s\n", v.Comment)
	}
	if v.Settings != (registry.Settings{}) {
		fmt.Fprintf(w, "  settings\t%s\n", describeSettings(v.Settings))
	}
	if v.Producer != "" {
		fmt.Fprintf(w, "  producer\t%s\n", v.Producer)
	}
	if v.Description != "" {
		fmt.Fprintf(w, "  description\t%s\n", v.Description)
	}
	fmt.Fprintln(w, "\ninputs")
	for _, in := range sig.Inputs {
		fmt.Fprintf(w, "  %s\t%s\n", in.Name, in.TypeString())
	}
	fmt.Fprintln(w, "outputs")
	for _, o := range sig.Outputs {
		fmt.Fprintf(w, "  %s\t%s\n", o.Name, o.TypeString())
	}
	fmt.Fprintln(w, "functions")
	def := sig.DefaultFunction()
	for _, f := range sig.Functions {
		route := "POST " + f.Path()
		if f.Name == def.Name && f.Path() != "/predict" {
			route += ", POST /predict"
		}
		nulls := ""
		if f.NullAsNaN {
			nulls = " (NULL as NaN)"
		}
		fmt.Fprintf(w, "  %s\t%s\treturns %s%s\n", f.Name, route, strings.Join(f.Outputs, ", "), nulls)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out, "SQL arguments (each row: [row_number, arguments...])")
	fmt.Fprintf(out, "  (%s)\n", sig.FormatArguments(sig.Arguments()))
	if sig.HasFeatures() {
		fmt.Fprintf(out, "  or (%s)\n", sig.FormatArguments(sig.WholeArguments()))
	}
	if len(v.Metadata) > 0 {
		fmt.Fprintln(out, "metadata")
		keys := make([]string, 0, len(v.Metadata))
		for k := range v.Metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(out, "  %s = %s\n", k, v.Metadata[k])
		}
	}
	return nil
}

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

// version opens the registry and finds NAME[:VERSION] in it.
func (g *globals) version(ref string) (*registry.Registry, registry.Version, error) {
	name, ver, err := registry.ParseRef(ref)
	if err != nil {
		return nil, registry.Version{}, err
	}
	reg, err := registry.Open(g.registry, nil)
	if err != nil {
		return nil, registry.Version{}, err
	}
	v, err := reg.Get(name, ver)
	return reg, v, err
}

// use is version for a command that reads the version's files: it holds
// the version (delete is refused) until release is called.
func (g *globals) use(ref string) (reg *registry.Registry, v registry.Version, release func() error, err error) {
	if reg, v, err = g.version(ref); err != nil {
		return nil, v, nil, err
	}
	if release, err = reg.Acquire(v); err != nil {
		return nil, v, nil, err
	}
	return reg, v, release, nil
}

// aliasesOf lists the aliases that name version, "-" for none.
func aliasesOf(aliases map[string]string, version string) string {
	if as := registry.AliasesOf(aliases, version); len(as) > 0 {
		return strings.Join(as, ",")
	}
	return "-"
}

func newAliasCmd(g *globals) *cobra.Command {
	var remove bool
	cmd := &cobra.Command{
		Use:   "alias NAME ALIAS VERSION | alias --remove NAME ALIAS",
		Short: "Point an alias (prod, staging) at a version, or move it",
		Long: `Point ALIAS at NAME's VERSION: NAME:ALIAS then reads as that version
everywhere a version is named, and a server started with --model NAME:ALIAS
follows the alias when it moves (it loads and warms the new version beside
the old, switches new requests to it, lets the old one finish what it
admitted, then unloads it). A version an alias names cannot be deleted.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			reg, err := registry.Open(g.registry, nil)
			if err != nil {
				return err
			}
			switch {
			case remove && len(args) == 2:
				if err := reg.RemoveAlias(args[0], args[1]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s:%s\n", args[0], args[1])
				return nil
			case !remove && len(args) == 3:
				if err := reg.SetAlias(args[0], args[1], args[2]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s:%s → %s:%s\n", args[0], args[1], args[0], args[2])
				return nil
			}
			return fmt.Errorf("usage: %s", cmd.Use)
		},
	}
	cmd.Flags().BoolVar(&remove, "remove", false, "remove the alias (the version stays)")
	return cmd
}

func newDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME:VERSION",
		Short: "Delete a version (refused while a service uses it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, ver, err := registry.ParseRef(args[0])
			if err != nil {
				return err
			}
			if ver == "" {
				return fmt.Errorf("delete needs NAME:VERSION; %q names no version", args[0])
			}
			reg, err := registry.Open(g.registry, nil)
			if err != nil {
				return err
			}
			if err := reg.Delete(name, ver); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %s:%s\n", name, ver)
			return nil
		},
	}
}

// created is when a version was logged; versions baked into an image do not
// say.
func created(v registry.Version) string {
	if v.Created.IsZero() {
		return "-"
	}
	return v.Created.Format("2006-01-02 15:04:05Z")
}
