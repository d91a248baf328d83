package server

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/modelserve/modelserve/engine"
	"github.com/modelserve/modelserve/internal/panics"
	"github.com/modelserve/modelserve/model"
)

// The Open Inference Protocol (KServe v2) over REST, beside the gateway's
// routes on the same port: health, server and model metadata, and infer,
// which runs through the same admission queue and batches as the
// gateway's rows for the same model.

// oipPlatform is what the protocol calls an ONNX model run by ONNX Runtime.
const oipPlatform = "onnx_onnxv1"

func (s *Server) addOIP() {
	s.app.Get("/v2", s.oipServerMetadata)
	s.app.Get("/v2/health/live", s.oipLive)
	s.app.Get("/v2/health/ready", s.oipReady)
	for _, prefix := range []string{"/v2/models/:model", "/v2/models/:model/versions/:version"} {
		s.app.Get(prefix, s.oipModelMetadata)
		s.app.Get(prefix+"/ready", s.oipModelReady)
		s.app.Post(prefix+"/infer", s.oipInfer)
	}
}

// oipExtensions are the protocol extensions this server speaks.
func (s *Server) oipExtensions() []string {
	ext := []string{"binary_tensor_data"}
	if s.cfg.Repository != nil {
		ext = append(ext, "model_repository")
	}
	return ext
}

func (s *Server) oipServerMetadata(c *fiber.Ctx) error {
	return c.JSON(struct {
		Name       string   `json:"name"`
		Version    string   `json:"version"`
		Extensions []string `json:"extensions"`
	}{"modelserve", s.cfg.Version, s.oipExtensions()})
}

// oipLive is 200 while the process answers at all.
func (s *Server) oipLive(c *fiber.Ctx) error { return emptyStatus(c, http.StatusOK) }

// oipReady is 200 when every model is ready, 400 otherwise (the protocol
// answers false with a 4xx).
func (s *Server) oipReady(c *fiber.Ctx) error {
	if s.draining.Load() || !s.allReady() {
		return emptyStatus(c, http.StatusBadRequest)
	}
	return emptyStatus(c, http.StatusOK)
}

// emptyStatus answers with a status and no body, as the protocol's
// health answers are.
func emptyStatus(c *fiber.Ctx, status int) error {
	c.Status(status)
	return nil
}

// oipModel finds the model a path names, and checks the version it
// names, if any, is the one served; nil after answering when not.
func (s *Server) oipModel(c *fiber.Ctx) (*served, *admitterRef) {
	name := c.Params("model")
	m, ok := s.tab.Load().models[name]
	if !ok {
		writeJSONError(c, http.StatusNotFound, "no model "+strconv.Quote(name)+" is served here")
		return nil, nil
	}
	ref := m.pred.Load()
	if v := c.Params("version"); v != "" && (ref == nil || ref.version != v) {
		served := "none yet"
		if ref != nil {
			served = ref.version
		}
		writeJSONError(c, http.StatusNotFound, fmt.Sprintf("model %s has no version %s loaded here (version served: %s)", name, strconv.Quote(v), served))
		return nil, nil
	}
	return m, ref
}

func (s *Server) oipModelReady(c *fiber.Ctx) error {
	m, ref := s.oipModel(c)
	switch {
	case m == nil:
		return nil
	case ref == nil || s.draining.Load():
		return emptyStatus(c, http.StatusBadRequest)
	}
	return emptyStatus(c, http.StatusOK)
}

// oipTensor is a tensor's metadata: -1 for a dimension of any size.
type oipTensor struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

func (s *Server) oipModelMetadata(c *fiber.Ctx) error {
	m, ref := s.oipModel(c)
	if m == nil {
		return nil
	}
	md := struct {
		Name     string      `json:"name"`
		Versions []string    `json:"versions"`
		Platform string      `json:"platform"`
		Inputs   []oipTensor `json:"inputs"`
		Outputs  []oipTensor `json:"outputs"`
	}{Name: m.name, Versions: []string{}, Platform: oipPlatform, Inputs: []oipTensor{}, Outputs: []oipTensor{}}
	if ref != nil {
		md.Versions = append(md.Versions, ref.version)
	}
	for _, in := range m.sig.Inputs {
		md.Inputs = append(md.Inputs, oipTensor{in.Name, in.DType.OIP(), in.Shape})
	}
	for _, name := range m.sig.FetchedOutputs() {
		out, _, _ := m.sig.Output(name)
		md.Outputs = append(md.Outputs, oipTensor{out.Name, out.DType.OIP(), out.Shape})
	}
	return c.JSON(md)
}

