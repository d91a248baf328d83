package model

import (
	"strings"
	"testing"
)

func TestCheckName(t *testing.T) {
	long := strings.Repeat("a", 129)
	tests := []struct {
		kind NameKind
		name string
		want string // "" when accepted
	}{
		{ModelName, "iris", ""},
		{ModelName, "my-model_v2.1", ""},
		{ModelName, "2024", ""},
		{VersionName, "2024.1-rc_2", ""},
		{ModelName, "", "is empty"},
		{ModelName, long, "the limit is 128"},
		{ModelName, "..", "must start with a letter or digit"},
		{ModelName, ".hidden", "must start with a letter or digit"},
		{ModelName, "../etc", "must start with a letter or digit"},
		{ModelName, "a/b", "hold only letters"},
		{VersionName, "1/../../x", "hold only letters"},
		{ModelName, "a b", "hold only letters"},
		{ModelName, "a\x00b", "hold only letters"},
		{ModelName, "été", "hold only letters"},
		{ModelName, "$(reboot)", "must start with a letter or digit"},
		{FunctionName, "predict_proba", ""},
		{FunctionName, "Predict2", ""},
		{FunctionName, "2predict", "must start with a letter"},
		{FunctionName, "predict-proba", "only letters, digits and underscores"},
		{FunctionName, "predict.x", "only letters, digits and underscores"},
		{ServiceName, "iris-svc", ""},
		{ServiceName, "iris_svc", "lowercase letters, digits and '-'"},
		{ServiceName, "Iris", "lowercase letters, digits and '-'"},
		{ServiceName, "iris-", "end with a letter or digit"},
		{ServiceName, "1iris", "start with a letter"},
		{JobName, strings.Repeat("a", 64), "the limit is 63"},
		{ObjectName, "main", ""},
		{KeyName, "secret_string", ""},
		{KeyName, "../key", "must start with a letter or digit"},
	}
	for _, tt := range tests {
		err := CheckName(tt.kind, tt.name)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s %q: %v", tt.kind, tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s %q = %v, want an error with %q", tt.kind, tt.name, err, tt.want)
		}
	}
}

func TestLabelFrom(t *testing.T) {
	for in, want := range map[string]string{"score_job": "score-job", "Nightly.Batch": "nightly-batch", "a b": "a-b"} {
		if got := LabelFrom(in); got != want || CheckName(JobName, got) != nil {
			t.Errorf("LabelFrom(%q) = %q", in, got)
		}
	}
}
