// Package sqlfunc writes the CREATE FUNCTION statements through which a
// SQL warehouse calls a served model: one service function per model
// function, with the model's arguments and SQL types.
package sqlfunc

import (
	"fmt"
	"strings"

	"github.com/modelserve/modelserve/model"
)

// maxArguments is the most arguments a SQL function may declare; beyond
// it the function takes one OBJECT (wide rows).
const maxArguments = 500

// Options are the service and the gateway's settings for the functions.
type Options struct {
	// Service is the service's name, possibly qualified (db.schema.svc).
	Service  string
	Endpoint string
	// Model, when set, routes each function to /<model>/<function>: the
	// path every modelserve server answers for the model, whether it
	// serves it alone or beside others. Empty: /<function>.
	Model string
	// NameModel names each function <SERVICE>_<MODEL>_<FUNCTION>, for a
	// service that serves several models: their functions would
	// otherwise replace each other (CREATE OR REPLACE).
	NameModel bool
	// MaxBatchRows is how many rows the gateway puts in one request.
	MaxBatchRows int
	// Wide declares one OBJECT argument instead of one per column.
	Wide bool
	// ContextHeaders lists context functions (CURRENT_USER, ...) whose
	// values the gateway sends as sf-context-* headers.
	ContextHeaders []string
	// MaxBatchRetries, OnBatchFailure and BatchTimeoutSecs are passed as
	// given; zero values leave the warehouse's defaults.
	MaxBatchRetries  int
	OnBatchFailure   string
	BatchTimeoutSecs int
}

// Validate checks the options a statement cannot do without.
func (o Options) Validate() error {
	if o.Service == "" || o.Endpoint == "" {
		return fmt.Errorf("a service and an endpoint are needed")
	}
	switch strings.ToUpper(o.OnBatchFailure) {
	case "", "ABORT", "RETURN_NULL":
	default:
		return fmt.Errorf("ON_BATCH_FAILURE is ABORT or RETURN_NULL, not %q", o.OnBatchFailure)
	}
	for _, h := range o.ContextHeaders {
		if !model.IsUnquotedIdentifier(h) {
			return fmt.Errorf("context header %q is not a context function name such as CURRENT_USER", h)
		}
	}
	if o.MaxBatchRows < 0 || o.MaxBatchRetries < 0 || o.BatchTimeoutSecs < 0 {
		return fmt.Errorf("batch rows, retries and timeout cannot be negative")
	}
	return nil
}

// Create writes one CREATE OR REPLACE FUNCTION per function of sig.
func Create(sig model.Signature, o Options) ([]string, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	args := sig.Arguments()
	wide := o.Wide || len(args) > maxArguments
	var params []string
	if wide {
		params = []string{"INPUT OBJECT"}
	} else {
		for _, a := range args {
			params = append(params, Identifier(a.Name)+" "+a.SQLType(sig))
		}
	}
	qualifier, service := "", o.Service
	if i := strings.LastIndex(o.Service, "."); i >= 0 {
		qualifier, service = o.Service[:i+1], o.Service[i+1:]
	}
	prefix := service + "_"
	if o.NameModel {
		if o.Model == "" {
			return nil, fmt.Errorf("naming functions after the model needs the model's name")
		}
		prefix += o.Model + "_"
	}
	var out []string
	for _, fn := range sig.Functions {
		var b strings.Builder
		fmt.Fprintf(&b, "CREATE OR REPLACE FUNCTION %s%s(%s)\n", qualifier, Identifier(strings.ToUpper(prefix+fn.Name)), strings.Join(params, ", "))
		fmt.Fprintf(&b, "  RETURNS OBJECT\n")
		fmt.Fprintf(&b, "  SERVICE = %s\n", o.Service)
		fmt.Fprintf(&b, "  ENDPOINT = %s\n", Identifier(o.Endpoint))
		if o.MaxBatchRows > 0 {
			fmt.Fprintf(&b, "  MAX_BATCH_ROWS = %d\n", o.MaxBatchRows)
		}
		if len(o.ContextHeaders) > 0 {
			fmt.Fprintf(&b, "  CONTEXT_HEADERS = (%s)\n", strings.ToUpper(strings.Join(o.ContextHeaders, ", ")))
		}
		if o.MaxBatchRetries > 0 {
			fmt.Fprintf(&b, "  MAX_BATCH_RETRIES = %d\n", o.MaxBatchRetries)
		}
		if o.OnBatchFailure != "" {
			fmt.Fprintf(&b, "  ON_BATCH_FAILURE = %s\n", strings.ToUpper(o.OnBatchFailure))
		}
		if o.BatchTimeoutSecs > 0 {
			fmt.Fprintf(&b, "  BATCH_TIMEOUT_SECS = %d\n", o.BatchTimeoutSecs)
		}
		path := fn.Path()
		if o.Model != "" {
			path = "/" + o.Model + path
		}
		fmt.Fprintf(&b, "  AS '%s';\n", path)
		out = append(out, b.String())
	}
	return out, nil
}

// Identifier writes name as SQL takes it: bare when it is a plain
// identifier, else in double quotes (which make it match exactly).
func Identifier(name string) string {
	if model.IsUnquotedIdentifier(name) {
		return name
	}
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}
