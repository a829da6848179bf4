package apply

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/edgesync/edgesync/internal/pgwire"
)

// migrationLockID is the pg_advisory_xact_lock key that keeps two sinks
// starting at once from migrating the same database together.
const migrationLockID = 0x65646765_73796e63 // "edgesync"

// errEpochGenRace: two sinks gave a new epoch of one device the same
// epoch_gen at once; the loser retries with the next number.
var errEpochGenRace = errors.New("apply: epoch_gen taken by a concurrent sink")

// The statements of the PostgreSQL store. pgwire prepares and caches them
// per connection. Rows go in as arrays through unnest: one round trip per
// statement and batch, not per record.
const (
	pgSelectDevice = `SELECT epoch_gen, applied_through FROM edgesync_devices
	WHERE device_id = $1 AND epoch = $2 FOR UPDATE`
	// ON CONFLICT without a target covers both the primary key (another
	// sink created this epoch's row: wait for it, then lock it) and
	// UNIQUE (device_id, epoch_gen) (another sink took the number for
	// another epoch: nothing inserted, retry).
	pgInsertDevice = `INSERT INTO edgesync_devices
	(device_id, epoch, epoch_gen, applied_through, lost, duplicates, first_seen, last_seen)
	SELECT $1, $2, COALESCE(MAX(epoch_gen), 0) + 1, 0, 0, 0, $3, $3 FROM edgesync_devices WHERE device_id = $1
	ON CONFLICT DO NOTHING`
	pgUpdateDevice = `UPDATE edgesync_devices
	SET applied_through = $3, lost = lost + $4, duplicates = duplicates + $5, last_seen = $6
	WHERE device_id = $1 AND epoch = $2`
	pgInsertLog = `INSERT INTO edgesync_log
	(device_id, epoch, seq, stream, key, id, op, schema, data, captured_at, applied_at)
	SELECT $1, $2, u.seq, u.stream, u.key, NULLIF(u.id, ''), u.op, NULLIF(u.schema, ''),
		NULLIF(u.data, '')::jsonb, u.captured_at, $3
	FROM unnest($4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::timestamptz[])
		AS u(seq, stream, key, id, op, schema, data, captured_at)
	ON CONFLICT DO NOTHING
	RETURNING seq`
	pgInsertStateIDs = `INSERT INTO edgesync_state_ids (device_id, stream, id, epoch, seq, applied_at)
	SELECT $1, u.stream, u.id, $2, u.seq, $3
	FROM unnest($4::text[], $5::text[], $6::bigint[]) AS u(stream, id, seq)
	ON CONFLICT DO NOTHING
	RETURNING seq`
	pgUpsertState = `INSERT INTO edgesync_state
	(device_id, stream, key, epoch_gen, epoch, seq, id, deleted, schema, data, captured_at, applied_at)
	SELECT $1, u.stream, u.key, $2, $3, u.seq, NULLIF(u.id, ''), u.deleted, NULLIF(u.schema, ''),
		NULLIF(u.data, '')::jsonb, u.captured_at, $4
	FROM unnest($5::text[], $6::text[], $7::bigint[], $8::text[], $9::boolean[], $10::text[], $11::text[], $12::timestamptz[])
		AS u(stream, key, seq, id, deleted, schema, data, captured_at)
	ON CONFLICT (device_id, stream, key) DO UPDATE SET
		epoch_gen = excluded.epoch_gen, epoch = excluded.epoch, seq = excluded.seq, id = excluded.id,
		deleted = excluded.deleted, schema = excluded.schema, data = excluded.data,
		captured_at = excluded.captured_at, applied_at = excluded.applied_at
	WHERE (edgesync_state.epoch_gen, edgesync_state.seq) < (excluded.epoch_gen, excluded.seq)`
	pgInsertParked = `INSERT INTO edgesync_parked (device_id, epoch, seq, stream, schema, reason, raw, parked_at)
	SELECT u.device_id, u.epoch, u.seq, u.stream, NULLIF(u.schema, ''), u.reason, u.raw, $1
	FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::bytea[])
		AS u(device_id, epoch, seq, stream, schema, reason, raw)
	ON CONFLICT DO NOTHING`
	pgDeleteParked = `DELETE FROM edgesync_parked p
	USING unnest($1::text[], $2::bigint[], $3::bigint[]) AS u(device_id, epoch, seq)
	WHERE p.device_id = u.device_id AND p.epoch = u.epoch AND p.seq = u.seq`
	// Rows another replay holds are skipped, not waited for.
	pgParkedAfter = `SELECT p.device_id, p.epoch, p.seq, p.stream, COALESCE(p.schema, ''), p.reason, p.raw,
		COALESCE(d.epoch_gen, 0)
	FROM edgesync_parked p
	LEFT JOIN edgesync_devices d ON d.device_id = p.device_id AND d.epoch = p.epoch
	WHERE (p.device_id, p.epoch, p.seq) > ($1, $2, $3)
	ORDER BY p.device_id, p.epoch, p.seq
	LIMIT $4
	FOR UPDATE OF p SKIP LOCKED`
)