// oipInfer answers POST .../infer: the request's tensors through the
// model's admission queue, its outputs back whole.
func (s *Server) oipInfer(c *fiber.Ctx) error {
	s.active.Add(1)
	defer s.active.Add(-1)
	start := time.Now()
	m, _ := s.oipModel(c)
	if m == nil {
		return nil
	}
	// As dispatch does: counted before the model is looked at again, so
	// an unload waits for this request or this request sees it gone.
	m.handlers.Add(1)
	defer m.handlers.Add(-1)
	r, ok := s.tab.Load().infer[m.name]
	if !ok || r.m != m {
		writeJSONError(c, http.StatusNotFound, "no model "+strconv.Quote(m.name)+" is served here")
		return nil
	}
	s.traceRequest(c, r, start)
	ans := s.infer(c, r)
	if ans.status != http.StatusOK {
		// The protocol's errors are {"error": ...} with the message alone.
		ans.body = errorBody(ans.message)
	}
	s.respond(c, r, gateway{}, ans, "", start)
	return nil
}

// infer turns an inference request into its answer; a panic fails this
// request alone.
func (s *Server) infer(c *fiber.Ctx, r *route) (ans answer) {
	rec := s.startRecord(r)
	defer func() { ans.log = rec }()
	var ticket *engine.Ticket
	defer func() {
		if v := recover(); v != nil {
			ans = s.failure(s.cfg.Panics.Recovered(panics.Handler, v), 0)
			if ticket != nil {
				ticket.Done()
			}
		}
	}()
	if s.draining.Load() {
		c.Context().SetConnectionClose()
		return s.failure(errDraining, 0)
	}
	ref := r.m.pred.Load()
	if ref == nil {
		return s.failure(errNotReady, 0)
	}
	defer func() {
		if ans.version == "" {
			ans.version = ref.version
		}
	}()
	ctx, cancel, err := s.requestContext(c)
	if err != nil {
		return s.failure(err, 0)
	}
	defer cancel()
	ticket, body, err := s.admit(c, r, &ref)
	if err != nil {
		return s.failure(err, statusForBodyError(err))
	}
	defer ticket.Done()
	ans.received = time.Now()
	headerLen := 0
	if h := c.Get(InferenceHeaderLength); h != "" {
		n, err := strconv.Atoi(strings.TrimSpace(h))
		if err != nil || n <= 0 {
			return s.failure(inputErr(-1, "", "%s %q: give the JSON header's length in bytes", InferenceHeaderLength, h), 0)
		}
		headerLen = n
	}
	fetched := r.fn.Outputs
	// Binary inputs are read in place from the body's buffer when their
	// layout allows; the buffer is then lent to the queue until the rows
	// have run.
	began := time.Now()
	req, err := decodeOIP(body, headerLen, r.m.sig, fetched, pooledBody(c, body))
	if err != nil {
		return s.failure(err, 0)
	}
	decoded := since(began)
	keepInputs(rec, req.inputs, nil, true)
	var outs []model.Tensor
	if req.borrowed {
		outs, err = ticket.RunBorrowed(ctx, req.inputs, s.lendBody(c))
	} else {
		outs, err = ticket.Run(ctx, req.inputs)
	}
	if err != nil {
		return s.failure(err, 0)
	}
	if rec != nil {
		rec.Outputs = outs
	}
	began = time.Now()
	buf := s.bufs.get()
	defer s.bufs.put(buf)
	var n int
	*buf, n = encodeOIP((*buf)[:0], r.m.name, ref.version, req, fetched, outs)
	ans = answer{status: http.StatusOK, body: append([]byte(nil), *buf...), rows: req.rows, version: ref.version, received: ans.received}
	if n > 0 {
		ans.headerLen, ans.contentType = n, "application/octet-stream"
	}
	ans.stages = timed(decoded, ticket.Stages(), since(began))
	return ans
}
