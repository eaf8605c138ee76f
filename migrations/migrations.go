// Package migrations holds the SQL of Parley's Postgres read models. The
// read-model migrations are written without a schema name and applied with
// search_path set, so the live schema and a replay's fresh schema are built
// by the same files.
package migrations

import "embed"

// ReadModel is the read-model schema, applied per schema.
//
//go:embed readmodel/*.sql
var ReadModel embed.FS
