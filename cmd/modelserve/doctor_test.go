package main

import (
	"regexp"
	"testing"
)

// TestDoctor_anHonestCPUOnlyReport: on this machine, without a GPU or its
// driver, doctor says what is missing and that serve would run on the CPU.
func TestDoctor_anHonestCPUOnlyReport(t *testing.T) {
	c := newCLI(t)
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"doctor"}, []string{
			`library\s+\S+libonnxruntime\.so\.1 \(1\.30\.0`,
			`providers\s+CPU: built in`,
			`CUDA: missing \(no libonnxruntime_providers_cuda\.so\)`,
			`NVML\s+no NVML: libnvidia-ml\.so\.1 is not installed`,
			`device\s+cpu`,
			`why not a GPU\s+no NVML`,
			`workers\s+2 × 1 intra-op thread\(s\)|workers\s+\d+ × \d+ intra-op`,
		}},
		{[]string{"doctor", "--device", "cuda"}, []string{`serve would fail at start: --device cuda: cannot run on a GPU: no NVML`}},
		{[]string{"doctor", "--device", "cpu", "--workers", "3"}, []string{`device\s+cpu`, `workers\s+3 × 1 intra-op thread\(s\)`}},
	}
	for _, tt := range tests {
		out := c.must(tt.args...)
		for _, w := range tt.want {
			if !regexp.MustCompile(w).MatchString(out) {
				t.Errorf("modelserve %v: no match for %s in\n%s", tt.args, w, out)
			}
		}
	}
}
