package onnxrt

import (
	"fmt"
	"sort"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/modelserve/modelserve/model"
)

// Info is what a model file says about itself.
type Info struct {
	Inputs      []model.Spec
	Outputs     []model.Spec
	Producer    string
	Graph       string
	Description string
	// Metadata is the model's custom metadata_props.
	Metadata map[string]string
}

// Inspect opens a model's bytes with ONNX Runtime, which is how modelserve
// tells a loadable model from any other file, and reads its signature and
// metadata.
func (rt *Runtime) Inspect(onnx []byte) (Info, error) {
	ins, outs, err := ort.GetInputOutputInfoWithONNXData(onnx)
	if err != nil {
		return Info{}, fmt.Errorf("not a model ONNX Runtime %s can load: %w", rt.Version, err)
	}
	info := Info{Inputs: specs(ins), Outputs: specs(outs), Metadata: map[string]string{}}
	// Metadata needs a second session: onnxruntime_go offers no call that
	// returns both. Logging a model is rare, so the cost is fine.
	meta, err := ort.GetModelMetadataWithONNXData(onnx)
	if err != nil {
		return Info{}, fmt.Errorf("reading metadata: %w", err)
	}
	defer meta.Destroy()
	if info.Producer, err = meta.GetProducerName(); err != nil {
		return Info{}, fmt.Errorf("reading metadata: %w", err)
	}
	if info.Graph, err = meta.GetGraphName(); err != nil {
		return Info{}, fmt.Errorf("reading metadata: %w", err)
	}
	if info.Description, err = meta.GetDescription(); err != nil {
		return Info{}, fmt.Errorf("reading metadata: %w", err)
	}
	keys, err := meta.GetCustomMetadataMapKeys()
	if err != nil {
		return Info{}, fmt.Errorf("reading metadata: %w", err)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, _, err := meta.LookupCustomMetadataMap(k)
		if err != nil {
			return Info{}, fmt.Errorf("reading metadata %q: %w", k, err)
		}
		info.Metadata[k] = v
	}
	return info, nil
}

func specs(infos []ort.InputOutputInfo) []model.Spec {
	out := make([]model.Spec, len(infos))
	for i, in := range infos {
		s := model.Spec{Name: in.Name}
		if in.OrtValueType == ort.ONNXTypeTensor {
			s.DType = dtypeOf(in.DataType)
			s.Shape = model.Shape(in.Dimensions.Clone())
		} else {
			s.Kind = kindOf(in.OrtValueType)
		}
		out[i] = s
	}
	return out
}

func kindOf(t ort.ONNXType) string {
	switch t {
	case ort.ONNXTypeSequence:
		return "sequence"
	case ort.ONNXTypeMap:
		return "map"
	case ort.ONNXTypeOptional:
		return "optional"
	case ort.ONNXTypeSparseTensor:
		return "sparse tensor"
	}
	return "opaque value"
}

func dtypeOf(t ort.TensorElementDataType) model.DType {
	switch t {
	case ort.TensorElementDataTypeFloat:
		return model.Float32
	case ort.TensorElementDataTypeDouble:
		return model.Float64
	case ort.TensorElementDataTypeInt8:
		return model.Int8
	case ort.TensorElementDataTypeInt16:
		return model.Int16
	case ort.TensorElementDataTypeInt32:
		return model.Int32
	case ort.TensorElementDataTypeInt64:
		return model.Int64
	case ort.TensorElementDataTypeUint8:
		return model.Uint8
	case ort.TensorElementDataTypeUint16:
		return model.Uint16
	case ort.TensorElementDataTypeUint32:
		return model.Uint32
	case ort.TensorElementDataTypeUint64:
		return model.Uint64
	case ort.TensorElementDataTypeBool:
		return model.Bool
	case ort.TensorElementDataTypeFloat16:
		return model.Float16
	case ort.TensorElementDataTypeString:
		return model.String
	}
	return model.Invalid
}
