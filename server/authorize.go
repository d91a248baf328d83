package server

import (
	"net/netip"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/modelserve/modelserve/auth"
)

// principalKey holds, in a request's locals, who it comes from.
type principalKey struct{}

// authorize runs before every route: it establishes the caller and
// refuses (401, 403) a request whose principal lacks the route's scope.
// Probes stay open unless Config.AuthHealth says otherwise.
func (s *Server) authorize(c *fiber.Ctx) error {
	if !s.cfg.Auth.Enabled() {
		return c.Next() // everyone is anonymous, and allowed
	}
	need, open := s.need(c)
	if open {
		return c.Next()
	}
	pr, f := s.cfg.Auth.Check(credentials(c), need)
	if f != nil {
		c.Set(fiber.HeaderWWWAuthenticate, f.Challenge)
		s.writeBody(c, f.Status, fiber.MIMEApplicationJSON, errorBody(f.Message))
		s.cfg.Audit.Info("refused", "status", f.Status, "reason", f.Reason, "principal", pr.Name, "path", c.Path(),
			"remote", c.IP())
		return nil
	}
	c.Locals(principalKey{}, pr.Name)
	return c.Next()
}

// need is what the route asked for requires; open when it requires nothing.
func (s *Server) need(c *fiber.Ctx) (auth.Need, bool) {
	switch p := c.Path(); {
	case p == "/health", p == "/healthcheck", strings.HasPrefix(p, "/health/"):
		return auth.Need{}, !s.cfg.AuthHealth
	case p == "/metrics":
		return auth.Need{Scope: auth.ScopeMetrics}, false
	case strings.HasPrefix(p, "/v2/repository/"):
		return auth.Need{Scope: auth.ScopeAdmin}, false
	case p == "/v2/health/live", p == "/v2/health/ready":
		return auth.Need{}, !s.cfg.AuthHealth
	case strings.HasPrefix(p, "/v2/models/"):
		// /v2/models/NAME[/versions/V][/ready|/infer]: readiness is a
		// probe; metadata and infer need predict for the model.
		parts := strings.Split(p, "/")
		if strings.HasSuffix(p, "/ready") {
			return auth.Need{}, !s.cfg.AuthHealth
		}
		return auth.Need{Scope: auth.ScopePredict, Model: parts[3]}, false
	default:
		if r, ok := s.tab.Load().routes[p]; ok {
			return auth.Need{Scope: auth.ScopePredict, Model: r.m.name, Function: r.fn.Name}, false
		}
		return auth.Need{}, false // any principal, then 404
	}
}

// credentials gathers what the request brings: its Authorization header,
// its address, its verified client certificate, and a caller named by a
// proxy (trusted or not: the policy decides).
func credentials(c *fiber.Ctx) auth.Credentials {
	cr := auth.Credentials{Authorization: c.Get(fiber.HeaderAuthorization)}
	if a, ok := netip.AddrFromSlice(c.Context().RemoteIP()); ok {
		cr.Remote = a.Unmap()
	}
	if st := c.Context().TLSConnectionState(); st != nil && len(st.VerifiedChains) > 0 && len(st.VerifiedChains[0]) > 0 {
		cr.Certificate = st.VerifiedChains[0][0]
	}
	// Copied: fiber's header strings are the connection's buffer, and the
	// name may outlive the handler (a gateway batch's owner).
	if u := c.Get(contextPrefix + "current-user"); u != "" {
		cr.ForwardedUser = strings.Clone(u)
	} else if u := c.Get("X-Forwarded-User"); u != "" {
		cr.ForwardedUser = strings.Clone(u)
	}
	return cr
}

// principal is the name of who the request comes from: "anonymous" when
// no auth is configured.
func principal(c *fiber.Ctx) string {
	if name, ok := c.Locals(principalKey{}).(string); ok {
		return name
	}
	return "anonymous"
}
