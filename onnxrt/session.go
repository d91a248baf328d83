package onnxrt

import (
	"context"
	"fmt"
	"strconv"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/modelserve/modelserve/model"
)

// SessionOptions configure one session.
type SessionOptions struct {
	// IntraOpThreads is the size of the session's own thread pool; 0 lets
	// ONNX Runtime choose (one per core).
	IntraOpThreads int
	// NoSpinning stops idle intra-op threads from busy-waiting, which only
	// steals cores when several sessions share them.
	NoSpinning bool
	// CUDA, when set, runs the session on a GPU through the CUDA execution
	// provider; nil runs it on the CPU.
	CUDA *CUDAOptions
	// TensorRT, with CUDA, puts the TensorRT provider first: the parts of
	// the graph it takes run on it, the rest on CUDA.
	TensorRT bool
}

// CUDAOptions select and tune the CUDA execution provider.
type CUDAOptions struct {
	DeviceID int
	// Settings are passed to the provider as they are (gpu_mem_limit,
	// arena_extend_strategy, ...).
	Settings map[string]string
}

// Session runs one model on one execution provider. A session is used by
// one goroutine at a time: modelserve gives each worker its own.
type Session struct {
	sess    *ort.DynamicAdvancedSession
	inputs  []string
	outputs []string
	// halfRows is, per output, its row shape when it is float16 (nil
	// otherwise): such an output gets its buffer before the call (the
	// binding copies a float16 output it allocates itself short).
	halfRows []model.Shape
}

// NewSession opens the model at path, fed by the named inputs and fetching
// the named outputs, in that order.
func (rt *Runtime) NewSession(path string, inputs, outputs []string, opts SessionOptions) (*Session, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("creating session options: %w", err)
	}
	defer so.Destroy()
	if opts.IntraOpThreads > 0 {
		if err := so.SetIntraOpNumThreads(opts.IntraOpThreads); err != nil {
			return nil, fmt.Errorf("setting %d intra-op threads: %w", opts.IntraOpThreads, err)
		}
	}
	// Operators run one after another: parallelism comes from workers.
	if err := so.SetInterOpNumThreads(1); err != nil {
		return nil, fmt.Errorf("setting inter-op threads: %w", err)
	}
	if opts.NoSpinning {
		if err := so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"); err != nil {
			return nil, fmt.Errorf("disabling thread spinning: %w", err)
		}
	}
	if opts.CUDA != nil && opts.TensorRT {
		if _, err := rt.PrepareProvider("tensorrt"); err != nil {
			return nil, err
		}
		if err := appendTensorRT(so, opts.CUDA.DeviceID); err != nil {
			return nil, err
		}
	}
	if opts.CUDA != nil {
		if _, err := rt.PrepareProvider("cuda"); err != nil {
			return nil, err
		}
		if err := appendCUDA(so, *opts.CUDA); err != nil {
			return nil, err
		}
	}
	halfRows, err := halfOutputs(path, outputs)
	if err != nil {
		return nil, err
	}
	sess, err := ort.NewDynamicAdvancedSession(path, inputs, outputs, so)
	if err != nil {
		return nil, fmt.Errorf("opening %s with ONNX Runtime: %w", path, err)
	}
	return &Session{sess: sess, inputs: inputs, outputs: outputs, halfRows: halfRows}, nil
}

// halfOutputs finds the float16 outputs among those fetched, with their
// row shapes, which must be fixed: their buffers are sized before a call.
func halfOutputs(path string, outputs []string) ([]model.Shape, error) {
	_, outs, err := ort.GetInputOutputInfo(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s's outputs: %w", path, err)
	}
	rows := make([]model.Shape, len(outputs))
	for i, name := range outputs {
		for _, o := range outs {
			if o.Name != name || o.OrtValueType != ort.ONNXTypeTensor || o.DataType != ort.TensorElementDataTypeFloat16 {
				continue
			}
			row := model.Shape(o.Dimensions.Clone())
			if len(row) > 0 {
				row = row[1:]
			}
			for _, d := range row {
				if d < 0 {
					return nil, fmt.Errorf("output %q is float16 with a dimension of no fixed size (%s): modelserve serves float16 outputs whose shape is fixed apart from the batch", name, model.Shape(o.Dimensions))
				}
			}
			rows[i] = row
		}
	}
	return rows, nil
}

