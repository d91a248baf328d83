package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/modelserve/modelserve/deploy/spec"
)

func newValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a service or job spec and print its normalized form",
		Long: `Check a service or job spec against every rule of the spec reference
and print it normalized (defaults filled in, fields in the reference's order).
A spec with problems prints all of them, each with its line, and exits 1.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := readSpec(args[0], cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			out, err := p.Spec.Marshal()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
}

// readSpec parses a spec file, printing warnings to w. A spec with problems
// gives an error that lists all of them.
func readSpec(file string, w io.Writer) (*spec.Parsed, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading the spec: %w", err)
	}
	p, err := spec.Parse(file, data)
	var errs spec.Errors
	if errors.As(err, &errs) {
		return nil, fmt.Errorf("%d problem(s) in %s:\n%w", len(errs), file, err)
	}
	if err != nil {
		return nil, err
	}
	for _, w0 := range p.Warnings {
		fmt.Fprintf(w, "warning: %v\n", w0)
	}
	return p, nil
}

type serviceSpecOptions struct {
	model, image, out string
	gpus, workers     int
	maxBatchRows      int
	ingress           bool
	cpu, memory       string
	auth              spec.AuthSecrets
}

func newServiceSpecCmd(g *globals) *cobra.Command {
	o := &serviceSpecOptions{}
	cmd := &cobra.Command{
		Use:   "spec --model NAME[:VERSION] --image REF",
		Short: "Write the spec of a service that serves a model",
		Long: `Write the spec of a service that serves one model version: the container
model-inference running the image (from modelserve build), its readiness
probe, and the endpoint inference. The version is pinned: NAME alone is
written as the latest version's NAME:VERSION.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, v, err := g.version(o.model)
			if err != nil {
				return err
			}
			m := spec.ModelService{Model: v.Ref(), Image: o.image, GPUs: o.gpus, Workers: o.workers,
				MaxBatchRows: o.maxBatchRows, Ingress: o.ingress, Auth: o.auth}
			if o.cpu != "" {
				if m.CPU, err = spec.ParseQuantity(o.cpu); err != nil {
					return fmt.Errorf("--cpu: %w", err)
				}
			}
			if o.memory != "" {
				if m.Memory, err = spec.ParseQuantity(o.memory); err != nil {
					return fmt.Errorf("--memory: %w", err)
				}
			}
			s, err := spec.ForModel(m)
			if err != nil {
				return err
			}
			data, err := s.Marshal()
			if err != nil {
				return err
			}
			// What we write must pass our own validation.
			if _, err := spec.Parse("generated spec", data); err != nil {
				return fmt.Errorf("the generated spec is not valid (a bug): %w", err)
			}
			if o.out == "" {
				_, err = cmd.OutOrStdout().Write(data)
				return err
			}
			if err := os.WriteFile(o.out, data, 0o644); err != nil {
				return fmt.Errorf("writing the spec: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.model, "model", "", "model to serve, NAME[:VERSION] (default version: the latest)")
	f.StringVar(&o.image, "image", "", "the service's image, e.g. the reference modelserve build printed")
	f.IntVar(&o.gpus, "gpu", 0, "GPUs per instance (requests and limits; the server then requires CUDA)")
	f.IntVar(&o.workers, "workers", 0, "workers per instance (default: the server's plan, one per core or per GPU)")
	f.IntVar(&o.maxBatchRows, "max-batch-rows", 0, "most rows in one ONNX Runtime call (default: the version's setting)")
	f.BoolVar(&o.ingress, "ingress", false, "make the inference endpoint public")
	f.StringVar(&o.cpu, "cpu", "", "CPU request per instance, e.g. 2 or 500m")
	f.StringVar(&o.memory, "memory", "", "memory request per instance, e.g. 4Gi")
	f.StringVarP(&o.out, "output", "o", "", "write the spec to this file (default: standard output)")
	f.StringVar(&o.auth.Tokens, "auth-tokens-secret", "", "secret whose key tokens is the server's --auth-tokens file (mounted under "+spec.AuthDir+"/tokens)")
	f.StringVar(&o.auth.JWKS, "auth-jwks-secret", "", "secret whose key jwks.json is the server's --auth-jwks file")
	f.StringVar(&o.auth.Issuer, "auth-issuer", "", "the iss a JWT must carry")
	f.StringVar(&o.auth.Audience, "auth-audience", "", "an aud a JWT must carry")
	f.StringVar(&o.auth.TLS, "tls-secret", "", "secret with tls.crt and tls.key: the server speaks HTTPS (deploy kubernetes; the reference system's ingress terminates TLS itself)")
	f.StringVar(&o.auth.ClientCA, "tls-client-ca-secret", "", "secret with ca.crt: clients need a certificate it signed (mutual TLS)")
	f.BoolVar(&o.auth.Require, "require-auth", false, "the server refuses to start without a credential")
	cmd.MarkFlagRequired("model")
	cmd.MarkFlagRequired("image")
	return cmd
}
