package api

import _ "embed"

// OpenAPI is the OpenAPI 3.1 document of the REST API v1 (openapi.yaml
// beside this file), which servers answer GET /v1/openapi.yaml with. A test
// in server/httpapi fails when its paths and the server's routes disagree.
//
//go:embed openapi.yaml
var OpenAPI []byte
