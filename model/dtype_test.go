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

func TestParseOIP_readsWhatOIPWrites(t *testing.T) {
	for d := DType(1); d.OIP() != ""; d++ {
		if got, err := ParseOIP(d.OIP()); err != nil || got != d {
			t.Errorf("ParseOIP(%q) = %v, %v; want %v", d.OIP(), got, err, d)
		}
	}
	for _, bad := range []string{"", "fp32", "FLOAT"} {
		if _, err := ParseOIP(bad); err == nil {
			t.Errorf("ParseOIP(%q) took it", bad)
		}
	}
}
