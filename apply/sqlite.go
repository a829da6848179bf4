package apply

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// SQLite settings. WAL lets readers (Device, a dashboard) run beside the
// writer; synchronous=FULL syncs the WAL at every commit, so an acknowledged
// batch survives power loss (NORMAL could lose the last commits, which the
// device has already deleted). One fsync per batch of up to 1000 records
// costs little. A writer waits up to 10 s for another process's write
// (replay-parked, import) before failing with SQLITE_BUSY; the WAL file is
// cut back to 64 MiB whenever it restarts.
const sqliteParams = "_busy_timeout=10000&_journal_mode=WAL&_synchronous=FULL&_pragma=journal_size_limit(67108864)"

// sqliteTimeLayout is how times are written to SQLite: UTC, nine fraction
// digits, a Z; fixed width, so text order is time order.
const sqliteTimeLayout = "2006-01-02T15:04:05.000000000Z"

func sqliteTime(t time.Time) string { return t.UTC().Format(sqliteTimeLayout) }

func sqliteTimeNs(ns int64) string { return sqliteTime(time.Unix(0, ns)) }

func parseSQLiteTime(s string) (time.Time, error) {
	return time.Parse(time.RFC3339Nano, s)
}

// nullString maps "" to SQL NULL.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// The statements of the SQLite writer, prepared once on its connection.
const (
	sqlSelectDevice = `SELECT epoch_gen, applied_through FROM edgesync_devices WHERE device_id = ? AND epoch = ?`
	sqlInsertDevice = `INSERT INTO edgesync_devices
	(device_id, epoch, epoch_gen, applied_through, lost, duplicates, first_seen, last_seen)
	SELECT ?1, ?2, COALESCE(MAX(epoch_gen), 0) + 1, 0, 0, 0, ?3, ?3 FROM edgesync_devices WHERE device_id = ?1`
	sqlUpdateDevice = `UPDATE edgesync_devices
	SET applied_through = ?, lost = lost + ?, duplicates = duplicates + ?, last_seen = ?
	WHERE device_id = ? AND epoch = ?`
	sqlInsertLog = `INSERT INTO edgesync_log
	(device_id, epoch, seq, stream, key, id, op, schema, data, captured_at, applied_at)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`
	sqlInsertStateID = `INSERT INTO edgesync_state_ids (device_id, stream, id, epoch, seq, applied_at)
	VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`
	sqlUpsertState = `INSERT INTO edgesync_state
	(device_id, stream, key, epoch_gen, epoch, seq, id, deleted, schema, data, captured_at, applied_at)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (device_id, stream, key) DO UPDATE SET
		epoch_gen = excluded.epoch_gen, epoch = excluded.epoch, seq = excluded.seq, id = excluded.id,
		deleted = excluded.deleted, schema = excluded.schema, data = excluded.data,
		captured_at = excluded.captured_at, applied_at = excluded.applied_at
	WHERE (edgesync_state.epoch_gen, edgesync_state.seq) < (excluded.epoch_gen, excluded.seq)`
	sqlInsertParked = `INSERT INTO edgesync_parked (device_id, epoch, seq, stream, schema, reason, raw, parked_at)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`
	sqlDeleteParked = `DELETE FROM edgesync_parked WHERE device_id = ? AND epoch = ? AND seq = ?`
	sqlParkedAfter  = `SELECT p.device_id, p.epoch, p.seq, p.stream, COALESCE(p.schema, ''), p.reason, p.raw,
		COALESCE(d.epoch_gen, 0)
	FROM edgesync_parked p
	LEFT JOIN edgesync_devices d ON d.device_id = p.device_id AND d.epoch = p.epoch
	WHERE (p.device_id, p.epoch, p.seq) > (?, ?, ?)
	ORDER BY p.device_id, p.epoch, p.seq LIMIT ?`
)

// checkpointEvery is how often the background checkpointer copies the WAL
// into the database file. The writer's automatic checkpoint is off: run
// inside a commit, it stalled one batch in every ten or so for the time of
// writing and syncing megabytes, which halved the apply rate.
const checkpointEvery = time.Second

