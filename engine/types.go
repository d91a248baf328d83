package engine

import (
	"github.com/modelserve/modelserve/admission"
	"github.com/modelserve/modelserve/workers"
)

// What a front needs of admission and the workers, named here so that
// fronts depend on the engine alone.
type (
	// Ticket is one request's claim on a version's queue and memory
	// budget, from before its body is parsed until its answer is written.
	Ticket = admission.Ticket
	// Arrival is what admission knows of a request before its body is
	// parsed.
	Arrival = admission.Arrival
	// Priority orders requests in the queue and in shedding.
	Priority = admission.Priority
	// Rejection is a request refused by admission, with the limit it hit.
	Rejection = admission.Rejection
	// BatchDelay is how long a free worker may wait to fill a batch.
	BatchDelay = admission.BatchDelay
	// Stages is where a queued request's time went: waiting, then
	// running.
	Stages = admission.Stages
	// Device is where the workers run.
	Device = workers.Device
)

// Devices, the queue's default bound and execution providers.
const (
	CPU  = workers.CPU
	CUDA = workers.CUDA

	DefaultMaxQueued = admission.DefaultMaxQueued

	ProviderCPU  = workers.ProviderCPU
	ProviderCUDA = workers.ProviderCUDA
)

var (
	// AutoDelay waits for more rows only while it pays.
	AutoDelay = admission.AutoDelay
	// ErrOverloaded: the request does not fit now (429).
	ErrOverloaded = admission.ErrOverloaded
	// ErrTooLarge: the request can never fit (413).
	ErrTooLarge = admission.ErrTooLarge
	// ErrClosed: the version is draining or gone (503).
	ErrClosed = admission.ErrClosed
)

// ParsePriority reads high, normal or low.
func ParsePriority(s string) (Priority, error) { return admission.ParsePriority(s) }

// ParseBatchDelay reads auto, a duration or 0.
func ParseBatchDelay(s string) (BatchDelay, error) { return admission.ParseBatchDelay(s) }

// ParseDevice reads auto, cpu or cuda.
func ParseDevice(s string) (Device, error) { return workers.ParseDevice(s) }

// ResidentBytes is this process's resident memory now.
func ResidentBytes() (int64, error) { return admission.ResidentBytes() }

// PeakResidentBytes is the most resident memory this process has held.
func PeakResidentBytes() (int64, error) { return admission.PeakResidentBytes() }
