package kube

import (
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/modelserve/modelserve/deploy/spec"
	"github.com/modelserve/modelserve/model"
	"github.com/modelserve/modelserve/monitoring"
)

// Options say how a spec becomes manifests.
type Options struct {
	Name      string
	Namespace string
	// Job renders a run-once Job instead of a service.
	Job bool
	// MinInstances and MaxInstances bound a service's replicas; above the
	// minimum, an autoscaler adds them. Zero values mean 1 and the minimum.
	MinInstances, MaxInstances int
	// ComputePool places the pods on the pool's nodes, as Pools describes.
	ComputePool string
	Pools       *Pools
	// Stages names, per stage, the PersistentVolumeClaim holding its files.
	Stages map[string]string
	// ImageRegistry prefixes the reference system's repository paths
	// (/db/schema/repo/image:tag) to make pullable references.
	ImageRegistry string
	// IngressDomain gives each public endpoint the host
	// <endpoint>-<name>.<domain>; IngressClass picks the controller.
	IngressDomain, IngressClass string
	// ServiceMonitor adds a Prometheus Operator ServiceMonitor; without
	// it, pods carry the prometheus.io scrape annotations.
	ServiceMonitor bool
	// PrometheusRule adds the shipped recording and alerting rules as a
	// Prometheus Operator PrometheusRule, and GrafanaDashboard the
	// shipped dashboard as a ConfigMap for Grafana's sidecar. Both are
	// one object per namespace, named modelserve, shared by every
	// service rendered into it (the rules aggregate by model and
	// version, whatever service serves them).
	PrometheusRule, GrafanaDashboard bool
	// TargetQueue is the requests waiting per instance the autoscaler
	// aims at; TargetCPU the CPU utilization (percent) it falls back on.
	TargetQueue int
	TargetCPU   int
}

// Defaults for the autoscaler.
const (
	DefaultTargetQueue = 4
	DefaultTargetCPU   = 70
	// QueueMetric is the gauge modelserve exports of requests waiting for
	// a worker: the autoscaler's per-instance signal.
	QueueMetric = "modelserve_queue_requests"
	// MetricsPath is where modelserve serves its metrics.
	MetricsPath = "/metrics"
)

// Rendered is what Render made: the objects in apply order, and warnings
// about what a cluster will need.
type Rendered struct {
	Objects  []runtime.Object
	Warnings []string
}

// Render turns a validated spec into manifests.
func Render(s *spec.Spec, o Options) (*Rendered, error) {
	kind := model.ServiceName
	if o.Job {
		kind = model.JobName
	}
	if err := model.CheckName(kind, o.Name); err != nil {
		return nil, fmt.Errorf("--name: %w", err)
	}
	if o.Namespace != "" {
		if errs := validation.IsDNS1123Label(o.Namespace); len(errs) > 0 {
			return nil, fmt.Errorf("--namespace %q: %s", o.Namespace, strings.Join(errs, "; "))
		}
	}
	r := &renderer{o: o, s: s, out: &Rendered{}, metricsPort: metricsPort(s)}
	pod, err := r.pod()
	if err != nil {
		return nil, err
	}
	if o.Job {
		if o.MinInstances != 0 || o.MaxInstances != 0 {
			return nil, errors.New("--min-instances and --max-instances are for services; a job runs once")
		}
		if len(s.Endpoints) > 0 {
			r.warn("a job's endpoints are not exposed: the Job has no Service")
		}
		r.job(pod)
		return r.out, nil
	}
	if err := r.service(pod); err != nil {
		return nil, err
	}
	return r.out, nil
}

type renderer struct {
	o   Options
	s   *spec.Spec
	out *Rendered
	// metricsPort is the port of a modelserve container's metrics, or 0.
	metricsPort int
}

func (r *renderer) warn(format string, args ...any) {
	r.out.Warnings = append(r.out.Warnings, fmt.Sprintf(format, args...))
}

func (r *renderer) add(obj runtime.Object) { r.out.Objects = append(r.out.Objects, obj) }

