package server

import (
	"encoding/base64"
	"log/slog"
	"strings"

	"github.com/valyala/fasthttp"
)

// gateway is what the SQL gateway says about a batch in its headers: the
// sf-external-function-* and sf-context-* headers, the -base64 form of
// each preferred when both are sent. None of it goes into metric labels:
// query and batch ids are unbounded.
type gateway struct {
	QueryID       string
	BatchID       string
	Name          string
	Signature     string
	ReturnType    string
	Format        string
	FormatVersion string
	// Context holds the sf-context-* headers (current-user, ...), keyed by
	// the part after sf-context-.
	Context map[string]string
}

const (
	functionPrefix = "sf-external-function-"
	contextPrefix  = "sf-context-"
)

// readGateway collects the gateway's headers; a request without them
// reads as the zero gateway.
func readGateway(h *fasthttp.RequestHeader) gateway {
	var g gateway
	plain := map[string]string{}
	decoded := map[string]string{}
	h.VisitAll(func(k, v []byte) {
		if len(k) < len(contextPrefix) || (k[0] != 's' && k[0] != 'S') {
			return
		}
		key := strings.ToLower(string(k))
		if !strings.HasPrefix(key, functionPrefix) && !strings.HasPrefix(key, contextPrefix) {
			return
		}
		if base, ok := strings.CutSuffix(key, "-base64"); ok {
			if b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(v))); err == nil {
				decoded[base] = string(b)
			}
			return
		}
		plain[key] = string(v)
	})
	if len(plain) == 0 && len(decoded) == 0 {
		return g
	}
	value := func(key string) string {
		if v, ok := decoded[key]; ok {
			return v
		}
		return plain[key]
	}
	for _, m := range []map[string]string{plain, decoded} {
		for key := range m {
			if name, ok := strings.CutPrefix(key, contextPrefix); ok {
				if g.Context == nil {
					g.Context = map[string]string{}
				}
				g.Context[name] = value(key)
			}
		}
	}
	g.QueryID = value(functionPrefix + "current-query-id")
	g.BatchID = value(functionPrefix + "query-batch-id")
	g.Name = value(functionPrefix + "name")
	g.Signature = value(functionPrefix + "signature")
	g.ReturnType = value(functionPrefix + "return-type")
	g.Format = value(functionPrefix + "format")
	g.FormatVersion = value(functionPrefix + "format-version")
	return g
}

// present reports a request that came through the gateway.
func (g gateway) present() bool { return g.QueryID != "" || g.BatchID != "" || g.Format != "" }

// attrs are the log attributes that tie a request to its query.
func (g gateway) attrs() []any {
	if !g.present() {
		return nil
	}
	return []any{slog.String("query_id", g.QueryID), slog.String("batch_id", g.BatchID)}
}
