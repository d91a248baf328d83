package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelserve/modelserve/internal/testenv"
	"github.com/modelserve/modelserve/onnxrt"
)

// quickCheck keeps doctor --run short in tests; make gpu-check runs it in full.
var quickCheck = []string{"--duration", "300ms", "--batch-sizes", "1,64", "--callers", "16"}

// TestDoctorRun_measuresAndChecksOnTheCPU: doctor --run --device cpu loads
// a registered model and a model file, measures them raw and through
// /predict, batching on and off, and admission against a narrowed budget,
// and passes; the report also lands in --out.
func TestDoctorRun_measuresAndChecksOnTheCPU(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	report := filepath.Join(t.TempDir(), "check.md")
	out := c.must(append([]string{"doctor", "--run", "--device", "cpu", "--model", "iris",
		"--model-file", testenv.Model(t, "dlrm"), "--out", report}, quickCheck...)...)
	for _, want := range []string{
		`## iris:1 `, `## dlrm:1 \(\S+dlrm\.onnx, 2\.2 MiB\)`,
		`\| workers \(2 × 1 intra-op threads\) \| 0: cpu CPUExecutionProvider; 1: cpu CPUExecutionProvider \| pass \|`,
		`\| host memory \(resident\) \| before load [\d.]+ MiB, after`,
		`\| 1 \| \d+ \| \d+ \| [\d.]+ \| 16 \|`,
		`\| 64 \| \d+ \| \d+ \| [\d.]+ \| 3 \|`,
		`\| batching on \(defaults\) \| \d+ \| [\d.]+ \|`,
		`\| batching off \(--max-batch-rows 1\) \| \d+ \| 1\.0 \|`,
		`\| admission, a request of 4096 rows \(memory budget narrowed to about 1024 rows .*\) \| 413 in .*whole memory budget.* \| pass \|`,
		`\| admission, a flood of 16 callers of 128 rows for [^|]+ \| .*\d+×200.* \| pass \|`,
		`\| panics recovered \| 0 \| pass \|`,
		`\*\*Result: pass\*\* \(2 model\(s\) on cpu\)`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("no match for %s in\n%s", want, out)
		}
	}
	if b, err := os.ReadFile(report); err != nil || string(b) != out {
		t.Errorf("--out: %v; the file differs from what was printed:\n%s", err, b)
	}
}

// TestDoctorRun_failsWhatFails: a model ONNX Runtime cannot run fails the
// check with its reason and a non-zero status; without a GPU the default
// device says why in one line, at once; without a model it says how.
func TestDoctorRun_failsWhatFails(t *testing.T) {
	c := newCLI(t)
	out, _, err := c.run(append([]string{"doctor", "--run", "--device", "cpu", "--model-file", testenv.Model(t, "fragile")}, quickCheck...)...)
	if err == nil || !strings.Contains(out, "**Result: FAIL**") || !strings.Contains(out, "- fragile:1: raw ONNX Runtime at 1 rows: Error running network") {
		t.Errorf("a model that cannot run: err %v, report\n%s", err, out)
	}

	start := time.Now()
	_, errOut, err := c.run("doctor", "--run", "--model-file", testenv.Model(t, "dlrm"))
	if err == nil || !regexp.MustCompile(`^modelserve: no GPU to check on this machine: no NVML: .*--device cpu runs the same check on the CPU\)\n$`).MatchString(errOut) {
		t.Errorf("no GPU: err %v, stderr %q", err, errOut)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("no GPU: took %s to say so", took)
	}

	_, errOut, err = c.run("doctor", "--run", "--device", "cpu")
	if err == nil || !strings.Contains(errOut, "make gpu-check") {
		t.Errorf("no model: err %v, stderr %q", err, errOut)
	}
}

// TestGPUBundle_roundTrip packs the GPU check as gpu-bundle.sh does for
// the offline GPU machine (fast compression, small parts so there are
// several), sends the parts over two "transfers" with a damaged one in
// the first, and runs the unpacked check on the CPU.
func TestGPUBundle_roundTrip(t *testing.T) {
	root := testenv.RepoRoot(t)
	if _, err := os.Stat(filepath.Join(onnxrt.GPULibraryDir(), "libonnxruntime_providers_cuda.so")); err != nil {
		t.Fatalf("the GPU build of ONNX Runtime is missing; make test fetches it (make ort-gpu): %v", err)
	}
	script := func(name string, args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(root, "scripts", name), args...)
		cmd.Dir = root
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	if out, err := script("gpu-bundle.sh", t.TempDir(), "--part-size", "61M"); err == nil || !strings.Contains(out, "at most 60M") {
		t.Errorf("a 61M part size: err %v\n%s", err, out)
	}

	bundle := t.TempDir()
	const part = 40 << 20
	if out, err := script("gpu-bundle.sh", bundle, "--fast", "--part-size", "40M"); err != nil {
		t.Fatalf("gpu-bundle.sh: %v\n%s", err, out)
	}
	parts, _ := filepath.Glob(filepath.Join(bundle, "modelserve-gpu.tar.gz.part-*"))
	if len(parts) < 3 {
		t.Fatalf("want several parts, got %v", parts)
	}
	for _, p := range parts {
		if st, err := os.Stat(p); err != nil || st.Size() > part {
			t.Errorf("%s: %v, %d bytes (at most %d)", p, err, st.Size(), part)
		}
	}

	far := t.TempDir()
	send := func(name string, damage bool) {
		b, err := os.ReadFile(filepath.Join(bundle, name))
		if err != nil {
			t.Fatal(err)
		}
		if damage {
			b[len(b)/2] ^= 0xff
		}
		if err := os.WriteFile(filepath.Join(far, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	send("modelserve-gpu.sha256", false)
	send(filepath.Base(parts[0]), false)
	send(filepath.Base(parts[1]), true)
	out, err := script("gpu-unpack.sh", far)
	if code := exitCode(err); code != 3 || !strings.Contains(out, filepath.Base(parts[1])+" is damaged") ||
		!strings.Contains(out, "have 1 of "+strconv.Itoa(len(parts))+" parts; still to send: ") {
		t.Fatalf("first transfer: exit %d\n%s", code, out)
	}
	for _, p := range parts[1:] {
		send(filepath.Base(p), false)
	}
	out, err = script("gpu-unpack.sh", append([]string{far, "--", "--device", "cpu"}, quickCheck...)...)
	if err != nil || !strings.Contains(out, "**Result: pass** (2 model(s) on cpu)") || !strings.Contains(out, "## encoder:1") {
		t.Fatalf("second transfer: %v\n%s", err, out)
	}
	if !strings.Contains(out, "ONNX Runtime 1.29.0 from "+filepath.Join(far, "unpacked", "lib")) {
		t.Errorf("the check did not use the bundle's ONNX Runtime:\n%s", out)
	}
}

func exitCode(err error) int {
	if e, ok := err.(*exec.ExitError); ok {
		return e.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
