package server

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
	"github.com/valyala/fasthttp"
)

// errUnsupportedEncoding is a Content-Encoding the server cannot read.
var errUnsupportedEncoding = errors.New("unsupported content encoding")

// errBodyTooLarge is a body that is, or decompresses to, past the limit.
var errBodyTooLarge = errors.New("request body too large")

// decompress decodes a body as sent (raw) from its Content-Encoding enc
// (gzip or deflate; identity when empty). Never fiber's c.Body(), which
// decompresses without any limit. What a compressed body inflates to is
// bounded three ways: never more than limit bytes; never more than
// maxRatio times its compressed size once past a megabyte (no real table
// compresses that well; a bomb does); and every buffer is charged to grow
// (admission's memory budget) before it is allocated. A bomb of any size
// therefore costs at most limit bytes, and only while the budget has them.
func decompress(raw []byte, enc string, limit, maxRatio int, grow func(int64) error) ([]byte, error) {
	enc = strings.ToLower(strings.TrimSpace(enc))
	var r io.Reader
	var declared int64 // the size a gzip trailer gives, 0 if none
	switch enc {
	case "", "identity":
		return raw, nil
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, inputErr(-1, "", "the body is not valid gzip: %v", err)
		}
		// The trailer holds the (last member's) size mod 4 GiB.
		if size := int64(binary.LittleEndian.Uint32(raw[len(raw)-4:])); size > int64(limit) {
			return nil, fmt.Errorf("%w: it declares %d bytes uncompressed, more than %d", errBodyTooLarge, size, limit)
		} else {
			declared = size
		}
		r = zr
	case "deflate":
		// HTTP's deflate is zlib; some clients send raw deflate.
		zr, err := zlib.NewReader(bytes.NewReader(raw))
		if err != nil {
			r = flate.NewReader(bytes.NewReader(raw))
		} else {
			r = zr
		}
	default:
		return nil, fmt.Errorf("%w %q: send gzip, deflate or none", errUnsupportedEncoding, enc)
	}
	// The first buffer's size: the exact one when the body declares it
	// (and it is believable), so that no copy is needed; else a guess.
	first := min(int64(limit)+1, max(64<<10, 8*int64(len(raw))))
	if declared > 0 {
		first = declared + 1
	}
	if maxRatio > 0 {
		first = min(first, max(inflateFloor, int64(maxRatio)*int64(len(raw))))
	}
	return inflate(r, enc, first, int64(limit), maxRatio, len(raw), grow)
}

// inflateFloor is the size below which no ratio is refused: a small body
// may compress as well as it likes.
const inflateFloor = 1 << 20

// inflate reads r into buffers charged to grow before they exist: the first
// of size first, then twice as large each (up to 16 MiB), never more in all
// than limit+1 bytes, nor, once past inflateFloor, more than maxRatio times
// compressed. Several buffers are joined into one at the end.
func inflate(r io.Reader, enc string, first, limit int64, maxRatio, compressed int, grow func(int64) error) ([]byte, error) {
	var parts [][]byte
	total, size := int64(0), first
	for {
		size = min(size, limit+1-total)
		if err := grow(size); err != nil {
			return nil, err
		}
		buf := make([]byte, size)
		n, err := io.ReadFull(r, buf)
		total += int64(n)
		parts = append(parts, buf[:n])
		switch {
		case total > limit:
			return nil, fmt.Errorf("%w: it decompresses to more than %d bytes", errBodyTooLarge, limit)
		case maxRatio > 0 && total > inflateFloor && total > int64(maxRatio)*int64(compressed):
			return nil, fmt.Errorf("%w: its %d bytes decompress to more than %d times as many; that is a decompression bomb, not a table",
				errBodyTooLarge, compressed, maxRatio)
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			if len(parts) == 1 {
				return parts[0], nil
			}
			if err := grow(total); err != nil {
				return nil, err
			}
			return bytes.Join(parts, nil), nil
		case err != nil:
			return nil, inputErr(-1, "", "the body is not valid %s: %v", enc, err)
		}
		size = min(2*size, 16<<20)
	}
}

// minCompress is the smallest body worth compressing.
const minCompress = 1024

// responseEncoding picks gzip or deflate from Accept-Encoding, or none.
func responseEncoding(accept string) string {
	best, bestQ := "", 0.0
	for _, part := range strings.Split(accept, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		name = strings.ToLower(strings.TrimSpace(name))
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		if name == "*" {
			name = "gzip"
		}
		if (name == "gzip" || name == "deflate") && q > bestQ {
			best, bestQ = name, q
		}
	}
	return best
}

// writeBody answers with body, compressed when the caller accepts it and
// it is JSON, with a Content-MD5 of what is sent if the server is
// configured to add one. Binary tensor answers are never compressed:
// float bits shrink by a few percent at a cost in CPU above a fast
// model's (and Go's HTTP client asks for gzip unless told not to).
func (s *Server) writeBody(c *fiber.Ctx, status int, contentType string, body []byte) {
	c.Status(status)
	c.Set(fiber.HeaderContentType, contentType)
	resp := c.Response()
	enc := ""
	if len(body) >= minCompress && contentType == fiber.MIMEApplicationJSON {
		enc = responseEncoding(c.Get(fiber.HeaderAcceptEncoding))
		c.Set(fiber.HeaderVary, fiber.HeaderAcceptEncoding)
	}
	resp.ResetBody()
	w := resp.BodyWriter()
	switch enc {
	case "gzip":
		fasthttp.WriteGzipLevel(w, body, fasthttp.CompressBestSpeed)
		c.Set(fiber.HeaderContentEncoding, "gzip")
	case "deflate":
		fasthttp.WriteDeflateLevel(w, body, fasthttp.CompressBestSpeed)
		c.Set(fiber.HeaderContentEncoding, "deflate")
	default:
		w.Write(body)
	}
	if s.cfg.ContentMD5 {
		sum := md5.Sum(resp.Body())
		c.Set("Content-MD5", base64.StdEncoding.EncodeToString(sum[:]))
	}
}

// statusForBodyError maps a failure to read the body.
func statusForBodyError(err error) int {
	switch {
	case errors.Is(err, errUnsupportedEncoding):
		return http.StatusUnsupportedMediaType
	case errors.Is(err, errBodyTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errSlowBody):
		return http.StatusRequestTimeout
	}
	return http.StatusBadRequest
}