func (r *renderer) meta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: r.o.Namespace, Labels: r.labels()}
}

func (r *renderer) labels() map[string]string {
	component := "service"
	if r.o.Job {
		component = "job"
	}
	return map[string]string{
		"app.kubernetes.io/name":       r.o.Name,
		"app.kubernetes.io/component":  component,
		"app.kubernetes.io/managed-by": "modelserve",
	}
}

func (r *renderer) selector() map[string]string {
	return map[string]string{"app.kubernetes.io/name": r.o.Name}
}

// pod maps the spec's containers and volumes, and places the pod.
func (r *renderer) pod() (corev1.PodTemplateSpec, error) {
	t := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: r.labels()}}
	volumes, security, err := r.volumes()
	if err != nil {
		return t, err
	}
	t.Spec.Volumes = volumes
	t.Spec.SecurityContext = security
	gpus := int64(0)
	for _, c := range r.s.Containers {
		kc, err := r.container(c)
		if err != nil {
			return t, err
		}
		t.Spec.Containers = append(t.Spec.Containers, kc)
		if c.Resources != nil {
			gpus += c.Resources.Limits.GPU.Value()
		}
	}
	t.Spec.Volumes = append(t.Spec.Volumes, r.secretVolumes()...)
	if err := r.place(&t.Spec, gpus); err != nil {
		return t, err
	}
	if r.metricsPort > 0 && !r.o.ServiceMonitor && !r.o.Job {
		t.Annotations = map[string]string{
			"prometheus.io/scrape": "true",
			"prometheus.io/port":   strconv.Itoa(r.metricsPort),
			"prometheus.io/path":   MetricsPath,
		}
		if servesTLS(r.s) {
			t.Annotations["prometheus.io/scheme"] = "https"
		}
	}
	if authenticates(r.s) && r.metricsPort > 0 && !r.o.Job {
		r.warn("the server authenticates its callers: Prometheus needs a credential with the metrics scope to scrape it (the scrape job's authorization, or the ServiceMonitor's)")
	}
	return t, nil
}

// place applies the compute pool: its node labels and taints, checked
// against the GPUs an instance asks for. GPU pods tolerate the usual
// nvidia.com/gpu taint even without a pool.
func (r *renderer) place(p *corev1.PodSpec, gpus int64) error {
	gpuToleration := corev1.Toleration{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}
	if r.o.ComputePool == "" {
		if gpus > 0 {
			p.Tolerations = []corev1.Toleration{gpuToleration}
		}
		return nil
	}
	if r.o.Pools == nil {
		return errors.New("--compute-pool needs --compute-pools FILE, which maps pools to the cluster's node labels")
	}
	f, family, err := r.o.Pools.Lookup(r.o.ComputePool)
	if err != nil {
		return err
	}
	if gpus > int64(f.GPUsPerNode) {
		return fmt.Errorf("an instance asks for %d GPUs, but a %s node of pool %s has %d", gpus, family, r.o.ComputePool, f.GPUsPerNode)
	}
	p.NodeSelector = f.NodeSelector
	p.Tolerations = slices.Clone(f.Tolerations)
	if gpus > 0 && !slices.ContainsFunc(p.Tolerations, func(t corev1.Toleration) bool { return t.Key == gpuToleration.Key }) {
		p.Tolerations = append(p.Tolerations, gpuToleration)
	}
	return nil
}

// metricsPort is the port of the first modelserve container's metrics:
// its readiness probe's, else the port its environment sets, else the
// default; 0 when no container is modelserve.
func metricsPort(s *spec.Spec) int {
	for _, c := range s.Containers {
		if !isModelserve(c) {
			continue
		}
		if c.ReadinessProbe != nil {
			return c.ReadinessProbe.Port
		}
		if v, err := strconv.Atoi(c.Env["MODELSERVE_PORT"]); err == nil {
			return v
		}
		return spec.ModelPort
	}
	return 0
}

// servesTLS: the modelserve container listens with HTTPS.
func servesTLS(s *spec.Spec) bool {
	return slices.ContainsFunc(s.Containers, func(c spec.Container) bool { return isModelserve(c) && c.ServesTLS() })
}

