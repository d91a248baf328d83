// Package panics keeps a panic in the code that serves one request from
// ending the process: it becomes that request's error, is counted in
// modelserve_panics_total{where}, and its stack is logged once.
package panics

import (
	"fmt"
	"runtime/debug"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Where a panic can be caught: the label values of modelserve_panics_total.
const (
	Handler   = "handler"   // an HTTP handler
	Decode    = "decode"    // the request decoder
	Admission = "admission" // a dispatcher joining, running or splitting a batch
	Worker    = "worker"    // a worker's call into ONNX Runtime
	Batch     = "batch"     // a gateway batch finishing in the background
)

// Recorder counts the panics it recovers. A nil Recorder still recovers;
// it only counts nothing.
type Recorder struct {
	total *prometheus.CounterVec
}

// New registers modelserve_panics_total with reg.
func New(reg prometheus.Registerer) (*Recorder, error) {
	total := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelserve_panics_total",
		Help: "Panics recovered, by where they happened; each failed one request (or one batch) with 500 and the process went on.",
	}, []string{"where"})
	if err := reg.Register(total); err != nil {
		return nil, fmt.Errorf("registering the panic counter: %w", err)
	}
	for _, w := range []string{Handler, Decode, Admission, Worker, Batch} {
		total.WithLabelValues(w)
	}
	return &Recorder{total: total}, nil
}

// Error is a recovered panic, with the stack where it happened.
type Error struct {
	Where string
	Value any
	Stack []byte
	// reported makes the stack logged once, however many requests share
	// the failed batch.
	reported atomic.Bool
}

func (e *Error) Error() string {
	return fmt.Sprintf("internal error (a panic in the %s: %v)", e.Where, e.Value)
}

// FirstReport is true for the first caller only: the one that logs the
// stack.
func (e *Error) FirstReport() bool { return e.reported.CompareAndSwap(false, true) }

// Recovered makes an Error of what recover returned, and counts it. It
// must run in the deferred function that called recover, so that the
// stack is the panic's.
func (r *Recorder) Recovered(where string, v any) *Error {
	if r != nil {
		r.total.WithLabelValues(where).Inc()
	}
	return &Error{Where: where, Value: v, Stack: debug.Stack()}
}

// Catch, deferred, turns a panic in the function that deferred it into
// *err.
func (r *Recorder) Catch(where string, err *error) {
	if v := recover(); v != nil {
		*err = r.Recovered(where, v)
	}
}
