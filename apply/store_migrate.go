package apply

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Schema migrations live in migrations/<kind>/NNNN_name.sql, one file per
// version, the same versions for every kind. Each runs in one transaction
// together with its row in edgesync_schema_version(version, applied_at), the
// table that says how far a database is migrated. A database migrated past
// the newest version known here is refused (ErrSchemaTooNew).
//
//go:embed migrations
var migrationFS embed.FS

// migration is one versioned schema change.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the migrations of kind in version order.
func migrations(kind Kind) ([]migration, error) {
	dir := path.Join("migrations", string(kind))
	entries, err := fs.ReadDir(migrationFS, dir)
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration file %s: want NNNN_name.sql", name)
		}
		b, err := fs.ReadFile(migrationFS, path.Join(dir, name))
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: name, sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("migrations/%s: version %d missing", kind, i+1)
		}
	}
	return out, nil
}