// authenticates: the modelserve container checks its callers' credentials.
func authenticates(s *spec.Spec) bool {
	return slices.ContainsFunc(s.Containers, func(c spec.Container) bool {
		return isModelserve(c) && (c.Env["MODELSERVE_AUTH_TOKENS"] != "" || c.Env["MODELSERVE_AUTH_JWKS"] != "" || c.Env["MODELSERVE_TLS_CLIENT_CA"] != "")
	})
}

// isModelserve tells a modelserve container, whose metrics are scraped.
func isModelserve(c spec.Container) bool {
	return c.Name == spec.ModelContainer || c.Env[spec.ModelEnv] != "" ||
		len(c.Command) > 0 && path.Base(c.Command[0]) == "modelserve"
}

func (r *renderer) container(c spec.Container) (corev1.Container, error) {
	kc := corev1.Container{Name: c.Name, Image: r.image(c.Image), Command: c.Command, Args: c.Args}
	names := make([]string, 0, len(c.Env))
	for k := range c.Env {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		kc.Env = append(kc.Env, corev1.EnvVar{Name: k, Value: c.Env[k]})
	}
	if p := c.ReadinessProbe; p != nil {
		kc.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: p.Path, Port: intstr.FromInt32(int32(p.Port))}}}
		if c.ServesTLS() {
			// The kubelet does not verify a probe's certificate, and the
			// probe needs no credential: modelserve leaves it open.
			kc.ReadinessProbe.HTTPGet.Scheme = corev1.URISchemeHTTPS
		}
	}
	if c.Resources != nil {
		var err error
		if kc.Resources.Requests, err = resources(c.Resources.Requests); err != nil {
			return kc, fmt.Errorf("container %s requests: %w", c.Name, err)
		}
		if kc.Resources.Limits, err = resources(c.Resources.Limits); err != nil {
			return kc, fmt.Errorf("container %s limits: %w", c.Name, err)
		}
	}
	for _, m := range c.VolumeMounts {
		vm := corev1.VolumeMount{Name: m.Name, MountPath: m.MountPath}
		for _, v := range r.s.Volumes {
			if v.Name == m.Name && v.Kind() == spec.SourceStage {
				_, vm.SubPath = v.Stage()
			}
		}
		kc.VolumeMounts = append(kc.VolumeMounts, vm)
	}
	for _, s := range c.Secrets {
		if s.EnvVarName == "" {
			kc.VolumeMounts = append(kc.VolumeMounts, corev1.VolumeMount{Name: secretVolume(s.SnowflakeSecret), MountPath: s.DirectoryPath, ReadOnly: true})
			continue
		}
		key := s.SecretKeyRef
		if key == "" {
			key = "secret_string"
		}
		kc.Env = append(kc.Env, corev1.EnvVar{Name: s.EnvVarName, ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: SecretName(s.SnowflakeSecret)}, Key: key}}})
	}
	return kc, nil
}

// image makes a reference system repository path pullable.
func (r *renderer) image(ref string) string {
	if strings.HasPrefix(ref, "/") {
		if r.o.ImageRegistry != "" {
			return strings.TrimSuffix(r.o.ImageRegistry, "/") + ref
		}
		r.warn("image %s is a repository path of the reference system; give --image-registry HOST to make it pullable", ref)
	}
	return ref
}