// sqliteBackend writes through one connection, one transaction at a time
// (SQLite has a single writer anyway), and reads through a small pool. A
// goroutine checkpoints the WAL beside the writer (PASSIVE: it never blocks
// it).
//
// Lock order: mu, then the database's own locks.
type sqliteBackend struct {
	db *sql.DB // readers and the checkpointer

	mu     sync.Mutex // held from begin to commit or rollback
	conn   *sql.Conn  // the writer; nil once closed
	stmts  map[string]*sql.Stmt
	closed bool

	stop    chan struct{} // closed by close to end the checkpointer
	stopped chan struct{} // closed by the checkpointer when it returns
}

func openSQLite(ctx context.Context, path string) (*sqliteBackend, error) {
	if strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("open sqlite store: path %q must not contain '?'", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open sqlite store: %w", err)
	}
	db, err := sql.Open("sqlite", path+"?"+sqliteParams)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store: %w", err)
	}
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	b := &sqliteBackend{db: db, conn: conn, stmts: make(map[string]*sql.Stmt)}
	if err := b.migrate(ctx); err != nil {
		b.close()
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, "PRAGMA wal_autocheckpoint = 0"); err != nil {
		b.close()
		return nil, fmt.Errorf("open sqlite store: %w", err)
	}
	for _, q := range []string{sqlSelectDevice, sqlInsertDevice, sqlUpdateDevice, sqlInsertLog,
		sqlInsertStateID, sqlUpsertState, sqlInsertParked, sqlDeleteParked, sqlParkedAfter} {
		st, err := conn.PrepareContext(ctx, q)
		if err != nil {
			b.close()
			return nil, fmt.Errorf("open sqlite store: prepare: %w", err)
		}
		b.stmts[q] = st
	}
	b.stop, b.stopped = make(chan struct{}), make(chan struct{})
	go b.checkpointer()
	return b, nil
}

// checkpointer copies committed WAL frames into the database file every
// checkpointEvery, until close. A failed checkpoint is retried at the next
// tick; the WAL grows meanwhile, nothing is lost.
func (b *sqliteBackend) checkpointer() {
	defer close(b.stopped)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.db.Exec("PRAGMA wal_checkpoint(PASSIVE)")
		}
	}
}

// migrate applies pending migrations, each in one BEGIN IMMEDIATE
// transaction, which also keeps two processes from migrating at once.
func (b *sqliteBackend) migrate(ctx context.Context) error {
	ms, err := migrations(KindSQLite)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if err := b.migrateOne(ctx, m, len(ms)); err != nil {
			return err
		}
	}
	return nil
}

func (b *sqliteBackend) migrateOne(ctx context.Context, m migration, newest int) (err error) {
	fail := func(err error) error { return &MigrationError{Version: m.version, Err: err} }
	if _, err := b.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fail(err)
	}
	defer func() {
		if err != nil {
			b.conn.ExecContext(context.Background(), "ROLLBACK")
		}
	}()
	if _, err := b.conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS edgesync_schema_version (
		version    INTEGER PRIMARY KEY,
		applied_at TEXT    NOT NULL)`); err != nil {
		return fail(err)
	}
	var have int
	if err := b.conn.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM edgesync_schema_version`).Scan(&have); err != nil {
		return fail(err)
	}
	if have > newest {
		return fail(fmt.Errorf("%w: database at version %d, this edgesync knows up to %d", ErrSchemaTooNew, have, newest))
	}
	if have >= m.version {
		_, err := b.conn.ExecContext(ctx, "COMMIT")
		return err
	}
	if _, err := b.conn.ExecContext(ctx, m.sql); err != nil {
		return fail(err)
	}
	if _, err := b.conn.ExecContext(ctx, `INSERT INTO edgesync_schema_version (version, applied_at) VALUES (?, ?)`,
		m.version, sqliteTime(time.Now())); err != nil {
		return fail(err)
	}
	if _, err := b.conn.ExecContext(ctx, "COMMIT"); err != nil {
		return fail(err)
	}
	return nil
}

