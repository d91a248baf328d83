package kube

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/modelserve/modelserve/deploy/spec"
	"github.com/modelserve/modelserve/monitoring"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func readSpec(t *testing.T, path string) *spec.Spec {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := spec.Parse(path, data)
	if err != nil {
		t.Fatal(err)
	}
	return p.Spec
}

func modelSpec(t *testing.T, m spec.ModelService) *spec.Spec {
	t.Helper()
	s, err := spec.ForModel(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type golden struct {
	name string
	spec *spec.Spec
	o    Options
}

func goldenCases(t *testing.T) []golden {
	pools, err := ReadPools("testdata/pools.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := []golden{
		{"cpu-service", modelSpec(t, spec.ModelService{Model: "iris:1", Image: "registry.example.com/ml/iris:1", Workers: 2,
			CPU: spec.MustQuantity("1"), Memory: spec.MustQuantity("2Gi")}),
			Options{Name: "iris", Namespace: "ml"}},
		{"gpu-service-ingress-autoscaling", modelSpec(t, spec.ModelService{Model: "encoder:3", Image: "registry.example.com/ml/encoder:3", GPUs: 1,
			Ingress: true, CPU: spec.MustQuantity("3.5"), Memory: spec.MustQuantity("12Gi"), MaxBatchRows: 256}),
			Options{Name: "encoder", Namespace: "ml", MinInstances: 2, MaxInstances: 6, ComputePool: "MY_GPU_POOL", Pools: pools,
				IngressDomain: "ml.example.com", IngressClass: "nginx"}},
		{"service-monitor", modelSpec(t, spec.ModelService{Model: "iris:1", Image: "registry.example.com/ml/iris:1"}),
			Options{Name: "iris", MaxInstances: 3, ServiceMonitor: true, TargetQueue: 8}},
		{"rules-and-dashboard", modelSpec(t, spec.ModelService{Model: "iris:1", Image: "registry.example.com/ml/iris:1"}),
			Options{Name: "iris", Namespace: "ml", ServiceMonitor: true, PrometheusRule: true, GrafanaDashboard: true}},
		{"tls-mtls-tokens-jwt-service", modelSpec(t, spec.ModelService{Model: "iris:1", Image: "registry.example.com/ml/iris:1",
			Auth: spec.AuthSecrets{Tokens: "iris-tokens", JWKS: "idp-jwks", Issuer: "https://idp.example.com", Audience: "modelserve",
				TLS: "iris-tls", ClientCA: "clients-ca", Require: true}}),
			Options{Name: "iris", Namespace: "ml"}},
		{"job-memory-and-stage-volumes", readSpec(t, "testdata/job.yaml"),
			Options{Name: "score", Job: true, Stages: map[string]string{"scoring": "scoring-data"}, ComputePool: "my_cpu_pool", Pools: pools,
				ImageRegistry: "registry.example.com"}},
	}
	seeds, _ := filepath.Glob("../spec/testdata/seeds/*.yaml")
	if len(seeds) == 0 {
		t.Fatal("no seed specs")
	}
	for _, path := range seeds {
		s := readSpec(t, path)
		o := Options{Name: "seed", Job: strings.Contains(path, "job"), Stages: map[string]string{}, ImageRegistry: "registry.example.com",
			IngressDomain: "example.com"}
		for _, v := range s.Volumes {
			if v.Kind() == spec.SourceStage {
				stage, _ := v.Stage()
				o.Stages[stageKey(stage)] = stageKey(stage) + "-claim"
			}
		}
		cases = append(cases, golden{"seed-" + strings.TrimSuffix(filepath.Base(path), ".yaml"), s, o})
	}
	return cases
}

// stream is what the golden file holds: the warnings as comments, then
// the manifests.
func stream(t *testing.T, r *Rendered) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "# warning: %s\n", w)
	}
	if err := WriteStream(&b, r.Objects); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestRender_golden(t *testing.T) {
	for _, tt := range goldenCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Render(tt.spec, tt.o)
			if err != nil {
				t.Fatal(err)
			}
			got := stream(t, r)
			path := filepath.Join("testdata", "golden", tt.name+".yaml")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test -update writes it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the rendering (go test -update rewrites it):\n%s", path, got)
			}
		})
	}
}

