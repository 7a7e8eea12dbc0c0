package prefect

import _ "embed"

// Schema is the part of the Prefect 1 GraphQL schema this project uses.
//
//go:embed schema.graphql
var Schema string