func (b *sqliteBackend) close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	if b.stop != nil {
		close(b.stop)
		<-b.stopped
	}
	var errs []error
	for _, st := range b.stmts {
		errs = append(errs, st.Close())
	}
	if b.conn != nil {
		// Leave a small WAL behind; not fatal when it fails.
		b.conn.ExecContext(context.Background(), "PRAGMA wal_checkpoint(TRUNCATE)")
		errs = append(errs, b.conn.Close())
		b.conn = nil
	}
	errs = append(errs, b.db.Close())
	return errors.Join(errs...)
}

func (b *sqliteBackend) retryable(error) bool { return false }

// beginLocked takes the writer and starts a BEGIN IMMEDIATE transaction.
func (b *sqliteBackend) beginLocked(ctx context.Context) (*sqliteTx, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, ErrClosed
	}
	if _, err := b.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		b.mu.Unlock()
		return nil, fmt.Errorf("sqlite begin: %w", err)
	}
	return &sqliteTx{b: b}, nil
}

func (b *sqliteBackend) begin(ctx context.Context, device string, epoch int64, now time.Time) (txn, devState, error) {
	tx, err := b.beginLocked(ctx)
	if err != nil {
		return nil, devState{}, err
	}
	var st devState
	var applied int64
	err = tx.stmt(sqlSelectDevice).QueryRowContext(ctx, device, epoch).Scan(&st.epochGen, &applied)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err = tx.stmt(sqlInsertDevice).ExecContext(ctx, device, epoch, sqliteTime(now)); err == nil {
			st.created = true
			err = tx.stmt(sqlSelectDevice).QueryRowContext(ctx, device, epoch).Scan(&st.epochGen, &applied)
		}
	}
	if err != nil {
		tx.rollback()
		return nil, devState{}, fmt.Errorf("sqlite watermark: %w", err)
	}
	st.applied = uint64(applied)
	return tx, st, nil
}

func (b *sqliteBackend) beginReplay(ctx context.Context) (txn, error) {
	return b.beginLocked(ctx)
}

