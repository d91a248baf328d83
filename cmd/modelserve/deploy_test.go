package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeployKubernetes_serviceAndJob renders a generated service spec into
// a directory kubectl kustomize builds, and a job spec with a stage to a
// stream.
func TestDeployKubernetes_serviceAndJob(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	dir := t.TempDir()
	svc := filepath.Join(dir, "iris.yaml")
	c.must("service", "spec", "--model", "iris:1", "--image", "registry.example.com/ml/iris:1", "--cpu", "1", "--ingress", "-o", svc)
	out := filepath.Join(dir, "k8s")
	listed := c.must("deploy", "kubernetes", "--spec", svc, "--name", "iris", "--namespace", "ml", "--max-instances", "4", "-o", out)
	for _, f := range []string{"deployment-iris.yaml", "service-iris.yaml", "ingress-iris.yaml", "horizontalpodautoscaler-iris.yaml",
		"poddisruptionbudget-iris.yaml", "kustomization.yaml"} {
		if !strings.Contains(listed, filepath.Join(out, f)) {
			t.Errorf("%s not written; the command listed:\n%s", f, listed)
		}
	}
	built, err := exec.Command("kubectl", "kustomize", out).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, built)
	}
	if docs := strings.Count(string(built), "\n---\n") + 1; docs != 5 {
		t.Errorf("kustomize built %d documents, want 5:\n%s", docs, built)
	}

	job := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(job, []byte(`spec:
  containers:
  - name: main
    image: /ml/public/images/modelserve:1
    command: [modelserve]
    args: [predict-batch, --model, iris, --input, /data/in.parquet, --output, /data/out.parquet]
    volumeMounts:
    - {name: data, mountPath: /data}
  volumes:
  - {name: data, source: "@ml.public.scoring"}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := c.run("deploy", "kubernetes", "--spec", job, "--name", "score", "--job")
	if err == nil || !strings.Contains(stderr, "--stage scoring=CLAIM") {
		t.Errorf("a stage without a claim: %v\n%s", err, stderr)
	}
	stream, stderr, err := c.run("deploy", "kubernetes", "--spec", job, "--name", "score", "--job", "--stage", "scoring=scoring-data")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	for _, want := range []string{"kind: Job", "claimName: scoring-data", "restartPolicy: Never", "backoffLimit: 0"} {
		if !strings.Contains(stream, want) {
			t.Errorf("the job's manifest lacks %q:\n%s", want, stream)
		}
	}
	if !strings.Contains(stderr, "give --image-registry HOST") {
		t.Errorf("no warning about the repository path image: %s", stderr)
	}
}