// resources converts quantities exactly: Kubernetes reads the reference
// system's units (Ki Mi Gi k M G m, fractions) the same way.
func resources(l spec.ResourceList) (corev1.ResourceList, error) {
	out := corev1.ResourceList{}
	for _, q := range []struct {
		name corev1.ResourceName
		q    spec.Quantity
	}{{corev1.ResourceCPU, l.CPU}, {corev1.ResourceMemory, l.Memory}, {"nvidia.com/gpu", l.GPU}} {
		if q.q.IsZero() {
			continue
		}
		kq, err := quantity(q.q)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", q.name, err)
		}
		out[q.name] = kq
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func quantity(q spec.Quantity) (resource.Quantity, error) {
	kq, err := resource.ParseQuantity(q.String())
	if err != nil {
		return kq, err
	}
	if kq.MilliValue() != q.Milli() {
		return kq, fmt.Errorf("%s reads as %s in Kubernetes", q, kq.String())
	}
	return kq, nil
}

// volumes maps the spec's volumes; a stage's uid and gid become the pod's
// user and file group.
func (r *renderer) volumes() ([]corev1.Volume, *corev1.PodSecurityContext, error) {
	var out []corev1.Volume
	var sec *corev1.PodSecurityContext
	for _, v := range r.s.Volumes {
		kv := corev1.Volume{Name: v.Name}
		switch v.Kind() {
		case spec.SourceLocal:
			kv.EmptyDir = &corev1.EmptyDirVolumeSource{}
		case spec.SourceMemory:
			size, err := quantity(v.Size)
			if err != nil {
				return nil, nil, fmt.Errorf("volume %s size: %w", v.Name, err)
			}
			kv.EmptyDir = &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: &size}
		case spec.SourceStage:
			stage, _ := v.Stage()
			claim, ok := r.stageClaim(stage)
			if !ok {
				return nil, nil, fmt.Errorf("volume %s mounts the stage %s: name the PersistentVolumeClaim that holds it with --stage %s=CLAIM", v.Name, stage, stageKey(stage))
			}
			kv.PersistentVolumeClaim = &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}
			if uid, gid := v.Owner(); uid != nil || gid != nil {
				if sec == nil {
					sec = &corev1.PodSecurityContext{}
				}
				if err := setOwner(&sec.RunAsUser, uid, "uid"); err != nil {
					return nil, nil, err
				}
				if err := setOwner(&sec.FSGroup, gid, "gid"); err != nil {
					return nil, nil, err
				}
			}
		default:
			return nil, nil, fmt.Errorf("volume %s has source %q, which has no Kubernetes form", v.Name, v.Source)
		}
		out = append(out, kv)
	}
	return out, sec, nil
}

// setOwner sets a pod-wide id; two stages asking for different ones
// cannot both have it.
func setOwner(dst **int64, id *int, what string) error {
	if id == nil {
		return nil
	}
	v := int64(*id)
	if *dst != nil && **dst != v {
		return fmt.Errorf("stage volumes ask for %s %d and %d, but a pod has one", what, **dst, v)
	}
	*dst = &v
	return nil
}

// stageKey is a stage's name without its "@" and database and schema.
func stageKey(stage string) string {
	stage = strings.TrimPrefix(stage, "@")
	if i := strings.LastIndex(stage, "."); i >= 0 {
		stage = stage[i+1:]
	}
	return strings.ToLower(stage)
}

func (r *renderer) stageClaim(stage string) (string, bool) {
	for name, claim := range r.o.Stages {
		if strings.EqualFold(name, stage) || strings.EqualFold(name, stageKey(stage)) {
			return claim, true
		}
	}
	return "", false
}

// SecretName is the Kubernetes Secret that stands for a secret object of
// the reference system: its last name part, lowercased, '_' as '-'.
func SecretName(object string) string {
	if i := strings.LastIndex(object, "."); i >= 0 {
		object = object[i+1:]
	}
	return strings.ReplaceAll(strings.ToLower(strings.Trim(object, `"`)), "_", "-")
}

func secretVolume(object string) string { return "secret-" + SecretName(object) }

// secretVolumes are the volumes of secrets mounted as directories.
func (r *renderer) secretVolumes() []corev1.Volume {
	var out []corev1.Volume
	seen := map[string]bool{}
	for _, c := range r.s.Containers {
		for _, s := range c.Secrets {
			if s.DirectoryPath == "" || seen[s.SnowflakeSecret] {
				continue
			}
			seen[s.SnowflakeSecret] = true
			out = append(out, corev1.Volume{Name: secretVolume(s.SnowflakeSecret),
				VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: SecretName(s.SnowflakeSecret)}}})
		}
	}
	return out
}

