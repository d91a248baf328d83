package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/modelserve/modelserve/deploy/kube"
)

func newDeployCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deploy",
		Short: "Render a service or job spec for a cluster",
	}
	cmd.AddCommand(newDeployKubernetesCmd())
	return cmd
}

type kubeOptions struct {
	kube.Options
	spec   string
	pools  string
	stages []string
	out    string
}

func newDeployKubernetesCmd() *cobra.Command {
	o := &kubeOptions{}
	cmd := &cobra.Command{
		Use:   "kubernetes --spec FILE --name NAME",
		Short: "Write Kubernetes manifests for a service or job spec",
		Long: `Write the Kubernetes manifests that run a service or job spec, built
with the Kubernetes API types. A service becomes a Deployment (replicas: the
minimum instances), a Service with a port per endpoint, an Ingress per public
endpoint, a HorizontalPodAutoscaler when --max-instances is above the minimum
(on modelserve's queue depth per instance, and on CPU), and a
PodDisruptionBudget. A job (--job) becomes a Job that runs once.

Volumes: local becomes emptyDir, memory an emptyDir in memory with its size
as the limit, a stage the PersistentVolumeClaim named with --stage; a
secret object becomes a reference to the Secret of the same name (its last
part, lowercase, '_' as '-').

With -o DIR, one file per object and a kustomization.yaml are written
(kubectl apply -k DIR); without it, one YAML stream goes to standard output.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return deployKubernetes(cmd, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.spec, "spec", "", "the service or job spec")
	f.StringVar(&o.Name, "name", "", "the name of the service or job and its objects")
	f.StringVar(&o.Namespace, "namespace", "", "namespace of the objects (default: kubectl's)")
	f.BoolVar(&o.Job, "job", false, "the spec is a job: render a Job that runs once")
	f.IntVar(&o.MinInstances, "min-instances", 1, "instances always running")
	f.IntVar(&o.MaxInstances, "max-instances", 0, "instances at most; above --min-instances an autoscaler adds them (default: the minimum)")
	f.StringVar(&o.ComputePool, "compute-pool", "", "place the pods on this pool's nodes, as --compute-pools describes them")
	f.StringVar(&o.pools, "compute-pools", "", "file mapping compute pools and instance families to node labels, taints and GPUs per node")
	f.StringArrayVar(&o.stages, "stage", nil, "the PersistentVolumeClaim holding a stage's files, NAME=CLAIM (repeat for each stage)")
	f.StringVar(&o.ImageRegistry, "image-registry", "", "registry host for images given as repository paths (/db/schema/repo/image:tag)")
	f.StringVar(&o.IngressDomain, "ingress-domain", "", "give each public endpoint the host <endpoint>-<name>.<domain>")
	f.StringVar(&o.IngressClass, "ingress-class", "", "the Ingress controller's class")
	f.BoolVar(&o.ServiceMonitor, "service-monitor", false, "add a Prometheus Operator ServiceMonitor instead of the prometheus.io scrape annotations")
	f.BoolVar(&o.PrometheusRule, "prometheus-rule", false, "add the shipped recording and alerting rules as a PrometheusRule named modelserve (one per namespace, shared by its services)")
	f.BoolVar(&o.GrafanaDashboard, "grafana-dashboard", false, "add the shipped Grafana dashboard as the ConfigMap modelserve-dashboard, labelled grafana_dashboard=1 for Grafana's sidecar")
	f.IntVar(&o.TargetQueue, "target-queue", kube.DefaultTargetQueue, "requests waiting per instance the autoscaler aims at")
	f.IntVar(&o.TargetCPU, "target-cpu", kube.DefaultTargetCPU, "CPU utilization (percent of requests) the autoscaler falls back on")
	f.StringVarP(&o.out, "output", "o", "", "write the manifests and a kustomization.yaml to this directory")
	cmd.MarkFlagRequired("spec")
	cmd.MarkFlagRequired("name")
	return cmd
}

func deployKubernetes(cmd *cobra.Command, o *kubeOptions) error {
	stderr := cmd.ErrOrStderr()
	p, err := readSpec(o.spec, stderr)
	if err != nil {
		return err
	}
	if o.Job && !cmd.Flags().Changed("min-instances") {
		o.MinInstances = 0
	}
	if o.pools != "" {
		if o.Pools, err = kube.ReadPools(o.pools); err != nil {
			return err
		}
	}
	o.Stages = map[string]string{}
	for _, s := range o.stages {
		name, claim, ok := strings.Cut(s, "=")
		if !ok || name == "" || claim == "" {
			return fmt.Errorf("--stage %q: write NAME=CLAIM, e.g. model_stage=model-files", s)
		}
		o.Stages[strings.TrimPrefix(name, "@")] = claim
	}
	r, err := kube.Render(p.Spec, o.Options)
	if err != nil {
		return err
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	if o.out == "" {
		return kube.WriteStream(cmd.OutOrStdout(), r.Objects)
	}
	paths, err := kube.WriteDir(o.out, r.Objects)
	if err != nil {
		return err
	}
	for _, path := range paths {
		fmt.Fprintln(cmd.OutOrStdout(), path)
	}
	return nil
}
