package spec

import (
	"fmt"
	"strconv"
)

// Names and defaults of the spec written for a model service.
const (
	ModelContainer = "model-inference"
	ModelEndpoint  = "inference"
	ModelPort      = 8080
	ReadinessPath  = "/healthcheck"
	ModelEnv       = "MODELSERVE_MODEL"
)

// ModelService is what a model service's spec is written from.
type ModelService struct {
	Model        string // NAME:VERSION, pinned
	Image        string
	GPUs         int
	Workers      int // 0: the server's default plan
	MaxBatchRows int // 0: the version's registry setting
	Ingress      bool
	CPU, Memory  Quantity // requests; zero leaves them to the scheduler
}

// ForModel writes the spec of a service that serves one model version: one
// container, model-inference, whose readiness probe gates traffic to the
// endpoint inference. The settings travel as MODELSERVE_* variables, which
// modelserve serve reads like its flags.
func ForModel(m ModelService) (*Spec, error) {
	if m.Model == "" || m.Image == "" {
		return nil, fmt.Errorf("a model service needs a model and an image")
	}
	if m.GPUs < 0 || m.Workers < 0 || m.MaxBatchRows < 0 {
		return nil, fmt.Errorf("GPUs, workers and batch rows cannot be negative")
	}
	port := strconv.Itoa(ModelPort)
	env := map[string]string{ModelEnv: m.Model, "MODELSERVE_PORT": port}
	if m.Workers > 0 {
		env["MODELSERVE_WORKERS"] = strconv.Itoa(m.Workers)
	}
	if m.MaxBatchRows > 0 {
		env["MODELSERVE_MAX_BATCH_ROWS"] = strconv.Itoa(m.MaxBatchRows)
	}
	c := Container{
		Name:           ModelContainer,
		Image:          m.Image,
		Env:            env,
		ReadinessProbe: &Probe{Port: ModelPort, Path: ReadinessPath},
	}
	if m.GPUs > 0 || !m.CPU.IsZero() || !m.Memory.IsZero() {
		c.Resources = &Resources{}
		c.Resources.Requests.CPU, c.Resources.Requests.Memory = m.CPU, m.Memory
	}
	if m.GPUs > 0 {
		// On a GPU node the service must use the GPU or fail at start,
		// never fall back to CPU quietly.
		env["MODELSERVE_DEVICE"] = "cuda"
		gpus := MustQuantity(strconv.Itoa(m.GPUs))
		c.Resources.Requests.GPU, c.Resources.Limits.GPU = gpus, gpus
	}
	return &Spec{
		Containers: []Container{c},
		Endpoints:  []Endpoint{{Name: ModelEndpoint, Port: ModelPort, Public: m.Ingress, Protocol: ProtocolHTTP}},
	}, nil
}
