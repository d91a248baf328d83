package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/modelserve/modelserve/deploy/local"
	"github.com/modelserve/modelserve/model"
	"github.com/spf13/cobra"
)

func newJobCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "job", Short: "Run job specs on this machine"}
	cmd.AddCommand(newJobRunCmd(g))
	return cmd
}

func newJobRunCmd(g *globals) *cobra.Command {
	o := &runOptions{}
	var jobName string
	cmd := &cobra.Command{
		Use:   "run --spec FILE",
		Short: "Run a job spec once, to completion",
		Long: `Run every container of a job spec once, to completion, and exit with the
job's status: 0 when every container exits 0. Containers run as service up
runs them; none is restarted. The logs stay in the run's directory under
--state-dir/jobs, printed at the end.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if jobName == "" {
				jobName = model.LabelFrom(strings.TrimSuffix(filepath.Base(o.spec), filepath.Ext(o.spec)))
			}
			lo, err := o.options(cmd, g, jobName)
			if err != nil {
				return err
			}
			res, err := local.RunJob(cmd.Context(), lo)
			if res != nil {
				for _, c := range res.Containers {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s, log %s\n", c.Name, c.LastExit, c.Log)
				}
			}
			return err
		},
	}
	o.register(cmd)
	cmd.Flags().StringVar(&jobName, "name", "", "the job's name (default: the spec file's name)")
	return cmd
}
