package server

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
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

// errBodyTooLarge is a body that decompresses past the limit.
var errBodyTooLarge = errors.New("request body too large")

// requestBody returns the body as sent, decoded from its Content-Encoding
// (gzip or deflate; identity when absent), never more than limit bytes: a
// small compressed body cannot expand into a large one unchecked.
func requestBody(c *fiber.Ctx, limit int) ([]byte, error) {
	// Not c.Body(): fiber would decompress it, without any limit.
	raw := c.Request().Body()
	enc := strings.ToLower(strings.TrimSpace(c.Get(fiber.HeaderContentEncoding)))
	var r io.Reader
	switch enc {
	case "", "identity":
		return raw, nil
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, inputErr(-1, "", "the body is not valid gzip: %v", err)
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
	out, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, inputErr(-1, "", "the body is not valid %s: %v", enc, err)
	}
	if len(out) > limit {
		return nil, fmt.Errorf("%w: it decompresses to more than %d bytes", errBodyTooLarge, limit)
	}
	return out, nil
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

// writeBody answers with body, compressed when the caller accepts it, with
// a Content-MD5 of what is sent if the server is configured to add one.
func (s *Server) writeBody(c *fiber.Ctx, status int, contentType string, body []byte) {
	c.Status(status)
	c.Set(fiber.HeaderContentType, contentType)
	resp := c.Response()
	enc := ""
	if len(body) >= minCompress {
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
	}
	return http.StatusBadRequest
}