// typed are the kinds modelserve renders, each with its API type.
var typed = map[string]func() runtime.Object{
	"Deployment":              func() runtime.Object { return &appsv1.Deployment{} },
	"Service":                 func() runtime.Object { return &corev1.Service{} },
	"Ingress":                 func() runtime.Object { return &networkingv1.Ingress{} },
	"HorizontalPodAutoscaler": func() runtime.Object { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"PodDisruptionBudget":     func() runtime.Object { return &policyv1.PodDisruptionBudget{} },
	"ServiceMonitor":          func() runtime.Object { return &monitoringv1.ServiceMonitor{} },
	"PrometheusRule":          func() runtime.Object { return &monitoringv1.PrometheusRule{} },
	"ConfigMap":               func() runtime.Object { return &corev1.ConfigMap{} },
	"Job":                     func() runtime.Object { return &batchv1.Job{} },
}

// decodeStrict reads one document into its API type; an unknown or
// misspelt field, or a value of the wrong type, is an error.
func decodeStrict(doc []byte) (runtime.Object, error) {
	var head struct{ Kind string }
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return nil, err
	}
	mk, ok := typed[head.Kind]
	if !ok {
		return nil, fmt.Errorf("kind %q is not one modelserve renders", head.Kind)
	}
	obj := mk()
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", head.Kind, err)
	}
	return obj, nil
}