// pgBackend is a pool of pgwire connections; transactions run at READ COMMITTED
// and serialise per device on the watermark row.
type pgBackend struct {
	pool *pgPool
}

func openPostgres(ctx context.Context, c StoreConfig) (*pgBackend, error) {
	cfg, err := pgwire.ParseURL(c.URL)
	if err != nil {
		return nil, fmt.Errorf("open postgres store: store.url: %w", err)
	}
	if c.PasswordFile != "" {
		pw, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("open postgres store: password_file: %w", err)
		}
		cfg.Password = strings.TrimRight(string(pw), "\r\n")
	}
	size := c.MaxConns
	if size <= 0 {
		size = max(4, runtime.NumCPU())
	}
	b := &pgBackend{pool: newPGPool(cfg, size)}
	if err := b.pool.ping(ctx); err != nil {
		b.pool.close()
		return nil, fmt.Errorf("open postgres store %s: %w", redactURL(c.URL), err)
	}
	if err := b.migrate(ctx); err != nil {
		b.pool.close()
		return nil, err
	}
	return b, nil
}

// migrate applies pending migrations in one transaction, under an advisory
// lock so that sinks starting together take turns.
func (b *pgBackend) migrate(ctx context.Context) error {
	ms, err := migrations(KindPostgres)
	if err != nil {
		return err
	}
	version := 0
	fail := func(err error) error { return &MigrationError{Version: version, Err: err} }
	t, err := b.pool.begin(ctx)
	if err != nil {
		return fail(err)
	}
	defer t.rollback()
	tx := t.conn
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLockID)); err != nil {
		return fail(err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS edgesync_schema_version (
		version    integer     PRIMARY KEY,
		applied_at timestamptz NOT NULL)`); err != nil {
		return fail(err)
	}
	var have int
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM edgesync_schema_version`).Scan(&have); err != nil {
		return fail(err)
	}
	if have > len(ms) {
		version = have
		return fail(fmt.Errorf("%w: database at version %d, this edgesync knows up to %d", ErrSchemaTooNew, have, len(ms)))
	}
	for _, m := range ms[have:] {
		version = m.version
		if err := tx.SimpleExec(ctx, m.sql); err != nil {
			return fail(err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO edgesync_schema_version (version, applied_at) VALUES ($1, now())`, m.version); err != nil {
			return fail(err)
		}
	}
	if err := t.commit(ctx); err != nil {
		return fail(err)
	}
	return nil
}

func (b *pgBackend) close() error {
	b.pool.close()
	return nil
}

// retryable reports serialization failures, deadlocks and epoch_gen races:
// conflicts with another sink that a new transaction resolves.
func (b *pgBackend) retryable(err error) bool {
	if errors.Is(err, errEpochGenRace) {
		return true
	}
	var pe *pgwire.Error
	if errors.As(err, &pe) {
		switch pe.Code {
		case "40001", "40P01": // serialization_failure, deadlock_detected
			return true
		}
	}
	return false
}

func (b *pgBackend) begin(ctx context.Context, device string, epoch int64, now time.Time) (txn, devState, error) {
	t, err := b.pool.begin(ctx)
	if err != nil {
		return nil, devState{}, err
	}
	var (
		st      devState
		applied int64
	)
	err = t.conn.QueryRow(ctx, pgSelectDevice, device, epoch).Scan(&st.epochGen, &applied)
	if errors.Is(err, pgwire.ErrNoRows) {
		var tag pgwire.CommandTag
		if tag, err = t.conn.Exec(ctx, pgInsertDevice, device, epoch, now); err == nil {
			st.created = tag.RowsAffected() == 1
			err = t.conn.QueryRow(ctx, pgSelectDevice, device, epoch).Scan(&st.epochGen, &applied)
			if errors.Is(err, pgwire.ErrNoRows) {
				err = errEpochGenRace
			}
		}
	}
	if err != nil {
		t.rollback()
		return nil, devState{}, fmt.Errorf("postgres watermark: %w", err)
	}
	st.applied = uint64(applied)
	return t, st, nil
}

func (b *pgBackend) beginReplay(ctx context.Context) (txn, error) {
	return b.pool.begin(ctx)
}

func (b *pgBackend) devices(ctx context.Context, device string) ([]DeviceRow, error) {
	q := `SELECT device_id, epoch, epoch_gen, applied_through, lost, duplicates, first_seen, last_seen
	FROM edgesync_devices`
	var args []any
	if device != "" {
		q += ` WHERE device_id = $1`
		args = append(args, device)
	}
	c, err := b.pool.acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("read devices: %w", err)
	}
	defer b.pool.release(c)
	rows, err := c.Query(ctx, q+` ORDER BY device_id, epoch_gen`, args...)
	if err != nil {
		return nil, fmt.Errorf("read devices: %w", err)
	}
	defer rows.Close()
	var out []DeviceRow
	for rows.Next() {
		var (
			d                     DeviceRow
			epoch, at, lost, dups int64
		)
		if err := rows.Scan(&d.Device, &epoch, &d.EpochGen, &at, &lost, &dups, &d.FirstSeen, &d.LastSeen); err != nil {
			return nil, fmt.Errorf("read devices: %w", err)
		}
		d.Epoch, d.AppliedThrough, d.Lost, d.Duplicates = uint64(epoch), uint64(at), uint64(lost), uint64(dups)
		d.FirstSeen, d.LastSeen = d.FirstSeen.UTC(), d.LastSeen.UTC()
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read devices: %w", err)
	}
	return out, nil
}

func (b *pgBackend) countParked(ctx context.Context) (int, error) {
	c, err := b.pool.acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("count parked: %w", err)
	}
	defer b.pool.release(c)
	var n int
	if err := c.QueryRow(ctx, `SELECT COUNT(*) FROM edgesync_parked`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count parked: %w", err)
	}
	return n, nil
}

// pgTx is one transaction on a pooled connection, which it gives back when
// it ends.
type pgTx struct {
	pool *pgPool
	conn *pgwire.Conn
	done bool
}

func (t *pgTx) commit(ctx context.Context) error {
	if t.done {
		return errors.New("postgres: transaction already ended")
	}
	err := t.conn.SimpleExec(ctx, "COMMIT")
	if err == nil && t.conn.TxStatus() != 'I' {
		err = errors.New("the transaction did not end")
	}
	if err != nil {
		t.rollback()
		return fmt.Errorf("postgres commit: %w", err)
	}
	t.done = true
	t.pool.release(t.conn)
	return nil
}

func (t *pgTx) rollback() {
	if t.done {
		return
	}
	t.done = true
	// Rollback must run even when the caller's context has ended, or the
	// connection goes back to the pool inside a transaction.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = t.conn.SimpleExec(ctx, "ROLLBACK")
	t.pool.release(t.conn)
}

// pgText makes s storable in a PostgreSQL text column: no NUL.
func pgText(s string) string {
	if strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}

// markDups marks dup every row whose seq is not in inserted. rows are in seq
// order.
func markDups(rows []*row, inserted []int64) {
	slices.Sort(inserted)
	j := 0
	for _, r := range rows {
		s := r.seq()
		for j < len(inserted) && inserted[j] < s {
			j++
		}
		if j < len(inserted) && inserted[j] == s {
			j++
			continue
		}
		r.dup = true
	}
}

// collectSeqs runs q and returns the seq column of its rows.
func (t *pgTx) collectSeqs(ctx context.Context, q string, n int, args ...any) ([]int64, error) {
	rows, err := t.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]int64, 0, n)
	for rows.Next() {
		var s int64
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func (t *pgTx) insertLog(ctx context.Context, g *group, rows []*row) error {
	n := len(rows)
	var (
		seqs     = make([]int64, n)
		streams  = make([]string, n)
		keys     = make([]string, n)
		ids      = make([]string, n)
		ops      = make([]string, n)
		schemas  = make([]string, n)
		data     = make([]string, n)
		captured = make([]time.Time, n)
	)
	for i, r := range rows {
		seqs[i], streams[i], keys[i], ids[i] = r.seq(), r.rec.Stream, r.rec.Key, r.rec.ID
		ops[i], schemas[i], data[i] = r.op(), r.schema, r.data
		captured[i] = time.Unix(0, r.rec.CapturedAt).UTC()
	}
	inserted, err := t.collectSeqs(ctx, pgInsertLog, n, g.device, g.epoch, g.now,
		seqs, streams, keys, ids, ops, schemas, data, captured)
	if err != nil {
		return fmt.Errorf("insert edgesync_log: %w", err)
	}
	if len(inserted) < n {
		markDups(rows, inserted)
	}
	return nil
}

func (t *pgTx) insertStateIDs(ctx context.Context, g *group, rows []*row) error {
	n := len(rows)
	var (
		streams = make([]string, n)
		ids     = make([]string, n)
		seqs    = make([]int64, n)
	)
	for i, r := range rows {
		streams[i], ids[i], seqs[i] = r.rec.Stream, r.rec.ID, r.seq()
	}
	inserted, err := t.collectSeqs(ctx, pgInsertStateIDs, n, g.device, g.epoch, g.now, streams, ids, seqs)
	if err != nil {
		return fmt.Errorf("insert edgesync_state_ids: %w", err)
	}
	if len(inserted) < n {
		markDups(rows, inserted)
	}
	return nil
}

func (t *pgTx) upsertState(ctx context.Context, g *group, rows []*row) error {
	n := len(rows)
	var (
		streams  = make([]string, n)
		keys     = make([]string, n)
		seqs     = make([]int64, n)
		ids      = make([]string, n)
		deleted  = make([]bool, n)
		schemas  = make([]string, n)
		data     = make([]string, n)
		captured = make([]time.Time, n)
	)
	for i, r := range rows {
		streams[i], keys[i], seqs[i], ids[i] = r.rec.Stream, r.rec.Key, r.seq(), r.rec.ID
		deleted[i], schemas[i], data[i] = r.op() == "delete", r.schema, r.data
		captured[i] = time.Unix(0, r.rec.CapturedAt).UTC()
	}
	if _, err := t.conn.Exec(ctx, pgUpsertState, g.device, g.epochGen, g.epoch, g.now,
		streams, keys, seqs, ids, deleted, schemas, data, captured); err != nil {
		return fmt.Errorf("upsert edgesync_state: %w", err)
	}
	return nil
}

func (t *pgTx) insertParked(ctx context.Context, rows []parkedRow, now time.Time) error {
	n := len(rows)
	var (
		devices = make([]string, n)
		epochs  = make([]int64, n)
		seqs    = make([]int64, n)
		streams = make([]string, n)
		schemas = make([]string, n)
		reasons = make([]string, n)
		raws    = make([][]byte, n)
	)
	for i, r := range rows {
		devices[i], epochs[i], seqs[i], streams[i] = r.device, r.epoch, r.seq, pgText(r.stream)
		schemas[i], reasons[i], raws[i] = pgText(r.schema), r.reason, r.raw
	}
	if _, err := t.conn.Exec(ctx, pgInsertParked, now, devices, epochs, seqs, streams, schemas, reasons, raws); err != nil {
		return fmt.Errorf("insert edgesync_parked: %w", err)
	}
	return nil
}

func (t *pgTx) updateDevice(ctx context.Context, device string, epoch, appliedThrough, lost, dups int64, now time.Time) error {
	if _, err := t.conn.Exec(ctx, pgUpdateDevice, device, epoch, appliedThrough, lost, dups, now); err != nil {
		return fmt.Errorf("update edgesync_devices: %w", err)
	}
	return nil
}

func (t *pgTx) parkedAfter(ctx context.Context, device string, epoch, seq int64, limit int) ([]parkedRow, error) {
	rows, err := t.conn.Query(ctx, pgParkedAfter, device, epoch, seq, limit)
	if err != nil {
		return nil, fmt.Errorf("read edgesync_parked: %w", err)
	}
	defer rows.Close()
	return scanParked(rows)
}

func (t *pgTx) deleteParked(ctx context.Context, rows []parkedRow) error {
	n := len(rows)
	var (
		devices = make([]string, n)
		epochs  = make([]int64, n)
		seqs    = make([]int64, n)
	)
	for i, r := range rows {
		devices[i], epochs[i], seqs[i] = r.device, r.epoch, r.seq
	}
	if _, err := t.conn.Exec(ctx, pgDeleteParked, devices, epochs, seqs); err != nil {
		return fmt.Errorf("delete edgesync_parked: %w", err)
	}
	return nil
}
