package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/modelserve/modelserve/sqlfunc"
)

// gatewayBatchRows is the rows a gateway request carries when the version
// sets no batch size.
const gatewayBatchRows = 64

func newSQLCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sql",
		Short: "Write the SQL that calls a served model",
	}
	cmd.AddCommand(newSQLFunctionsCmd(g))
	return cmd
}

func newSQLFunctionsCmd(g *globals) *cobra.Command {
	var (
		ref     string
		o       sqlfunc.Options
		headers string
	)
	cmd := &cobra.Command{
		Use:   "functions --model NAME[:VERSION] --service SERVICE",
		Short: "Print a CREATE FUNCTION statement per model function",
		Long: `Print one CREATE OR REPLACE FUNCTION per function of the model: arguments
named and typed from its signature (FLOAT, NUMBER, VARCHAR, BOOLEAN, ARRAY
for vectors; one OBJECT argument with --wide or past 500 arguments), RETURNS
OBJECT, routed to the function's path on the service's endpoint:
/<model>/<function>, which a server answers whether it serves the model
alone or beside others.

MAX_BATCH_ROWS defaults to the version's batch size (registry setting), else
64: requests small enough that the gateway's concurrency keeps every worker
busy, which the server joins into larger calls.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, v, err := g.version(ref)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("max-batch-rows") {
				o.MaxBatchRows = v.Settings.MaxBatchRows
				if o.MaxBatchRows == 0 {
					o.MaxBatchRows = gatewayBatchRows
				}
			}
			o.Model = v.Name
			if headers != "" {
				o.ContextHeaders = strings.Split(headers, ",")
			}
			stmts, err := sqlfunc.Create(v.Signature, o)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "-- Service functions for %s (modelserve %s)\n", v.Ref(), version)
			for _, s := range stmts {
				fmt.Fprintf(cmd.OutOrStdout(), "\n%s", s)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&ref, "model", "", "model, NAME[:VERSION]")
	f.StringVar(&o.Service, "service", "", "the service's name, possibly qualified (db.schema.service)")
	f.StringVar(&o.Endpoint, "endpoint", "inference", "the service's endpoint name")
	f.IntVar(&o.MaxBatchRows, "max-batch-rows", 0, "rows per gateway request (default: the version's batch size)")
	f.BoolVar(&o.Wide, "wide", false, "take one OBJECT argument (wide rows) instead of one per column")
	f.BoolVar(&o.NameModel, "name-with-model", false, "name the functions <SERVICE>_<MODEL>_<FUNCTION>, for a service serving several models (whose functions would otherwise replace each other)")
	f.StringVar(&headers, "context-headers", "", "context functions to send as headers, e.g. CURRENT_USER,CURRENT_ROLE")
	f.IntVar(&o.MaxBatchRetries, "max-batch-retries", 0, "MAX_BATCH_RETRIES (default: the warehouse's)")
	f.StringVar(&o.OnBatchFailure, "on-batch-failure", "", "ABORT or RETURN_NULL (default: the warehouse's)")
	f.IntVar(&o.BatchTimeoutSecs, "batch-timeout-secs", 0, "BATCH_TIMEOUT_SECS (default: the warehouse's)")
	cmd.MarkFlagRequired("model")
	cmd.MarkFlagRequired("service")
	return cmd
}