// job renders a run-once Job: no retries, no restarts.
func (r *renderer) job(pod corev1.PodTemplateSpec) {
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	backoff := int32(0)
	r.add(&batchv1.Job{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: r.meta(r.o.Name),
		Spec:       batchv1.JobSpec{BackoffLimit: &backoff, Template: pod},
	})
}

// service renders the Deployment and what surrounds it.
func (r *renderer) service(pod corev1.PodTemplateSpec) error {
	minimum, maximum := max(r.o.MinInstances, 1), r.o.MaxInstances
	if maximum == 0 {
		maximum = minimum
	}
	if maximum < minimum {
		return fmt.Errorf("--max-instances %d is below --min-instances %d", maximum, minimum)
	}
	replicas := int32(minimum)
	r.add(&appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: r.meta(r.o.Name),
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: r.selector()},
			Template: pod,
		},
	})
	if len(r.s.Endpoints) > 0 {
		svc := &corev1.Service{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: r.meta(r.o.Name),
			Spec:       corev1.ServiceSpec{Selector: r.selector()},
		}
		for _, e := range r.s.Endpoints {
			p := corev1.ServicePort{Name: e.Name, Port: int32(e.Port), TargetPort: intstr.FromInt32(int32(e.Port)), Protocol: corev1.ProtocolTCP}
			if e.Protocol != spec.ProtocolTCP {
				proto := strings.ToLower(e.Protocol)
				p.AppProtocol = &proto
			}
			svc.Spec.Ports = append(svc.Spec.Ports, p)
		}
		r.add(svc)
	}
	if err := r.ingresses(); err != nil {
		return err
	}
	if maximum > minimum {
		r.autoscaler(pod, minimum, maximum)
	}
	r.add(&policyv1.PodDisruptionBudget{
		TypeMeta:   metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
		ObjectMeta: r.meta(r.o.Name),
		Spec: policyv1.PodDisruptionBudgetSpec{
			// One instance at a time: a node drain never takes the whole
			// service down, and never waits forever on a single instance.
			MaxUnavailable: ptr(intstr.FromInt32(1)),
			Selector:       &metav1.LabelSelector{MatchLabels: r.selector()},
		},
	})
	if r.o.ServiceMonitor {
		if err := r.serviceMonitor(); err != nil {
			return err
		}
	}
	return r.monitoring()
}

// monitoringName names the objects every modelserve service in a
// namespace shares.
const monitoringName = "modelserve"

// monitoring adds the shipped rules and dashboard, when asked.
func (r *renderer) monitoring() error {
	meta := metav1.ObjectMeta{Name: monitoringName, Namespace: r.o.Namespace, Labels: map[string]string{
		"app.kubernetes.io/name":       monitoringName,
		"app.kubernetes.io/component":  "monitoring",
		"app.kubernetes.io/managed-by": "modelserve",
	}}
	if r.o.PrometheusRule {
		var rules monitoringv1.PrometheusRuleSpec
		if err := yaml.UnmarshalStrict(monitoring.Rules(), &rules); err != nil {
			return fmt.Errorf("the shipped rules do not fit a PrometheusRule: %w", err)
		}
		r.add(&monitoringv1.PrometheusRule{
			TypeMeta:   metav1.TypeMeta{APIVersion: "monitoring.coreos.com/v1", Kind: "PrometheusRule"},
			ObjectMeta: meta,
			Spec:       rules,
		})
	}
	if r.o.GrafanaDashboard {
		dash := meta
		dash.Name = monitoringName + "-dashboard"
		// Grafana's sidecar loads ConfigMaps carrying this label.
		dash.Labels = maps.Clone(meta.Labels)
		dash.Labels["grafana_dashboard"] = "1"
		r.add(&corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: dash,
			Data:       map[string]string{"modelserve.json": string(monitoring.Dashboard())},
		})
	}
	return nil
}

