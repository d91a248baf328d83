package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"

	"github.com/modelserve/modelserve/build"
	"github.com/modelserve/modelserve/deploy/local"
	"github.com/modelserve/modelserve/model"
)

func newServiceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "service",
		Short: "Write service specs and run them on this machine",
	}
	cmd.AddCommand(newServiceSpecCmd(g), newServiceUpCmd(g), newServiceStatusCmd(g), newServiceLogsCmd(g))
	return cmd
}

func newJobCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "job", Short: "Run job specs on this machine"}
	cmd.AddCommand(newJobRunCmd(g))
	return cmd
}

// runOptions are the flags service up and job run share: where the
// spec's stages, secrets and images come from here.
type runOptions struct {
	spec          string
	stateDir      string
	stages        []string
	secrets       []string
	podman        string
	podmanRunArgs string
	stopTimeout   time.Duration
}

func (o *runOptions) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.spec, "spec", "", "the spec file")
	f.StringVar(&o.stateDir, "state-dir", local.DefaultStateDir(), "where services and jobs keep status, logs and volumes")
	f.StringArrayVar(&o.stages, "stage", nil, "a stage's local directory, NAME=DIR (repeat for each stage)")
	f.StringArrayVar(&o.secrets, "secret", nil, "a secret's keys: NAME=FILE (KEY=VALUE lines), NAME=DIR (a file per key) or NAME=env:VAR")
	f.StringVar(&o.podman, "podman", "podman", "how to call podman for containers that are not modelserve images (command and global flags)")
	f.StringVar(&o.podmanRunArgs, "podman-run-args", "", "extra flags for podman run, e.g. \"--ulimit nofile=4096:4096\"")
	f.DurationVar(&o.stopTimeout, "stop-timeout", 10*time.Second, "how long a container has to exit after SIGTERM before SIGKILL")
	cmd.MarkFlagRequired("spec")
}

func (o *runOptions) options(cmd *cobra.Command, g *globals, name string) (local.Options, error) {
	p, err := readSpec(o.spec, cmd.ErrOrStderr())
	if err != nil {
		return local.Options{}, err
	}
	log, err := g.logger()
	if err != nil {
		return local.Options{}, err
	}
	self, err := os.Executable()
	if err != nil {
		return local.Options{}, fmt.Errorf("finding the modelserve binary: %w", err)
	}
	reg, err := filepath.Abs(g.registry)
	if err != nil {
		return local.Options{}, err
	}
	lo := local.Options{
		Name: name, Spec: p.Spec, SpecFile: o.spec, StateDir: o.stateDir,
		Self: self, Registry: reg, Env: os.Environ(),
		Stages: map[string]string{}, Secrets: map[string]map[string]string{},
		Podman: strings.Fields(o.podman), PodmanRunArgs: strings.Fields(o.podmanRunArgs),
		Labels: imageLabels{}, StopTimeout: o.stopTimeout, Log: log,
	}
	for _, s := range o.stages {
		n, dir, err := local.ParseStage(s)
		if err != nil {
			return local.Options{}, err
		}
		lo.Stages[n] = dir
	}
	for _, s := range o.secrets {
		n, keys, err := local.ParseSecret(s, os.LookupEnv)
		if err != nil {
			return local.Options{}, err
		}
		lo.Secrets[n] = keys
	}
	return lo, nil
}

func newServiceUpCmd(g *globals) *cobra.Command {
	o := &runOptions{}
	var instances int
	var host string
	var publish []string
	var drain time.Duration
	cmd := &cobra.Command{
		Use:   "up NAME --spec FILE",
		Short: "Run a service in the foreground, like docker compose up",
		Long: `Run a service on this machine until interrupted. Each instance runs every
container of the spec: modelserve images as local modelserve processes fed
from the local registry (paths under their volume mounts are translated to
the volumes' directories here), any other image with podman. Each endpoint
gets one listener that spreads requests over the ready instances; a request
an instance drops before answering goes to another one. A container that
exits is restarted with backoff.

SIGTERM or Ctrl-C drains: new requests get 503, requests in flight finish,
then the containers stop. modelserve service status NAME shows the service
from another terminal, and modelserve service logs NAME CONTAINER its logs.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lo, err := o.options(cmd, g, args[0])
			if err != nil {
				return err
			}
			lo.Instances, lo.Host, lo.DrainTimeout = instances, host, drain
			lo.Publish = map[string]int{}
			for _, p := range publish {
				ep, port, ok := strings.Cut(p, "=")
				n, err := strconv.Atoi(port)
				if !ok || err != nil || n < 0 || n > 65535 {
					return fmt.Errorf("--publish %q: write ENDPOINT=PORT (0: any free port)", p)
				}
				lo.Publish[ep] = n
			}
			for ep := range lo.Publish {
				if !hasEndpoint(lo, ep) {
					return fmt.Errorf("--publish: the spec has no endpoint %q", ep)
				}
			}
			return local.Up(cmd.Context(), lo)
		},
	}
	o.register(cmd)
	f := cmd.Flags()
	f.IntVar(&instances, "instances", 1, "instances to run")
	f.StringVar(&host, "host", "127.0.0.1", "address the endpoints listen on")
	f.StringArrayVar(&publish, "publish", nil, "an endpoint's port here, ENDPOINT=PORT (default: the spec's port; 0: any free one)")
	f.DurationVar(&drain, "drain-timeout", 30*time.Second, "how long a shutdown waits for requests in flight")
	return cmd
}

func hasEndpoint(o local.Options, name string) bool {
	for _, ep := range o.Spec.Endpoints {
		if ep.Name == name {
			return true
		}
	}
	return false
}

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

// imageLabels reads labels from an image's config: oci:DIR[:TAG] layouts,
// or a registry (plain HTTP on loopback), with the Docker credentials.
type imageLabels struct{}

func (imageLabels) Labels(ctx context.Context, ref string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var nameOpts []name.Option
	if r, err := name.ParseReference(ref); err == nil && isLoopback(r.Context().RegistryStr()) {
		nameOpts = append(nameOpts, name.Insecure)
	}
	img, err := build.LoadBase(ctx, ref, []remote.Option{remote.WithAuthFromKeychain(authn.DefaultKeychain)}, nameOpts...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	return cf.Config.Labels, nil
}

func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
