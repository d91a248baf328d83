package registry

import (
	"cmp"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/modelserve/modelserve/model"
)

// Version is one registered model version: its manifest.json.
type Version struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Created is when the version was logged here; images leave it out,
	// so that packaging the same model anywhere gives the same bytes.
	Created   time.Time       `json:"created,omitzero"`
	Comment   string          `json:"comment,omitempty"`
	File      string          `json:"file"`
	Size      int64           `json:"size"`
	SHA256    string          `json:"sha256"`
	Signature model.Signature `json:"signature"`
	// Producer, Description and Metadata come from the ONNX file.
	Producer    string            `json:"producer,omitempty"`
	Description string            `json:"description,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	// Settings tune how the version is served; flags override them.
	Settings Settings `json:"settings,omitzero"`

	// Dir is the version's folder; it is not stored.
	Dir string `json:"-"`
}

// Settings are a version's own serving settings; zero means "the server's
// default".
type Settings struct {
	// MaxBatchRows is the most rows one ONNX Runtime call takes.
	MaxBatchRows int `json:"max_batch_rows,omitempty"`
	// MaxBatchDelay is how long a free worker may wait to fill a batch:
	// "auto" or a duration such as "250us".
	MaxBatchDelay string `json:"max_batch_delay,omitempty"`

	// On a GPU: the device memory one row takes, which admission counts
	// (0: measured at load); the cap on each session's memory arena
	// (gpu_mem_limit, 0: none); how the arena grows; and how cuDNN picks
	// convolution algorithms.
	DeviceBytesPerRow   int64  `json:"device_bytes_per_row,omitempty"`
	GPUMemLimit         int64  `json:"gpu_mem_limit,omitempty"`
	ArenaExtendStrategy string `json:"arena_extend_strategy,omitempty"`
	ConvAlgoSearch      string `json:"cudnn_conv_algo_search,omitempty"`
}

// Validate refuses settings that make no sense.
func (s Settings) Validate() error {
	if s.MaxBatchRows < 0 {
		return fmt.Errorf("max batch rows must be positive, not %d", s.MaxBatchRows)
	}
	if s.DeviceBytesPerRow < 0 || s.GPUMemLimit < 0 {
		return fmt.Errorf("device bytes per row and the GPU memory limit must be positive")
	}
	if d := s.MaxBatchDelay; d != "" && d != "auto" {
		if v, err := time.ParseDuration(d); err != nil || v < 0 {
			return fmt.Errorf("max batch delay %q: write auto or a duration like 250us", d)
		}
	}
	return nil
}

// Manifest is the version's manifest.json as the registry writes it.
func (v Version) Manifest() ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("writing manifest of %s: %w", v.Ref(), err)
	}
	return append(b, '\n'), nil
}

// Ref is the version's NAME:VERSION.
func (v Version) Ref() string { return v.Name + ":" + v.Version }

// ModelPath is the model file's path.
func (v Version) ModelPath() string { return v.Dir + "/" + v.File }

// ParseRef splits NAME[:VERSION]; the version is empty when absent.
func ParseRef(ref string) (name, version string, err error) {
	name, version, _ = strings.Cut(ref, ":")
	if err := model.CheckName(model.ModelName, name); err != nil {
		return "", "", err
	}
	if version != "" {
		if err := model.CheckName(model.VersionName, version); err != nil {
			return "", "", err
		}
	}
	return name, version, nil
}

// compareVersions orders versions naturally: digit runs compare as numbers,
// so 9 < 10 and v2 < v10.
func compareVersions(a, b string) int {
	for a != "" && b != "" {
		ra, rest, aDigits := run(a)
		rb, restB, bDigits := run(b)
		if aDigits && bDigits {
			x, y := strings.TrimLeft(ra, "0"), strings.TrimLeft(rb, "0")
			if len(x) != len(y) {
				return cmp.Compare(len(x), len(y))
			}
		}
		if c := strings.Compare(ra, rb); c != 0 {
			return c
		}
		a, b = rest, restB
	}
	return cmp.Compare(len(a), len(b))
}

func run(s string) (head, rest string, digits bool) {
	digits = s[0] >= '0' && s[0] <= '9'
	i := 1
	for i < len(s) && (s[i] >= '0' && s[i] <= '9') == digits {
		i++
	}
	return s[:i], s[i:], digits
}
