package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

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