// ingresses exposes each public endpoint.
func (r *renderer) ingresses() error {
	var public []spec.Endpoint
	for _, e := range r.s.Endpoints {
		if e.Public {
			public = append(public, e)
		}
	}
	if len(public) > 1 && r.o.IngressDomain == "" {
		return fmt.Errorf("%d endpoints are public: give --ingress-domain so that each gets its own host", len(public))
	}
	for _, e := range public {
		name := r.o.Name
		if len(public) > 1 {
			name += "-" + e.Name
		}
		rule := networkingv1.IngressRule{IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
			Paths: []networkingv1.HTTPIngressPath{{
				Path:     "/",
				PathType: ptr(networkingv1.PathTypePrefix),
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
					Name: r.o.Name, Port: networkingv1.ServiceBackendPort{Name: e.Name}}},
			}},
		}}}
		if r.o.IngressDomain != "" {
			rule.Host = e.Name + "-" + r.o.Name + "." + r.o.IngressDomain
		}
		ing := &networkingv1.Ingress{
			TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"},
			ObjectMeta: r.meta(name),
			Spec:       networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{rule}},
		}
		if r.o.IngressClass != "" {
			ing.Spec.IngressClassName = ptr(r.o.IngressClass)
		}
		if e.Protocol == spec.ProtocolHTTPS {
			ing.Annotations = map[string]string{"nginx.ingress.kubernetes.io/backend-protocol": "HTTPS"}
		}
		r.add(ing)
	}
	return nil
}

// autoscaler scales on the queue depth per instance modelserve exports,
// and on CPU when every container requests CPU: the cluster's autoscaler
// takes the larger of the two, and CPU alone if the queue metric is
// missing.
func (r *renderer) autoscaler(pod corev1.PodTemplateSpec, minimum, maximum int) {
	target := r.o.TargetQueue
	if target == 0 {
		target = DefaultTargetQueue
	}
	cpu := r.o.TargetCPU
	if cpu == 0 {
		cpu = DefaultTargetCPU
	}
	var metrics []autoscalingv2.MetricSpec
	if r.metricsPort > 0 {
		metrics = append(metrics, autoscalingv2.MetricSpec{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: QueueMetric},
			Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewQuantity(int64(target), resource.DecimalSI)},
		}})
	} else {
		r.warn("no container is modelserve, so the autoscaler scales on CPU only")
	}
	requestCPU := !slices.ContainsFunc(pod.Spec.Containers, func(c corev1.Container) bool {
		_, ok := c.Resources.Requests[corev1.ResourceCPU]
		return !ok
	})
	if requestCPU {
		metrics = append(metrics, autoscalingv2.MetricSpec{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
			Name:   corev1.ResourceCPU,
			Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr(int32(cpu))},
		}})
	} else {
		r.warn("not every container requests CPU, so the autoscaler has no CPU to fall back on: set resources.requests.cpu")
	}
	r.add(&autoscalingv2.HorizontalPodAutoscaler{
		TypeMeta:   metav1.TypeMeta{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler"},
		ObjectMeta: r.meta(r.o.Name),
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: r.o.Name},
			MinReplicas:    ptr(int32(minimum)),
			MaxReplicas:    int32(maximum),
			Metrics:        metrics,
		},
	})
}

// serviceMonitor has the Prometheus Operator scrape every instance.
func (r *renderer) serviceMonitor() error {
	port := ""
	for _, e := range r.s.Endpoints {
		if e.Port == r.metricsPort {
			port = e.Name
		}
	}
	if port == "" {
		return errors.New("--service-monitor scrapes modelserve's metrics through an endpoint on its port, and the spec has none")
	}
	r.add(&monitoringv1.ServiceMonitor{
		TypeMeta:   metav1.TypeMeta{APIVersion: "monitoring.coreos.com/v1", Kind: "ServiceMonitor"},
		ObjectMeta: r.meta(r.o.Name),
		Spec: monitoringv1.ServiceMonitorSpec{
			Selector:  metav1.LabelSelector{MatchLabels: r.selector()},
			Endpoints: []monitoringv1.Endpoint{{Port: port, Path: MetricsPath}},
		},
	})
	return nil
}

func ptr[T any](v T) *T { return &v }