func appendCUDA(so *ort.SessionOptions, c CUDAOptions) error {
	cuda, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return fmt.Errorf("the CUDA execution provider is not available in this ONNX Runtime: %w", err)
	}
	defer cuda.Destroy()
	settings := map[string]string{"device_id": strconv.Itoa(c.DeviceID)}
	for k, v := range c.Settings {
		settings[k] = v
	}
	if err := cuda.Update(settings); err != nil {
		return fmt.Errorf("configuring the CUDA execution provider: %w", err)
	}
	if err := so.AppendExecutionProviderCUDA(cuda); err != nil {
		return fmt.Errorf("enabling the CUDA execution provider on GPU %d: %w", c.DeviceID, err)
	}
	return nil
}

// ProbeCUDA checks, without a model, that the CUDA execution provider
// loads for GPU device: its library and the CUDA libraries it needs.
func (rt *Runtime) ProbeCUDA(device int) error {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return fmt.Errorf("creating session options: %w", err)
	}
	defer so.Destroy()
	if _, err := rt.PrepareProvider("cuda"); err != nil {
		return err
	}
	return appendCUDA(so, CUDAOptions{DeviceID: device})
}

func appendTensorRT(so *ort.SessionOptions, device int) error {
	trt, err := ort.NewTensorRTProviderOptions()
	if err != nil {
		return fmt.Errorf("the TensorRT execution provider is not available in this ONNX Runtime: %w", err)
	}
	defer trt.Destroy()
	if err := trt.Update(map[string]string{"device_id": strconv.Itoa(device)}); err != nil {
		return fmt.Errorf("configuring the TensorRT execution provider: %w", err)
	}
	if err := so.AppendExecutionProviderTensorRT(trt); err != nil {
		return fmt.Errorf("enabling the TensorRT execution provider on GPU %d: %w", device, err)
	}
	return nil
}

// Close releases the session.
func (s *Session) Close() error {
	return s.sess.Destroy()
}

// Run feeds inputs (in the session's input order) and returns the outputs
// (in its output order). Cancelling ctx terminates a run in progress.
func (s *Session) Run(ctx context.Context, inputs []model.Tensor) ([]model.Tensor, error) {
	if len(inputs) != len(s.inputs) {
		return nil, fmt.Errorf("the session takes %d inputs, got %d", len(s.inputs), len(inputs))
	}
	values := make([]ort.Value, len(inputs))
	defer func() {
		for _, v := range values {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	for i, t := range inputs {
		v, err := toValue(t)
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", s.inputs[i], err)
		}
		values[i] = v
	}
	outs := make([]ort.Value, len(s.outputs))
	defer func() {
		for _, v := range outs {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	halves := make([]model.Tensor, len(s.outputs))
	for i, row := range s.halfRows {
		if row == nil {
			continue
		}
		rows := int64(1)
		if len(inputs) > 0 && len(inputs[0].Shape) > 0 {
			rows = inputs[0].Shape[0]
		}
		t, err := model.NewTensor(model.Float16, append(model.Shape{rows}, row...))
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", s.outputs[i], err)
		}
		v, err := toValue(t)
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", s.outputs[i], err)
		}
		halves[i], outs[i] = t, v
	}
	if err := s.run(ctx, values, outs); err != nil {
		return nil, err
	}
	result := make([]model.Tensor, len(outs))
	for i, v := range outs {
		if halves[i].Data != nil {
			result[i] = halves[i] // ONNX Runtime wrote into its memory
			continue
		}
		t, err := fromValue(v)
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", s.outputs[i], err)
		}
		result[i] = t
	}
	return result, nil
}

func (s *Session) run(ctx context.Context, in, out []ort.Value) error {
	if ctx.Done() == nil {
		return s.sess.Run(in, out)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	opts, err := ort.NewRunOptions()
	if err != nil {
		return fmt.Errorf("creating run options: %w", err)
	}
	terminated := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		opts.Terminate()
		close(terminated)
	})
	err = s.sess.RunWithOptions(in, out, opts)
	if !stop() {
		// Terminate is running or ran; let it finish before freeing opts.
		<-terminated
	}
	opts.Destroy()
	if ctxErr := ctx.Err(); err != nil && ctxErr != nil {
		return fmt.Errorf("run stopped: %w", ctxErr)
	}
	return err
}

