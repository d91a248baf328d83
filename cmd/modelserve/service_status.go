package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/modelserve/modelserve/deploy/local"
	"github.com/spf13/cobra"
)

func newServiceStatusCmd(g *globals) *cobra.Command {
	var stateDir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Show a local service's instances, readiness, restarts and endpoints",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := local.ReadStatus(stateDir, args[0])
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			return printStatus(cmd.OutOrStdout(), st)
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", local.DefaultStateDir(), "where services keep their state")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	return cmd
}

func printStatus(w io.Writer, st *local.Status) error {
	fmt.Fprintf(w, "service %s: %s (pid %d, spec %s, up since %s)\n", st.Service, st.State, st.PID, st.Spec,
		st.Started.Local().Format(time.DateTime))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tPROTOCOL\tADDRESS\tPUBLIC\tSERVED")
	for _, ep := range st.Endpoints {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%d\n", ep.Name, ep.Protocol, ep.Address, ep.Public, ep.Served)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tCONTAINER\tRUNS\tSTATE\tREADY\tRESTARTS\tPID\tPORT\tLAST EXIT")
	for _, in := range st.Instances {
		for _, c := range in.Containers {
			port := "-"
			if c.Port > 0 {
				port = strconv.Itoa(c.Port)
			}
			last := c.LastExit
			if last == "" {
				last = "-"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%v\t%d\t%d\t%s\t%s\n", in.Index, c.Name, c.Runs, c.State, c.Ready, c.Restarts, c.PID, port, last)
		}
	}
	return tw.Flush()
}

func newServiceLogsCmd(g *globals) *cobra.Command {
	var stateDir string
	var instance int
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs NAME CONTAINER",
		Short: "Print a container's log of a local service",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := local.ReadStatus(stateDir, args[0])
			if err != nil {
				return err
			}
			if instance < 0 || instance >= len(st.Instances) {
				return fmt.Errorf("service %s has instances 0 to %d", args[0], len(st.Instances)-1)
			}
			var path string
			var names []string
			for _, c := range st.Instances[instance].Containers {
				names = append(names, c.Name)
				if c.Name == args[1] {
					path = c.Log
				}
			}
			if path == "" {
				return fmt.Errorf("service %s has no container %q (it has %s)", args[0], args[1], strings.Join(names, ", "))
			}
			return printLog(cmd.Context(), cmd.OutOrStdout(), path, follow && st.Running)
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", local.DefaultStateDir(), "where services keep their state")
	cmd.Flags().IntVar(&instance, "instance", 0, "which instance")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing as the log grows")
	return cmd
}

func printLog(ctx context.Context, w io.Writer, path string, follow bool) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("reading the log: %w", err)
	}
	defer f.Close()
	for {
		if _, err := io.Copy(w, f); err != nil {
			return err
		}
		if !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}
