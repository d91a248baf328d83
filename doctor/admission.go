package doctor

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/modelserve/modelserve/engine"
	"github.com/modelserve/modelserve/internal/bytesize"
	"github.com/modelserve/modelserve/internal/loadgen"
	"github.com/modelserve/modelserve/model"
	"github.com/modelserve/modelserve/server"
)

// checkAdmission narrows the memory admission may fill to about
// checkRows rows (the GPU's free memory less a margin, or the host's
// budget on the CPU), then sends one request of four times that and a
// flood of callers: every answer must be 200, 413 or 429, never a failure
// (a CUDA out-of-memory error reaching a caller).
func checkAdmission(m *engine.Workers, eo engine.Options, device engine.Device, inputs []model.Tensor, route string, o Options,
	srv *server.Server, restore server.Admitter) (table string, failures []string) {
	fail := func(format string, args ...any) { failures = append(failures, fmt.Sprintf(format, args...)) }
	var b strings.Builder
	var narrowed string
	sig := m.Version().Signature
	if device == engine.CUDA && m.Monitor() != nil {
		deviceRow, _ := m.DeviceRowBytes()
		s, ok := m.Monitor().Latest(m.Placement().GPUs[0])
		if !ok || s.MemoryTotal == 0 {
			fail("the GPU does not answer NVML")
			return "", failures
		}
		room := uint64(checkRows * deviceRow)
		eo.GPU.MemoryMargin = max(0, float64(s.MemoryFree-min(room, s.MemoryFree))/float64(s.MemoryTotal))
		narrowed = fmt.Sprintf("GPU memory narrowed to about %d rows (%s of %s free, at %s a row)", checkRows,
			bytesize.Format(int64(room)), bytesize.Format(int64(s.MemoryFree)), bytesize.Format(deviceRow))
	} else {
		budget := int64(len(gatewayBody(inputs, checkRows))) + checkRows*sig.RowBytes()
		eo.Admission.MemoryBudget = budget
		narrowed = fmt.Sprintf("memory budget narrowed to about %d rows (%s)", checkRows, bytesize.Format(budget))
	}
	q, err := m.AdmitWith(eo, prometheus.NewRegistry())
	if err != nil {
		fail("admission narrowed to %d rows: %v", checkRows, err)
		return "", failures
	}
	srv.SetAdmitter(m.Version().Name, q)
	defer func() {
		srv.SetAdmitter(m.Version().Name, restore)
		q.Close()
	}()

	big := 4 * checkRows
	tg, err := loadgen.NewTarget(route, o.Callers)
	if err != nil {
		fail("%v", err)
		return "", failures
	}
	req, resp := tg.Request(gatewayBody(inputs, big)), fasthttp.AcquireResponse()
	start := time.Now()
	err = tg.Do(req, resp)
	took := time.Since(start)
	status, msg := resp.StatusCode(), errorText(resp.Body())
	fasthttp.ReleaseRequest(req)
	fasthttp.ReleaseResponse(resp)
	refused := err == nil && (status == fasthttp.StatusRequestEntityTooLarge || status == fasthttp.StatusTooManyRequests)
	if !refused {
		fail("a request of %d rows with room for %d: got %d %s (err %v), want 413 or 429", big, checkRows, status, msg, err)
	}
	fmt.Fprintf(&b, "| admission, a request of %d rows (%s) | %d in %s: %s | %s |\n", big, narrowed, status, short(took), msg, verdict(refused))

	// The flood lasts long enough for several of its requests to run, even
	// on cores its refused callers crowd: at least one must be answered.
	flood := checkRows / 8
	floodFor := max(o.Duration, 20*q.Estimate(flood))
	tg.Backoff = 2 * time.Millisecond
	st := tg.Closed(gatewayBody(inputs, flood), o.Callers, 0, floodFor, nil)
	var codes []string
	for code, n := range st.Statuses {
		codes = append(codes, fmt.Sprintf("%d×%d", n, code))
	}
	slices.Sort(codes)
	ok := st.Others() == 0 && len(st.OK) > 0
	if !ok {
		fail("a flood of %d callers of %d rows: %v and %d transport errors, want only 200 and 429", o.Callers, flood, st.Statuses, st.ClientErrors)
	}
	fmt.Fprintf(&b, "| admission, a flood of %d callers of %d rows for %s | %s; p99 of the 200s %s | %s |\n", o.Callers, flood, short(floodFor),
		strings.Join(codes, ", "), short(loadgen.Percentile(st.OK, 0.99)), verdict(ok))
	return b.String(), failures
}
