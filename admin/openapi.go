package admin

import (
	_ "embed"
	"net/http"

	"github.com/labstack/echo/v4"
)

// OpenAPI is the OpenAPI 3 description of this API (openapi.yaml), served
// at GET /openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte

// openAPIContentType is the media type of OpenAPI, per RFC 9512.
const openAPIContentType = "application/yaml"

// handleOpenAPI serves GET /openapi.yaml.
func (s *Server) handleOpenAPI(c echo.Context) error {
	return c.Blob(http.StatusOK, openAPIContentType, OpenAPI)
}