func (b *sqliteBackend) devices(ctx context.Context, device string) ([]DeviceRow, error) {
	q := `SELECT device_id, epoch, epoch_gen, applied_through, lost, duplicates, first_seen, last_seen
	FROM edgesync_devices`
	var args []any
	if device != "" {
		q += ` WHERE device_id = ?`
		args = append(args, device)
	}
	rows, err := b.db.QueryContext(ctx, q+` ORDER BY device_id, epoch_gen`, args...)
	if err != nil {
		return nil, fmt.Errorf("read devices: %w", err)
	}
	defer rows.Close()
	var out []DeviceRow
	for rows.Next() {
		var (
			d               DeviceRow
			epoch, at, lost int64
			dups            int64
			first, lastSeen string
		)
		if err := rows.Scan(&d.Device, &epoch, &d.EpochGen, &at, &lost, &dups, &first, &lastSeen); err != nil {
			return nil, fmt.Errorf("read devices: %w", err)
		}
		d.Epoch, d.AppliedThrough, d.Lost, d.Duplicates = uint64(epoch), uint64(at), uint64(lost), uint64(dups)
		if d.FirstSeen, err = parseSQLiteTime(first); err != nil {
			return nil, fmt.Errorf("read devices: first_seen: %w", err)
		}
		if d.LastSeen, err = parseSQLiteTime(lastSeen); err != nil {
			return nil, fmt.Errorf("read devices: last_seen: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read devices: %w", err)
	}
	return out, nil
}

func (b *sqliteBackend) countParked(ctx context.Context) (int, error) {
	var n int
	if err := b.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM edgesync_parked`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count parked: %w", err)
	}
	return n, nil
}

// sqliteTx is a write transaction on the writer connection; it holds b.mu.
type sqliteTx struct {
	b    *sqliteBackend
	done bool
}

func (t *sqliteTx) stmt(q string) *sql.Stmt { return t.b.stmts[q] }

func (t *sqliteTx) commit(ctx context.Context) error {
	if t.done {
		return errors.New("sqlite: transaction already ended")
	}
	_, err := t.b.conn.ExecContext(ctx, "COMMIT")
	if err != nil {
		t.rollback()
		return fmt.Errorf("sqlite commit: %w", err)
	}
	t.done = true
	t.b.mu.Unlock()
	return nil
}

func (t *sqliteTx) rollback() {
	if t.done {
		return
	}
	t.done = true
	// A failed COMMIT may have rolled back already; then this fails
	// harmlessly.
	t.b.conn.ExecContext(context.Background(), "ROLLBACK")
	t.b.mu.Unlock()
}

func (t *sqliteTx) insertLog(ctx context.Context, g *group, rows []*row) error {
	st := t.stmt(sqlInsertLog)
	applied := sqliteTime(g.now)
	for _, r := range rows {
		res, err := st.ExecContext(ctx, g.device, g.epoch, r.seq(), r.rec.Stream, r.rec.Key,
			nullString(r.rec.ID), r.op(), nullString(r.schema), nullString(r.data),
			sqliteTimeNs(r.rec.CapturedAt), applied)
		if err != nil {
			return fmt.Errorf("insert edgesync_log: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("insert edgesync_log: %w", err)
		} else if n == 0 {
			r.dup = true
		}
	}
	return nil
}

func (t *sqliteTx) insertStateIDs(ctx context.Context, g *group, rows []*row) error {
	st := t.stmt(sqlInsertStateID)
	applied := sqliteTime(g.now)
	for _, r := range rows {
		res, err := st.ExecContext(ctx, g.device, r.rec.Stream, r.rec.ID, g.epoch, r.seq(), applied)
		if err != nil {
			return fmt.Errorf("insert edgesync_state_ids: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("insert edgesync_state_ids: %w", err)
		} else if n == 0 {
			r.dup = true
		}
	}
	return nil
}

func (t *sqliteTx) upsertState(ctx context.Context, g *group, rows []*row) error {
	st := t.stmt(sqlUpsertState)
	applied := sqliteTime(g.now)
	for _, r := range rows {
		if _, err := st.ExecContext(ctx, g.device, r.rec.Stream, r.rec.Key, g.epochGen, g.epoch, r.seq(),
			nullString(r.rec.ID), r.rec.Op == 1, nullString(r.schema), nullString(r.data),
			sqliteTimeNs(r.rec.CapturedAt), applied); err != nil {
			return fmt.Errorf("upsert edgesync_state: %w", err)
		}
	}
	return nil
}

func (t *sqliteTx) insertParked(ctx context.Context, rows []parkedRow, now time.Time) error {
	st := t.stmt(sqlInsertParked)
	at := sqliteTime(now)
	for _, r := range rows {
		if _, err := st.ExecContext(ctx, r.device, r.epoch, r.seq, r.stream, nullString(r.schema),
			r.reason, r.raw, at); err != nil {
			return fmt.Errorf("insert edgesync_parked: %w", err)
		}
	}
	return nil
}

func (t *sqliteTx) updateDevice(ctx context.Context, device string, epoch, appliedThrough, lost, dups int64, now time.Time) error {
	if _, err := t.stmt(sqlUpdateDevice).ExecContext(ctx, appliedThrough, lost, dups, sqliteTime(now), device, epoch); err != nil {
		return fmt.Errorf("update edgesync_devices: %w", err)
	}
	return nil
}

func (t *sqliteTx) parkedAfter(ctx context.Context, device string, epoch, seq int64, limit int) ([]parkedRow, error) {
	rows, err := t.stmt(sqlParkedAfter).QueryContext(ctx, device, epoch, seq, limit)
	if err != nil {
		return nil, fmt.Errorf("read edgesync_parked: %w", err)
	}
	defer rows.Close()
	return scanParked(rows)
}

func (t *sqliteTx) deleteParked(ctx context.Context, rows []parkedRow) error {
	st := t.stmt(sqlDeleteParked)
	for _, r := range rows {
		if _, err := st.ExecContext(ctx, r.device, r.epoch, r.seq); err != nil {
			return fmt.Errorf("delete edgesync_parked: %w", err)
		}
	}
	return nil
}
