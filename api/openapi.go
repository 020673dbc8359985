package api

import _ "embed"

//go:embed openapi.yaml
var openAPISpec []byte

// OpenAPI returns the API's OpenAPI 3 document (YAML). A test keeps its
// paths and the registered routes in step.
func OpenAPI() []byte { return append([]byte(nil), openAPISpec...) }
