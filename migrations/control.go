package migrations

import "embed"

// Control is the control schema (`parley`): the active read-model pointer of
// every deployment and the function that points its analytics views at the
// active schema. Applied once per database, with search_path=parley.
//
//go:embed control/*.sql
var Control embed.FS
