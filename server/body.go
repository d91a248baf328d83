package server

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/gofiber/fiber/v2"

	"github.com/modelserve/modelserve/model"
)

// Request bodies are streamed: a handler runs as soon as a request's
// headers (and whatever of its body came with them) are in, so admission
// can refuse a request before its body is read, and a refused body is
// discarded as it arrives instead of being buffered and parsed. The
// handler reads the body itself (readRaw); guard discards what it left.

var (
	errSlowBody       = errors.New("the request body arrived too slowly")
	errBodyCut        = errors.New("the request body ended before its Content-Length")
	errBodyUnreadable = errors.New("the request body could not be read")
)

// bodyKey holds, in a request's Locals, the pooled buffer its body was
// read into, for guard to give back once the answer is written.
type bodyKey struct{}

// bodyPool keeps body buffers between requests; ones larger than
// maxPooledBody (a warehouse batch of some thousands of wide rows) go
// back to the garbage collector.
type bodyPool struct{ p sync.Pool }

const maxPooledBody = 16 << 20

func (b *bodyPool) get(size int) *[]byte {
	if v, ok := b.p.Get().(*[]byte); ok && cap(*v) >= size {
		*v = (*v)[:0]
		return v
	}
	buf := make([]byte, 0, size)
	return &buf
}

func (b *bodyPool) put(buf *[]byte) {
	if cap(*buf) <= maxPooledBody {
		b.p.Put(buf)
	}
}

// floatPool keeps FP32 tensor memory between requests: a large batch's
// inputs are megabytes, which the runtime would otherwise clear, fault in
// and collect on every request. Buffers of fewer than minPooledFloats
// elements are left to the garbage collector, as are ones past
// maxPooledFloats.
type floatPool struct{ p sync.Pool }

const minPooledFloats, maxPooledFloats = 16 << 10, 16 << 20

func (f *floatPool) get(n int) []float32 {
	if v, ok := f.p.Get().(*[]float32); ok && cap(*v) >= n {
		return (*v)[:n]
	}
	return make([]float32, n)
}

// put takes t's memory, whole, if t is FP32 and of a size worth keeping.
func (f *floatPool) put(t model.Tensor) {
	if d, ok := t.Data.([]float32); ok && cap(d) >= minPooledFloats && cap(d) <= maxPooledFloats {
		d = d[:cap(d)]
		f.p.Put(&d)
	}
}

// readRaw reads the request's body as sent (still compressed, if it is),
// at most limit bytes. A body that comes too slowly, ends early or is too
// long closes the connection: what follows on it cannot be trusted.
func (s *Server) readRaw(c *fiber.Ctx, limit int) ([]byte, error) {
	req := c.Request()
	if !req.IsBodyStream() {
		return req.Body(), nil // read already, or not streamed (in-process tests)
	}
	declared := req.Header.ContentLength() // -1: chunked
	if err := checkDeclared(c, limit); err != nil {
		return nil, err
	}
	size := declared + 1 // room for the read that finds the end
	if declared < 0 {
		size = 64 << 10
	}
	held := s.bodies.get(size)
	buf := *held
	stream := req.BodyStream()
	var err error
	for {
		if len(buf) == cap(buf) {
			if len(buf) > limit {
				break
			}
			buf = append(buf, 0)[:len(buf)] // grow, chunked bodies only
		}
		var n int
		n, err = stream.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			break
		}
	}
	*held = buf
	c.Locals(bodyKey{}, held)
	switch {
	case len(buf) > limit:
		err = fmt.Errorf("%w: larger than %d bytes; send fewer rows per batch", errBodyTooLarge, limit)
	case errors.Is(err, io.EOF):
		if declared < 0 || len(buf) == declared {
			req.SetBodyRaw(buf) // read: guard has nothing to discard
			return buf, nil
		}
		err = errBodyCut
	case isTimeout(err):
		err = errSlowBody
	case errors.Is(err, io.ErrUnexpectedEOF):
		err = errBodyCut
	default:
		err = fmt.Errorf("%w: %v", errBodyUnreadable, err)
	}
	c.Context().SetConnectionClose()
	_ = req.CloseBodyStream()
	return nil, err
}

// pooledBody says whether body is the pooled buffer the request's body
// was read into (not a decompressed copy, nor fasthttp's own buffer,
// which it reuses once the handler returns).
func pooledBody(c *fiber.Ctx, body []byte) bool {
	held, ok := c.Locals(bodyKey{}).(*[]byte)
	return ok && len(body) > 0 && len(*held) > 0 && &(*held)[0] == &body[0]
}

// lendBody takes the request's pooled body buffer away from finishBody:
// tensors that point into it may be read after the handler returns (by a
// call still running for a caller that gave up). The buffer goes back to
// the pool when release is called.
func (s *Server) lendBody(c *fiber.Ctx) (release func()) {
	held, ok := c.Locals(bodyKey{}).(*[]byte)
	if !ok {
		return func() {}
	}
	c.Locals(bodyKey{}, nil)
	c.Request().ResetBody() // the request no longer names the buffer
	return func() { s.bodies.put(held) }
}

// checkDeclared refuses a body whose Content-Length passes limit, before
// any of it is read; the connection is closed after the answer rather
// than read through.
func checkDeclared(c *fiber.Ctx, limit int) error {
	if n := c.Request().Header.ContentLength(); n > limit {
		c.Context().SetConnectionClose()
		return fmt.Errorf("%w: it declares %d bytes, larger than %d bytes; send fewer rows per batch", errBodyTooLarge, n, limit)
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// finishBody runs after every handler: the body a handler left unread (a
// request refused from its headers, a route that takes no body) is read
// and thrown away, so the connection can carry the next request; one too
// large to be worth it, or that fails, closes the connection instead. The
// buffer the body was read into goes back to the pool.
func (s *Server) finishBody(c *fiber.Ctx) {
	req := c.Request()
	if req.IsBodyStream() {
		declared := req.Header.ContentLength()
		if declared > s.cfg.MaxBodyBytes {
			c.Context().SetConnectionClose()
		} else if n, err := s.discard(req.BodyStream()); err != nil || n > int64(s.cfg.MaxBodyBytes) {
			c.Context().SetConnectionClose()
		}
		_ = req.CloseBodyStream()
	}
	if held, ok := c.Locals(bodyKey{}).(*[]byte); ok {
		req.ResetBody()
		c.Locals(bodyKey{}, nil)
		s.bodies.put(held)
	}
}

// discardChunk is how much of a refused body one read takes: io.Discard
// reads 8 KiB at a time, and on a virtual machine each read is a system
// call dearer than copying what it brings (a refused 3 MB body cost ~360
// reads).
const discardChunk = 256 << 10

// discard reads r to its end, or to just past the longest body, into a
// pooled buffer, and says how much it read.
func (s *Server) discard(r io.Reader) (int64, error) {
	held := s.bodies.get(discardChunk)
	defer s.bodies.put(held)
	buf := (*held)[:cap(*held)]
	limit := int64(s.cfg.MaxBodyBytes) + 1
	var n int64
	for n < limit {
		k, err := r.Read(buf[:min(int64(len(buf)), limit-n)])
		n += int64(k)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
