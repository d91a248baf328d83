package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"

	"github.com/modelserve/modelserve/build"
	"github.com/modelserve/modelserve/deploy/local"
)

func newServiceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "service",
		Short: "Write service specs and run them on this machine",
	}
	cmd.AddCommand(newServiceSpecCmd(g), newServiceUpCmd(g), newServiceStatusCmd(g), newServiceLogsCmd(g))
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
