package api

import _ "embed"

// OpenAPI is the OpenAPI 3.1 document of the REST API v1 (openapi.yaml
// beside this file), which servers answer GET /v1/openapi.yaml with. A test
// in server/httpapi fails when its paths and the server's routes disagree.
//
//go:embed openapi.yaml
var OpenAPI []byte

// OpenAPIJSON is the same document as JSON (openapi.json, generated from
// openapi.yaml: a test in server/httpapi fails when they differ, and
// RAFTING_UPDATE_OPENAPI=1 writes it), which servers answer GET
// /v1/openapi.json with.
//
//go:embed openapi.json
var OpenAPIJSON []byte
