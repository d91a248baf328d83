package model

import "testing"

func TestDType_OIPNames(t *testing.T) {
	for d := Float32; d <= String; d++ {
		if d.OIP() == "" {
			t.Errorf("%s has no Open Inference Protocol name", d)
		}
	}
	if Float32.OIP() != "FP32" || String.OIP() != "BYTES" || Uint64.OIP() != "UINT64" || Invalid.OIP() != "" {
		t.Error("wrong names")
	}
}
