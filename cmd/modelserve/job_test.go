package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelserve/modelserve/internal/testenv"
)

// TestJobRun_registersAModelFromAStage: a job whose container is modelserve
// reads the model from a stage folder (its mount path translated to the
// folder given with --stage) and a secret as an environment variable, runs
// once, and keeps its log.
func TestJobRun_registersAModelFromAStage(t *testing.T) {
	c := newCLI(t)
	stage := t.TempDir()
	os.MkdirAll(filepath.Join(stage, "models"), 0o755)
	data, err := os.ReadFile(testenv.Model(t, "iris"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(stage, "models", "iris.onnx"), data, 0o644)
	dir := t.TempDir()
	job := filepath.Join(dir, "register.yaml")
	os.WriteFile(job, []byte(`spec:
  containers:
  - name: main
    image: /db/schema/repo/modelserve:1
    command: [modelserve]
    args: [registry, log, --name, iris, --version, "7", --file, /stage/iris.onnx, --function, predict=label]
    volumeMounts:
    - name: models
      mountPath: /stage
    - name: scratch
      mountPath: /dev/shm
    secrets:
    - snowflakeSecret: note
      envVarName: MODELSERVE_COMMENT
  volumes:
  - name: models
    source: "@db.schema.models/models"
  - name: scratch
    source: memory
    size: 64Mi
`), 0o644)
	t.Setenv("JOB_NOTE", "logged by a job")
	stateDir := t.TempDir()
	_, errOut, err := c.run("job", "run", "--spec", job, "--state-dir", stateDir, "--stage", "models="+stage, "--secret", "note=env:JOB_NOTE")
	if err != nil {
		t.Fatalf("job run: %v\n%s", err, errOut)
	}
	if !strings.Contains(errOut, "main: exit status 0, log "+stateDir) {
		t.Errorf("job run's report:\n%s", errOut)
	}
	show := c.must("registry", "show", "iris:7")
	if !strings.Contains(show, "logged by a job") {
		t.Errorf("the secret did not reach the container:\n%s", show)
	}
	logs, _ := filepath.Glob(filepath.Join(stateDir, "jobs", "register-*", "logs", "0", "main.log"))
	if len(logs) != 1 {
		t.Fatalf("job logs: %v", logs)
	}

	// A job whose container fails exits non-zero and keeps that log too.
	broken := filepath.Join(dir, "broken.yaml")
	spec, _ := os.ReadFile(job)
	os.WriteFile(broken, []byte(strings.Replace(string(spec), "/stage/iris.onnx", "/stage/missing.onnx", 1)), 0o644)
	_, errOut, err = c.run("job", "run", "--spec", broken, "--state-dir", stateDir, "--stage", "models="+stage, "--secret", "note=env:JOB_NOTE")
	if err == nil || !strings.Contains(errOut, "job broken failed") || !strings.Contains(errOut, "exit status 1") {
		t.Errorf("a failing job: %v\n%s", err, errOut)
	}
	logs, _ = filepath.Glob(filepath.Join(stateDir, "jobs", "broken-*", "logs", "0", "main.log"))
	if len(logs) != 1 {
		t.Fatalf("the failed run's logs: %v", logs)
	}
	failed, _ := os.ReadFile(logs[0])
	if !strings.Contains(string(failed), "stderr modelserve: ") || !strings.Contains(string(failed), filepath.Join(stage, "models", "missing.onnx")) {
		t.Errorf("the failed run's log:\n%s", failed)
	}

	// A stage the user did not map is an error that says what to give.
	_, errOut, err = c.run("job", "run", "--spec", job, "--state-dir", stateDir, "--secret", "note=env:JOB_NOTE")
	if err == nil || !strings.Contains(errOut, "--stage models=DIR") {
		t.Errorf("an unmapped stage: %v\n%s", err, errOut)
	}
}
