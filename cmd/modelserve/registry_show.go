package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/modelserve/modelserve/internal/bytesize"
	"github.com/modelserve/modelserve/registry"
)

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

// created is when a version was logged; versions baked into an image do not
// say.
func created(v registry.Version) string {
	if v.Created.IsZero() {
		return "-"
	}
	return v.Created.Format("2006-01-02 15:04:05Z")
}
