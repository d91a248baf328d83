package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/modelserve/modelserve/engine"
	"github.com/modelserve/modelserve/model"
	"github.com/modelserve/modelserve/registry"
)

// Repository is what the model repository API asks of the engine: the
// KServe v2 / Triton model-repository extension, so the calls that load
// and unload models on Triton do so here too.
type Repository interface {
	Index() ([]engine.Entry, error)
	Load(ctx context.Context, name, version string) error
	Unload(ctx context.Context, name string) error
}

// maxRepositoryBody bounds a repository request's body: a few parameters.
const maxRepositoryBody = 64 << 10

// indexEntry is one model of POST /v2/repository/index's answer.
type indexEntry struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	State   string `json:"state"`
	Reason  string `json:"reason,omitempty"`
}

// repositoryIndex answers POST /v2/repository/index: every model of the
// registry and where it stands ({"ready": true}: the ready ones alone).
func (s *Server) repositoryIndex(c *fiber.Ctx) error {
	var req struct {
		Ready bool `json:"ready"`
	}
	if err := s.readParams(c, &req); err != nil {
		writeJSONError(c, http.StatusBadRequest, err.Error())
		return nil
	}
	entries, err := s.cfg.Repository.Index()
	if err != nil {
		writeJSONError(c, http.StatusInternalServerError, "reading the registry: "+err.Error())
		return nil
	}
	out := make([]indexEntry, 0, len(entries))
	for _, e := range entries {
		if req.Ready && e.State != engine.Ready {
			continue
		}
		out = append(out, indexEntry{Name: e.Name, Version: e.Version, State: string(e.State), Reason: e.Reason})
	}
	return c.JSON(out)
}

// repositoryLoad answers POST /v2/repository/models/{name}/load: the
// model is loaded (at {"parameters": {"version": V}}, a version or an
// alias; else its latest), or switched live to that version if loaded.
// 200 once it serves.
func (s *Server) repositoryLoad(c *fiber.Ctx) error {
	var req struct {
		Parameters struct {
			Version string `json:"version"`
		} `json:"parameters"`
	}
	name := strings.Clone(c.Params("model"))
	if err := s.readParams(c, &req); err != nil {
		writeJSONError(c, http.StatusBadRequest, err.Error())
		return nil
	}
	if v := req.Parameters.Version; v != "" {
		if err := model.CheckName(model.VersionName, v); err != nil {
			writeJSONError(c, http.StatusBadRequest, err.Error())
			return nil
		}
	}
	err := s.cfg.Repository.Load(c.UserContext(), name, req.Parameters.Version)
	s.repositoryAnswer(c, "load", name, err)
	return nil
}

// repositoryUnload answers POST /v2/repository/models/{name}/unload: the
// model's routes go at once, what it admitted finishes, then it is
// unloaded; 200 then.
func (s *Server) repositoryUnload(c *fiber.Ctx) error {
	name := strings.Clone(c.Params("model"))
	var req struct {
		Parameters map[string]any `json:"parameters"`
	}
	if err := s.readParams(c, &req); err != nil {
		writeJSONError(c, http.StatusBadRequest, err.Error())
		return nil
	}
	err := s.cfg.Repository.Unload(c.UserContext(), name)
	s.repositoryAnswer(c, "unload", name, err)
	return nil
}

// repositoryAnswer answers a load or unload: 200 with an empty body, or
// the error with the status that fits it, and logs it for the audit.
func (s *Server) repositoryAnswer(c *fiber.Ctx, what, name string, err error) {
	s.cfg.Audit.Info("repository "+what, "model", name, "principal", principal(c), "remote", c.IP(), "ok", err == nil)
	if err == nil {
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		c.Status(http.StatusOK)
		return
	}
	status := http.StatusBadRequest
	switch {
	case errors.Is(err, registry.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, engine.ErrNoRoom):
		status = http.StatusInsufficientStorage
	}
	writeJSONError(c, status, fmt.Sprintf("%s %s: %v", what, name, err))
}

// readParams decodes a repository request's small JSON body into v; an
// empty body leaves v as it is.
func (s *Server) readParams(c *fiber.Ctx, v any) error {
	raw, err := s.readRaw(c, maxRepositoryBody)
	if err != nil {
		return err
	}
	if len(strings.TrimSpace(string(raw))) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("the request body is not the JSON this route takes: %w", err)
	}
	return nil
}
