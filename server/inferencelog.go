package server

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/modelserve/modelserve/inferencelog"
	"github.com/modelserve/modelserve/model"
)

// InferenceLog keeps a sample of the requests answered
// (inferencelog.Log): Sampled decides per request, Add never blocks.
type InferenceLog interface {
	Sampled(function string) bool
	Errors() bool
	Add(*inferencelog.Record)
}

// startRecord begins a sampled request's log record; nil when the
// request is not sampled. Its inputs and outputs are added as they come.
func (s *Server) startRecord(r *route) *inferencelog.Record {
	if s.cfg.InferenceLog == nil || !s.cfg.InferenceLog.Sampled(r.fn.Name) {
		return nil
	}
	names := make([]string, len(r.m.sig.Inputs))
	for i, in := range r.m.sig.Inputs {
		names[i] = in.Name
	}
	return &inferencelog.Record{Time: time.Now(), Model: r.m.name, Function: r.fn.Name, Protocol: r.protocol,
		InputNames: names, OutputNames: r.m.sig.FetchedOutputs()}
}

// logAnswer completes a record with how its request ended and queues it
// (a failure only when failures are logged).
func (s *Server) logAnswer(ctx context.Context, rec *inferencelog.Record, ans answer, principal string, g gateway, elapsed time.Duration) {
	if rec == nil || ans.status != http.StatusOK && !s.cfg.InferenceLog.Errors() {
		return
	}
	rec.Version, rec.Status, rec.Latency, rec.Principal = ans.version, ans.status, elapsed, principal
	rec.QueryID, rec.BatchID, rec.TraceID = g.QueryID, g.BatchID, traceID(ctx)
	if ans.status != http.StatusOK {
		rec.Error, rec.Outputs = ans.message, nil
	}
	s.cfg.InferenceLog.Add(rec)
}

// keepInputs gives a record the inputs it logs: copies, when the
// request's own are lent (to a pool, or from the body's buffer) and
// reused once its calls end.
func keepInputs(rec *inferencelog.Record, inputs []model.Tensor, rowIDs []int64, lent bool) {
	if rec == nil {
		return
	}
	rec.RowIDs = slices.Clone(rowIDs)
	if !lent {
		rec.Inputs = inputs
		return
	}
	rec.Inputs = make([]model.Tensor, len(inputs))
	for i, t := range inputs {
		c, err := model.NewTensor(t.DType, slices.Clone(t.Shape))
		if err != nil { // a tensor the decoder made: never
			rec.Inputs = nil
			return
		}
		model.CopyRows(c, t)
		rec.Inputs[i] = c
	}
}