func toValue(t model.Tensor) (ort.Value, error) {
	shape := ort.Shape(t.Shape)
	switch d := t.Data.(type) {
	case []float32:
		return newValue(shape, d)
	case []float64:
		return newValue(shape, d)
	case []int8:
		return newValue(shape, d)
	case []int16:
		return newValue(shape, d)
	case []int32:
		return newValue(shape, d)
	case []int64:
		return newValue(shape, d)
	case []uint8:
		return newValue(shape, d)
	case []uint16:
		return newValue(shape, d)
	case []uint32:
		return newValue(shape, d)
	case []uint64:
		return newValue(shape, d)
	case []bool:
		return newValue(shape, d)
	case []model.Half:
		if len(d) == 0 {
			return nil, fmt.Errorf("an empty float16 tensor (%s)", t.Shape)
		}
		// The tensor's own memory, as bytes: ONNX Runtime reads and
		// writes it in place.
		b := unsafe.Slice((*byte)(unsafe.Pointer(&d[0])), 2*len(d))
		return ort.NewCustomDataTensor(shape, b, ort.TensorElementDataTypeFloat16)
	case []string:
		st, err := ort.NewStringTensor(shape)
		if err != nil {
			return nil, err
		}
		if err := st.SetContents(d); err != nil {
			st.Destroy()
			return nil, err
		}
		return st, nil
	}
	return nil, fmt.Errorf("cannot feed %s data of Go type %T", t.DType, t.Data)
}

// newValue wraps Go memory in an ORT tensor without copying it.
func newValue[T ort.TensorData](shape ort.Shape, data []T) (ort.Value, error) {
	t, err := ort.NewTensor(shape, data)
	if err != nil {
		return nil, err
	}
	return t, nil
}

func fromValue(v ort.Value) (model.Tensor, error) {
	shape := model.Shape(v.GetShape())
	// onnxruntime_go copies numeric outputs into Go memory, so the data
	// stays valid after the value is destroyed.
	switch t := v.(type) {
	case *ort.Tensor[float32]:
		return model.Tensor{DType: model.Float32, Shape: shape, Data: t.GetData()}, nil
	case *ort.Tensor[float64]:
		return model.Tensor{DType: model.Float64, Shape: shape, Data: t.GetData()}, nil
	case *ort.Tensor[int8]:
		return model.Tensor{DType: model.Int8, Shape: shape, Data: t.GetData()}, nil
	case *ort.Tensor[int16]:
		return model.Tensor{DType: model.Int16, Shape: shape, Data: t.GetData()}, nil
	case *ort.Tensor[int32]:
		return model.Tensor{DType: model.Int32, Shape: shape, Data: t.GetData()}, nil
	case *ort.Tensor[int64]:
		return model.Tensor{DType: model.Int64, Shape: shape, Data: t.GetData()}, nil
	case *ort.Tensor[uint8]:
		return model.Tensor{DType: model.Uint8, Shape: shape, Data: t.GetData()}, nil
	case *ort.Tensor[uint16]:
		return model.Tensor{DType: model.Uint16, Shape: shape, Data: t.GetData()}, nil
	case *ort.Tensor[uint32]:
		return model.Tensor{DType: model.Uint32, Shape: shape, Data: t.GetData()}, nil
	case *ort.Tensor[uint64]:
		return model.Tensor{DType: model.Uint64, Shape: shape, Data: t.GetData()}, nil
	case *ort.Tensor[bool]:
		return model.Tensor{DType: model.Bool, Shape: shape, Data: t.GetData()}, nil
	case *ort.StringTensor:
		s, err := t.GetContents()
		if err != nil {
			return model.Tensor{}, err
		}
		return model.Tensor{DType: model.String, Shape: shape, Data: s}, nil
	}
	return model.Tensor{}, fmt.Errorf("the model returned a %s value, which modelserve cannot encode", v.GetONNXType())
}