func documents(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(data, []byte("\n---\n")) {
		if len(bytes.TrimSpace(d)) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

// TestRender_roundTripsThroughStrictDecoding: every rendered document
// decodes strictly into its API type and encodes back the same, so no
// field is unknown, mistyped or lost.
func TestRender_roundTripsThroughStrictDecoding(t *testing.T) {
	kinds := map[string]bool{}
	for _, tt := range goldenCases(t) {
		r, err := Render(tt.spec, tt.o)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		for _, obj := range r.Objects {
			doc, err := Encode(obj)
			if err != nil {
				t.Fatal(err)
			}
			back, err := decodeStrict(doc)
			if err != nil {
				t.Errorf("%s: %v\n%s", tt.name, err, doc)
				continue
			}
			kinds[reflect.TypeOf(back).Elem().Name()] = true
			again, _ := Encode(back)
			if !bytes.Equal(doc, again) {
				t.Errorf("%s: a %T changes in a round trip:\n%s\nthen\n%s", tt.name, back, doc, again)
			}
		}
	}
	if len(kinds) != len(typed) {
		t.Errorf("the cases render %d kinds of the %d: %v", len(kinds), len(typed), kinds)
	}
	// The check can fail: a misspelt field is refused.
	if _, err := decodeStrict([]byte("apiVersion: apps/v1\nkind: Deployment\nspec:\n  replica: 2\n")); err == nil || !strings.Contains(err.Error(), "replica") {
		t.Errorf("a misspelt field decoded: %v", err)
	}
}

// TestWriteDir_kubectlKustomizeAcceptsIt builds the directory with the
// real kubectl.
func TestWriteDir_kubectlKustomizeAcceptsIt(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatal("kubectl is needed (make test installs it): ", err)
	}
	for _, tt := range goldenCases(t)[:4] {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Render(tt.spec, tt.o)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if _, err := WriteDir(dir, r.Objects); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(kubectl, "kustomize", dir).CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl kustomize: %v\n%s", err, out)
			}
			docs := documents(out)
			if len(docs) != len(r.Objects) {
				t.Fatalf("kustomize built %d documents from %d", len(docs), len(r.Objects))
			}
			for _, d := range docs {
				if _, err := decodeStrict(d); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestRender_refusals(t *testing.T) {
	pools, err := ReadPools("testdata/pools.yaml")
	if err != nil {
		t.Fatal(err)
	}
	gpu := modelSpec(t, spec.ModelService{Model: "m:1", Image: "i", GPUs: 2})
	job := readSpec(t, "testdata/job.yaml")
	two := modelSpec(t, spec.ModelService{Model: "m:1", Image: "i", Ingress: true})
	two.Endpoints = append(two.Endpoints, spec.Endpoint{Name: "admin", Port: 9000, Public: true, Protocol: spec.ProtocolHTTPS})
	tests := []struct {
		name string
		s    *spec.Spec
		o    Options
		want string
	}{
		{"a name Kubernetes refuses", gpu, Options{Name: "My_Service"}, `--name: service name "My_Service" must be lowercase letters`},
		{"more GPUs than a node has", gpu, Options{Name: "m", ComputePool: "my_gpu_pool", Pools: pools}, "asks for 2 GPUs, but a GPU_NV_S node of pool my_gpu_pool has 1"},
		{"a pool without a pools file", gpu, Options{Name: "m", ComputePool: "my_gpu_pool"}, "--compute-pool needs --compute-pools FILE"},
		{"an unknown pool", gpu, Options{Name: "m", ComputePool: "tiny", Pools: pools}, `no compute pool or instance family "tiny"`},
		{"a stage without its claim", job, Options{Name: "score", Job: true}, "name the PersistentVolumeClaim that holds it with --stage scoring=CLAIM"},
		{"instances for a job", job, Options{Name: "score", Job: true, MaxInstances: 2, Stages: map[string]string{"scoring": "c"}}, "a job runs once"},
		{"fewer at most than at least", gpu, Options{Name: "m", MinInstances: 3, MaxInstances: 2}, "--max-instances 2 is below --min-instances 3"},
		{"two public endpoints, one host", two, Options{Name: "m"}, "give --ingress-domain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Render(tt.s, tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestResources_convertExactly(t *testing.T) {
	tests := []struct{ in, want string }{
		{"0.5", "500m"}, {"2", "2"}, {"100m", "100m"}, {"2G", "2G"}, {"4Gi", "4Gi"}, {"1.5Gi", "1536Mi"}, {"512Mi", "512Mi"}, {"8k", "8k"},
	}
	for _, tt := range tests {
		q := spec.MustQuantity(tt.in)
		kq, err := quantity(q)
		if err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		if kq.String() != tt.want || kq.MilliValue() != q.Milli() {
			t.Errorf("%s became %s (%d milli), want %s (%d milli)", tt.in, kq.String(), kq.MilliValue(), tt.want, q.Milli())
		}
	}
}

// TestRender_rulesAndDashboardAreTheShippedOnes: the PrometheusRule holds
// the shipped rule file whole, the ConfigMap the shipped dashboard, and a
// job gets neither.
func TestRender_rulesAndDashboardAreTheShippedOnes(t *testing.T) {
	o := Options{Name: "iris", ServiceMonitor: true, PrometheusRule: true, GrafanaDashboard: true}
	r, err := Render(modelSpec(t, spec.ModelService{Model: "iris:1", Image: "registry.example.com/ml/iris:1"}), o)
	if err != nil {
		t.Fatal(err)
	}
	var found int
	for _, obj := range r.Objects {
		switch x := obj.(type) {
		case *monitoringv1.PrometheusRule:
			found++
			got, err := yaml.Marshal(x.Spec)
			if err != nil {
				t.Fatal(err)
			}
			var a, b any
			if err := yaml.Unmarshal(got, &a); err != nil {
				t.Fatal(err)
			}
			if err := yaml.Unmarshal(monitoring.Rules(), &b); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(a, b) {
				t.Errorf("the PrometheusRule differs from the shipped rules:\n%s", got)
			}
		case *corev1.ConfigMap:
			found++
			if x.Data["modelserve.json"] != string(monitoring.Dashboard()) || x.Labels["grafana_dashboard"] != "1" {
				t.Errorf("the dashboard ConfigMap is not the shipped dashboard, labelled for Grafana's sidecar")
			}
		}
	}
	if found != 2 {
		t.Fatalf("%d of the rules and the dashboard rendered", found)
	}
	job := readSpec(t, "testdata/job.yaml")
	jr, err := Render(job, Options{Name: "score", Job: true, PrometheusRule: true, GrafanaDashboard: true, Stages: map[string]string{"scoring": "scoring-data"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range jr.Objects {
		switch obj.(type) {
		case *monitoringv1.PrometheusRule, *corev1.ConfigMap:
			t.Errorf("a job rendered %T", obj)
		}
	}
}
