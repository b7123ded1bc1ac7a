// Package esignevidence holds what the whole module shares: the OpenAPI document
// generated from the contract. The service lives in server/, its binary in
// cmd/esign-evidence.
package esignevidence

import _ "embed"

// OpenAPIv2 is the OpenAPI (Swagger 2.0) document generated from the contract by
// protoc-gen-openapiv2 (make generate).
//
//go:embed gen/openapiv2/esign/evidence/v1/evidence.swagger.json
var OpenAPIv2 []byte
