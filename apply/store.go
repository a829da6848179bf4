// Package apply is the sink side of edgesync: it applies decoded batches to a
// SQLite or PostgreSQL store exactly once and answers what to acknowledge.
//
// # Guarantees of the store
//
//   - Atomicity: Store.Apply writes a batch's rows (edgesync_log,
//     edgesync_state, edgesync_parked) and the watermark row of its
//     (device_id, epoch) in edgesync_devices in one transaction. Either all of
//     it commits, and the Result says what to acknowledge, or none of it does
//     and Apply returns an error: nothing may be acknowledged then.
//   - Idempotency: a record is applied at most once per (device_id, epoch,
//     seq), because the watermark only grows and is written with the records;
//     and at most once per (device_id, stream, id) when the producer set an
//     id (a unique index on edgesync_log, the edgesync_state_ids table for
//     state-mode streams). Resending anything is always safe.
//   - Order: within a (device_id, epoch) records are applied in seq order
//     and never past a hole (status gap); batches may arrive in any order,
//     from any number of sinks (PostgreSQL), and are serialised per device
//     on the watermark row.
//   - Durability: SQLite runs in WAL mode with synchronous=FULL, so a
//     committed (and hence acknowledged) batch survives a crash of the
//     process or of the machine, power loss included; a crash loses only
//     batches not yet committed, which were not acknowledged and are resent.
//     PostgreSQL's durability is the server's (synchronous_commit on, the
//     default, keeps every acknowledged batch).
//   - Concurrency: every method of Store is safe to call from several
//     goroutines. SQLite applies one batch at a time (a process-wide lock in
//     front of SQLite's single writer); PostgreSQL applies batches of
//     different devices in parallel, and several sink processes may share
//     one database.
//
// # Tables
//
// The tables of the contract, the same in both stores: edgesync_log,
// edgesync_state, edgesync_devices and edgesync_parked (raw is the
// wire.Record as CBOR). Besides them:
//
//   - edgesync_state_ids(device_id, stream, id, epoch, seq, applied_at),
//     primary key (device_id, stream, id): the producer ids applied to
//     state-mode streams, whose rows are overwritten and so cannot hold the
//     ids themselves. (Log-mode streams are checked by the unique index of
//     edgesync_log on (device_id, stream, id) where id is set.) Like
//     edgesync_log, it grows with the data; prune both together.
//   - edgesync_schema_version(version, applied_at): one row per schema
//     migration applied. The migrations are in migrations/<kind>/.
//
// edgesync_devices is unique on (device_id, epoch_gen) too, which is what
// keeps epoch_gen unique when two sinks see new epochs of one device at once.
//
// # Times and types
//
// Times are UTC. PostgreSQL stores them as timestamptz (microsecond
// precision); SQLite as ISO-8601 text with nine fraction digits and a Z
// ("2026-11-26T10:00:00.123456789Z"), which sorts as it reads. Epochs,
// sequence numbers and counters are signed 64-bit integers. data is jsonb in
// PostgreSQL and JSON text in SQLite; NULL when a record carries no data.
package apply

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/edgesync/edgesync/internal/jsoncbor"
	"github.com/edgesync/edgesync/transport/wire"
)

// Errors of this package.
var (
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("apply: store closed")
	// ErrInvalidBatch is what every *BatchError unwraps to: the batch can
	// never be applied, retrying does not help, and nothing may be
	// acknowledged for it.
	ErrInvalidBatch = errors.New("apply: invalid batch")
	// ErrSchemaTooNew: the database was migrated by a newer edgesync than
	// this one; refuse to run rather than write rows it does not expect.
	ErrSchemaTooNew = errors.New("apply: database schema is newer than this edgesync")
)

// BatchError says why a batch was refused without touching the store: the
// payload names another device, or the epoch or a sequence number is out of
// range. It is permanent: count it, log it, do not acknowledge, do not retry.
type BatchError struct {
	Device string // the device the batch was applied for
	Reason string
}

func (e *BatchError) Error() string {
	return "apply: invalid batch from " + strconv.Quote(e.Device) + ": " + e.Reason
}

// Unwrap returns ErrInvalidBatch.
func (e *BatchError) Unwrap() error { return ErrInvalidBatch }

// MigrationError says which schema migration failed.
type MigrationError struct {
	Version int
	Err     error
}

func (e *MigrationError) Error() string {
	return fmt.Sprintf("apply: schema migration %d: %v", e.Version, e.Err)
}

// Unwrap returns the cause.
func (e *MigrationError) Unwrap() error { return e.Err }

// Result is what Store.Apply did with one batch, and what to acknowledge.
type Result struct {
	// Epoch is the batch's epoch; EpochGen its number among the device's
	// epochs in order of first sight at the sink (1 for the first).
	Epoch    uint64
	EpochGen int64
	// NewEpoch is true when this batch was the first the sink saw of the
	// epoch.
	NewEpoch bool
	// AppliedThrough is the watermark after the batch: every seq up to it is
	// applied, parked, a duplicate or lost. It goes in the ack.
	AppliedThrough uint64
	// Status is wire.StatusOK, wire.StatusGap (the sink misses what follows
	// AppliedThrough) or wire.StatusPaused (the record at AppliedThrough+1
	// has a schema the policy does not accept, and on_unknown_schema is
	// pause).
	Status uint8
	// Parked are the ranges of this batch's records parked in
	// edgesync_parked, with the reason; they go in the ack. At most
	// wire.MaxParked ranges that fit in an ack: when a batch parks more,
	// the last ones are left out here (they are parked and counted all the
	// same).
	Parked []wire.Parked
	// Applied counts records written to edgesync_log or edgesync_state
	// (a state record superseded by a later one of the same batch counts).
	Applied int
	// Duplicates counts records skipped because their seq was already
	// covered or their producer id already applied.
	Duplicates int
	// Lost counts sequence numbers given up: dropped on the device, or
	// trimmed by the device although the sink never applied them (a sink
	// database restored from a backup).
	Lost uint64
	// ParkedRecords counts records parked by this batch.
	ParkedRecords int
	// NewestCapturedAt is the newest captured_at among the records applied
	// (zero when none was).
	NewestCapturedAt time.Time
	// Attempts is how many transactions it took: more than 1 after waiting
	// for a gap to close (GapWait) or retrying a serialization failure.
	Attempts int
}

// Ack builds the acknowledgement for r.
func (r *Result) Ack(device, sinkID string, inReplyTo uint64) wire.Ack {
	return wire.Ack{
		V:              wire.Version,
		Device:         device,
		Epoch:          r.Epoch,
		AppliedThrough: r.AppliedThrough,
		Status:         r.Status,
		Parked:         r.Parked,
		SinkID:         sinkID,
		InReplyTo:      inReplyTo,
	}
}

// DeviceRow is one row of edgesync_devices: a device's watermark and counters
// for one epoch.
type DeviceRow struct {
	Device         string
	Epoch          uint64
	EpochGen       int64
	AppliedThrough uint64
	Lost           uint64
	Duplicates     uint64
	FirstSeen      time.Time
	LastSeen       time.Time
}

// Store applies batches to a SQLite or PostgreSQL database. Open it with
// OpenStore or StoreConfig.Open; it is safe for concurrent use.
type Store struct {
	be      backend
	kind    Kind
	gapWait time.Duration // PostgreSQL only
	closed  atomic.Bool
	// onGapWait, when set (tests), is called each time Apply finds a gap in
	// front of its batch and waits for it.
	onGapWait func()
}

// Kind says which database s writes to.
func (s *Store) Kind() Kind { return s.kind }

// Close closes the store; calls after the first return nil. Calls in flight
// finish first (PostgreSQL waits for connections in use to be released).
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	return s.be.close()
}

// Device returns the rows of edgesync_devices for device, oldest epoch_gen
// first; none when the sink has never seen it.
func (s *Store) Device(ctx context.Context, device string) ([]DeviceRow, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	return s.be.devices(ctx, device)
}

// Devices returns every row of edgesync_devices, by device then epoch_gen:
// what a sink's metrics start from.
func (s *Store) Devices(ctx context.Context) ([]DeviceRow, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	return s.be.devices(ctx, "")
}

// ParkedCount returns the number of rows in edgesync_parked.
func (s *Store) ParkedCount(ctx context.Context) (int, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	return s.be.countParked(ctx)
}

// Retry pacing: after a gap (GapWait) or a serialization failure.
const (
	firstRetryDelay = 2 * time.Millisecond
	maxRetryDelay   = 20 * time.Millisecond
	// maxConflictRetries bounds retries of serialization failures,
	// deadlocks and epoch_gen races, which are brief by nature.
	maxConflictRetries = 50
)

// errGapRetry is returned by a transaction that found a gap and rolled back
// because the caller still waits for it to close.
var errGapRetry = errors.New("apply: gap, retry")

// Apply applies batch b of device in one transaction, following the rules of
// docs/DESIGN.md, under policy p (nil: DefaultPolicy). The device comes from
// the topic; a batch naming another device is refused with a *BatchError.
//
// A record is parked, whatever on_unknown_schema says, when no policy can
// make it storable: data that is not one CBOR item representable as JSON, an
// unknown op, or (PostgreSQL) text holding U+0000. Only an unknown schema
// pauses.
//
// On success the Result says what to acknowledge. On error nothing was
// committed and nothing may be acknowledged: a *BatchError (errors.Is
// ErrInvalidBatch) is permanent; any other error (database unreachable,
// context ended) is worth retrying later, resending is safe.
func (s *Store) Apply(ctx context.Context, device string, b *wire.Batch, p *Policy) (Result, error) {
	if s.closed.Load() {
		return Result{}, ErrClosed
	}
	if err := checkBatch(device, b); err != nil {
		return Result{}, err
	}
	pb := s.prepare(b, p)
	var (
		deadline = time.Now().Add(s.gapWait)
		delay    = firstRetryDelay
		res      Result
		err      error
		conflict int
	)
	for attempt := 1; ; attempt++ {
		waitGap := s.gapWait > 0 && time.Now().Before(deadline)
		res, err = s.applyOnce(ctx, device, pb, p, waitGap)
		res.Attempts = attempt
		switch {
		case err == nil:
			return res, nil
		case errors.Is(err, errGapRetry):
			if s.onGapWait != nil {
				s.onGapWait()
			}
		case s.be.retryable(err) && conflict < maxConflictRetries:
			conflict++
		default:
			return Result{}, err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return Result{}, ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, maxRetryDelay)
	}
}

// tryApply applies pb, a batch that passed checkBatch and was prepared under
// p, retrying only conflicts with other sinks; it never waits for a gap. With
// hold, a batch that meets a gap commits nothing and errGapRetry is returned
// at once, with the watermark it found in AppliedThrough, so that the sink
// runner can hold the batch and try again later without blocking the batches
// behind it. Without hold, a gap commits what precedes it and is answered
// StatusGap, as Apply does once GapWait is over.
func (s *Store) tryApply(ctx context.Context, device string, pb *preparedBatch, p *Policy, hold bool) (Result, error) {
	if s.closed.Load() {
		return Result{}, ErrClosed
	}
	delay := firstRetryDelay
	for attempt := 1; ; attempt++ {
		res, err := s.applyOnce(ctx, device, pb, p, hold)
		res.Attempts = attempt
		switch {
		case err == nil:
			return res, nil
		case errors.Is(err, errGapRetry):
			return res, err
		case s.be.retryable(err) && attempt <= maxConflictRetries:
		default:
			return Result{}, err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return Result{}, ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, maxRetryDelay)
	}
}

// checkBatch refuses what no store can hold or what the topic contradicts.
func checkBatch(device string, b *wire.Batch) error {
	bad := func(format string, args ...any) error {
		return &BatchError{Device: device, Reason: fmt.Sprintf(format, args...)}
	}
	if !wire.ValidDeviceID(device) {
		return bad("device id must be 1..64 characters of [A-Za-z0-9._-], not starting with _")
	}
	if b.Device != "" && b.Device != device {
		return bad("payload names device %q", b.Device)
	}
	if !wire.ValidEpoch(b.Epoch) {
		return bad("epoch %d out of range 1..2^63-1", b.Epoch)
	}
	if b.Acked > math.MaxInt64 {
		return bad("acked %d out of range", b.Acked)
	}
	for i, d := range b.Drops {
		if d.First == 0 || d.First > d.Last || d.Last > math.MaxInt64 {
			return bad("drops[%d]: bad range [%d,%d]", i, d.First, d.Last)
		}
	}
	for i := range b.Records {
		if s := b.Records[i].Seq; s == 0 || s > math.MaxInt64 {
			return bad("records[%d]: seq %d out of range", i, s)
		}
	}
	return nil
}

// rowKind is what the policy makes of a record, before the watermark is
// known.
type rowKind uint8

const (
	kindLog rowKind = iota
	kindState
	kindPark // park for reason, whatever on_unknown_schema says
	kindParkOrPause
)

// row is a record ready to be written.
type row struct {
	rec    *wire.Record
	kind   rowKind
	data   string // JSON text; "" stores NULL
	schema string // NAME@VERSION; "" stores NULL
	reason string // for kindPark, kindParkOrPause
	dup    bool   // set by the writers when the producer id was already applied
}

func (r *row) seq() int64 { return int64(r.rec.Seq) }

func (r *row) op() string {
	if r.rec.Op == wire.OpDelete {
		return "delete"
	}
	return "upsert"
}

// preparedBatch is a batch classified and transcoded once, before any
// transaction, so that the watermark row stays locked only briefly.
type preparedBatch struct {
	b     *wire.Batch
	rows  []row // in seq order
	drops []wire.Range
}

// prepare classifies every record under p and transcodes its data to JSON.
func (s *Store) prepare(b *wire.Batch, p *Policy) *preparedBatch {
	pb := &preparedBatch{b: b, rows: make([]row, len(b.Records))}
	for i := range b.Records {
		pb.rows[i].rec = &b.Records[i]
	}
	if !sort.SliceIsSorted(pb.rows, func(i, j int) bool { return pb.rows[i].rec.Seq < pb.rows[j].rec.Seq }) {
		sort.SliceStable(pb.rows, func(i, j int) bool { return pb.rows[i].rec.Seq < pb.rows[j].rec.Seq })
	}
	pb.drops = b.Drops
	if !sort.SliceIsSorted(pb.drops, func(i, j int) bool { return pb.drops[i].First < pb.drops[j].First }) {
		pb.drops = append([]wire.Range(nil), b.Drops...)
		sort.Slice(pb.drops, func(i, j int) bool { return pb.drops[i].First < pb.drops[j].First })
	}
	s.classify(pb.rows, p)
	return pb
}

// classify sets kind, schema, reason and data of rows under p.
func (s *Store) classify(rows []row, p *Policy) {
	type span struct{ off, end int }
	var (
		buf   = make([]byte, 0, 256*len(rows))
		spans = make([]span, len(rows))
		// the last policy decision, reused while records repeat it
		lastStream, lastName string
		lastVer              uint32
		lastOK               bool
		lastWhy              string
		haveLast             bool
	)
	for i := range rows {
		r := &rows[i]
		rec := r.rec
		if rec.Schema != "" {
			r.schema = wire.FormatSchema(rec.Schema, rec.SchemaVersion)
		}
		if why := s.unstorable(rec); why != "" {
			r.kind, r.reason = kindPark, cleanReason(why)
			continue
		}
		if !haveLast || rec.Stream != lastStream || rec.Schema != lastName || rec.SchemaVersion != lastVer {
			lastStream, lastName, lastVer = rec.Stream, rec.Schema, rec.SchemaVersion
			lastOK, lastWhy = p.accepts(rec.Stream, rec.Schema, rec.SchemaVersion)
			lastWhy = cleanReason(lastWhy)
			haveLast = true
		}
		if !lastOK {
			r.kind, r.reason = kindParkOrPause, lastWhy
			continue
		}
		if len(rec.Data) > 0 && !(len(rec.Data) == 1 && rec.Data[0] == cborNull) {
			start := len(buf)
			out, err := jsoncbor.ToJSON(buf, rec.Data)
			if err != nil {
				r.kind, r.reason = kindPark, cleanReason("undecodable data: "+err.Error())
				continue
			}
			if s.kind == KindPostgres && hasJSONNul(out[start:]) {
				r.kind, r.reason = kindPark, "data holds U+0000, which PostgreSQL jsonb cannot store"
				continue
			}
			buf = out
			spans[i] = span{start, len(buf)}
		}
		if p.mode(rec.Stream) == ModeState {
			r.kind = kindState
		} else {
			r.kind = kindLog
		}
	}
	all := string(buf) // one allocation for the whole batch
	for i := range rows {
		if sp := spans[i]; sp.end > sp.off {
			rows[i].data = all[sp.off:sp.end]
		}
	}
}

// cborNull is the CBOR item null: data stored as SQL NULL, like no data.
const cborNull = 0xf6

// unstorable says why rec cannot be stored whatever the policy ("" when it
// can): an op the sink does not know, or text PostgreSQL cannot hold.
func (s *Store) unstorable(rec *wire.Record) string {
	if rec.Op != wire.OpUpsert && rec.Op != wire.OpDelete {
		return "unknown op " + strconv.Itoa(int(rec.Op))
	}
	if s.kind == KindPostgres {
		for _, t := range [...]string{rec.Stream, rec.Key, rec.ID, rec.Schema} {
			if strings.IndexByte(t, 0) >= 0 {
				return "text holds U+0000, which PostgreSQL cannot store"
			}
		}
	}
	return ""
}

// hasJSONNul reports whether JSON text j holds the escape \u0000.
func hasJSONNul(j []byte) bool {
	for i := 0; i+1 < len(j); i++ {
		if j[i] != '\\' {
			continue
		}
		if j[i+1] == 'u' && i+5 < len(j) && string(j[i+2:i+6]) == "0000" {
			return true
		}
		i++ // skip the escaped character
	}
	return false
}

// devState is the locked watermark row of one (device_id, epoch).
type devState struct {
	epochGen int64
	applied  uint64 // applied_through
	created  bool   // inserted by this transaction
}

// walk is the outcome of the apply rules for one batch under a watermark.
type walk struct {
	w          uint64
	lost       uint64
	dups       int
	status     uint8
	logRows    []*row
	stateRows  []*row
	parkedRows []*row
}

// walkBatch applies rules 1 to 4 of docs/DESIGN.md to pb, from watermark w.
func walkBatch(pb *preparedBatch, w uint64, pause bool) walk {
	out := walk{w: w, status: wire.StatusOK}
	if pb.b.Acked > out.w { // rule 1: the sink lost what the agent trimmed
		out.lost += pb.b.Acked - out.w
		out.w = pb.b.Acked
	}
	ri, di := 0, 0
	for ri < len(pb.rows) || di < len(pb.drops) {
		// Rule 2: merge in seq order; a record before a drop starting at
		// the same seq, so that data present is applied.
		if ri < len(pb.rows) && (di == len(pb.drops) || pb.rows[ri].rec.Seq <= pb.drops[di].First) {
			r := &pb.rows[ri]
			s := r.rec.Seq
			switch {
			case s <= out.w:
				out.dups++
			case s > out.w+1:
				out.status = wire.StatusGap
				return out
			case r.kind == kindParkOrPause && pause:
				out.status = wire.StatusPaused // rule 4
				return out
			default:
				switch r.kind {
				case kindLog:
					out.logRows = append(out.logRows, r)
				case kindState:
					out.stateRows = append(out.stateRows, r)
				default:
					out.parkedRows = append(out.parkedRows, r)
				}
				out.w = s
			}
			ri++
			continue
		}
		d := pb.drops[di]
		di++
		switch {
		case d.Last <= out.w:
		case d.First > out.w+1:
			out.status = wire.StatusGap
			return out
		default:
			out.lost += d.Last - max(d.First, out.w+1) + 1
			out.w = d.Last
		}
	}
	return out
}

// applyOnce runs one transaction for pb. With waitGap, a batch that meets a
// gap is rolled back and errGapRetry returned.
func (s *Store) applyOnce(ctx context.Context, device string, pb *preparedBatch, p *Policy, waitGap bool) (Result, error) {
	now := time.Now().UTC()
	epoch := int64(pb.b.Epoch)
	tx, st, err := s.be.begin(ctx, device, epoch, now)
	if err != nil {
		return Result{}, err
	}
	defer tx.rollback()
	for i := range pb.rows { // marks of an attempt rolled back
		pb.rows[i].dup = false
	}
	wk := walkBatch(pb, st.applied, p.pause())
	if wk.status == wire.StatusGap && waitGap {
		// The watermark seen tells the caller whether the device moves on.
		return Result{Epoch: pb.b.Epoch, AppliedThrough: st.applied}, errGapRetry
	}
	res := Result{
		Epoch:          pb.b.Epoch,
		EpochGen:       st.epochGen,
		NewEpoch:       st.created,
		AppliedThrough: wk.w,
		Status:         wk.status,
		Duplicates:     wk.dups,
		Lost:           wk.lost,
		ParkedRecords:  len(wk.parkedRows),
	}
	g := &group{device: device, epoch: epoch, epochGen: st.epochGen, now: now}
	applied, dups, err := writeRows(ctx, tx, g, wk.logRows, wk.stateRows)
	if err != nil {
		return Result{}, err
	}
	res.Applied = applied
	res.Duplicates += dups
	var newest int64
	for _, rs := range [2][]*row{wk.logRows, wk.stateRows} {
		for _, r := range rs {
			if !r.dup && r.rec.CapturedAt > newest {
				newest = r.rec.CapturedAt
			}
		}
	}
	if newest != 0 {
		res.NewestCapturedAt = time.Unix(0, newest).UTC()
	}
	if len(wk.parkedRows) > 0 {
		parked := make([]parkedRow, len(wk.parkedRows))
		for i, r := range wk.parkedRows {
			raw := wire.EncodeRecord(nil, r.rec)
			parked[i] = parkedRow{device: device, epoch: epoch, seq: r.seq(), stream: r.rec.Stream,
				schema: r.schema, reason: r.reason, raw: raw}
		}
		if err := tx.insertParked(ctx, parked, now); err != nil {
			return Result{}, err
		}
		res.Parked = parkedRanges(wk.parkedRows)
	}
	if err := tx.updateDevice(ctx, device, epoch, int64(wk.w), int64(wk.lost), int64(res.Duplicates), now); err != nil {
		return Result{}, err
	}
	if err := tx.commit(ctx); err != nil {
		return Result{}, err
	}
	return res, nil
}

// parkedAckBudget is the room for parked ranges in an ack: MaxAckBytes less
// generous room for its other fields.
const parkedAckBudget = wire.MaxAckBytes - 1024

// parkedRanges merges consecutive parked records with the same reason. It
// returns at most wire.MaxParked ranges that fit an ack together; ranges past
// that are left out of the ack (their records stay parked and counted).
func parkedRanges(rows []*row) []wire.Parked {
	var (
		out  []wire.Parked
		size int
	)
	for _, r := range rows {
		if n := len(out); n > 0 && out[n-1].Last+1 == r.rec.Seq && out[n-1].Reason == r.reason {
			out[n-1].Last = r.rec.Seq
			continue
		}
		// An encoded range: array head, two uints, a text head, the text.
		size += 1 + 9 + 9 + 3 + len(r.reason)
		if len(out) == wire.MaxParked || size > parkedAckBudget {
			break
		}
		out = append(out, wire.Parked{First: r.rec.Seq, Last: r.rec.Seq, Reason: r.reason})
	}
	return out
}

// cleanReason makes a parking reason fit an ack and any text column: valid
// UTF-8 without NUL, at most wire.MaxReasonBytes bytes.
func cleanReason(s string) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
	if n := wire.MaxReasonBytes; len(s) > n {
		for n > 0 && s[n]&0xC0 == 0x80 {
			n--
		}
		s = s[:n]
	}
	return s
}

// group is the rows of one (device_id, epoch) written together.
type group struct {
	device   string
	epoch    int64
	epochGen int64
	now      time.Time // applied_at
}

// writeRows writes log and state rows of one group, in seq order, skipping
// producer ids already applied (within the rows too). It returns how many
// were applied and how many were duplicates by id.
func writeRows(ctx context.Context, tx txn, g *group, logRows, stateRows []*row) (applied, dups int, err error) {
	// Producer ids repeated within these rows: the first in seq order wins.
	if n := countIDs(logRows) + countIDs(stateRows); n > 1 {
		seen := make(map[[2]string]struct{}, n)
		mark := func(rows []*row) {
			for _, r := range rows {
				if r.rec.ID == "" {
					continue
				}
				k := [2]string{r.rec.Stream, r.rec.ID}
				if _, ok := seen[k]; ok {
					r.dup = true
					continue
				}
				seen[k] = struct{}{}
			}
		}
		// log and state streams are disjoint, so the two passes are
		// independent.
		mark(logRows)
		mark(stateRows)
		logRows = notDup(logRows, &dups)
		stateRows = notDup(stateRows, &dups)
	}
	if len(logRows) > 0 {
		if err := tx.insertLog(ctx, g, logRows); err != nil {
			return 0, 0, err
		}
		live := notDup(logRows, &dups)
		applied += len(live)
	}
	if len(stateRows) > 0 {
		var withID []*row
		for _, r := range stateRows {
			if r.rec.ID != "" {
				withID = append(withID, r)
			}
		}
		if len(withID) > 0 {
			if err := tx.insertStateIDs(ctx, g, withID); err != nil {
				return 0, 0, err
			}
			stateRows = notDup(stateRows, &dups)
		}
		applied += len(stateRows)
		if err := tx.upsertState(ctx, g, newestPerKey(stateRows)); err != nil {
			return 0, 0, err
		}
	}
	return applied, dups, nil
}

func countIDs(rows []*row) int {
	n := 0
	for _, r := range rows {
		if r.rec.ID != "" {
			n++
		}
	}
	return n
}

// notDup returns the rows not marked dup, adding the others to *dups. It
// reuses rows' array.
func notDup(rows []*row, dups *int) []*row {
	out := rows[:0:0]
	for i, r := range rows {
		if r.dup {
			if out == nil {
				out = append(make([]*row, 0, len(rows)), rows[:i]...)
			}
			*dups++
			continue
		}
		if out != nil {
			out = append(out, r)
		}
	}
	if out == nil {
		return rows
	}
	return out
}

// newestPerKey keeps, per (stream, key), only the row with the highest seq:
// one upsert per key and statement (PostgreSQL refuses to touch a row twice
// in one INSERT … ON CONFLICT DO UPDATE). rows are in seq order; the result
// is in (stream, key) order, so that concurrent transactions (two epochs of
// one device, a replay) lock state rows in the same order and do not
// deadlock.
func newestPerKey(rows []*row) []*row {
	last := make(map[[2]string]int, len(rows))
	for i, r := range rows {
		last[[2]string{r.rec.Stream, r.rec.Key}] = i
	}
	out := make([]*row, 0, len(last))
	for i, r := range rows {
		if last[[2]string{r.rec.Stream, r.rec.Key}] == i {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].rec, out[j].rec
		return a.Stream < b.Stream || a.Stream == b.Stream && a.Key < b.Key
	})
	return out
}

// parkedRow is one row of edgesync_parked.
type parkedRow struct {
	device   string
	epoch    int64
	seq      int64
	stream   string
	schema   string
	reason   string
	raw      []byte // the wire.Record as CBOR
	epochGen int64  // read with it by ReplayParked
}

// backend is one database.
type backend interface {
	// begin starts a write transaction holding the watermark row of
	// (device, epoch), created with the next epoch_gen when missing.
	begin(ctx context.Context, device string, epoch int64, now time.Time) (txn, devState, error)
	// beginReplay starts a write transaction for ReplayParked.
	beginReplay(ctx context.Context) (txn, error)
	devices(ctx context.Context, device string) ([]DeviceRow, error)
	countParked(ctx context.Context) (int, error)
	// retryable reports a transient conflict: serialization failure,
	// deadlock, a lost epoch_gen race.
	retryable(err error) bool
	close() error
}

// txn is one write transaction. The writers take rows in seq order.
type txn interface {
	// insertLog inserts rows into edgesync_log, marking dup those whose
	// (device_id, stream, id) is already there.
	insertLog(ctx context.Context, g *group, rows []*row) error
	// insertStateIDs records the producer ids of state-mode rows, marking
	// dup those already recorded.
	insertStateIDs(ctx context.Context, g *group, rows []*row) error
	// upsertState writes rows (at most one per (stream, key)) into
	// edgesync_state where they are newer by (epoch_gen, seq).
	upsertState(ctx context.Context, g *group, rows []*row) error
	insertParked(ctx context.Context, rows []parkedRow, now time.Time) error
	updateDevice(ctx context.Context, device string, epoch, appliedThrough, lost, dups int64, now time.Time) error
	// parkedAfter returns up to limit parked rows after the key (device,
	// epoch, seq), in key order, with their epoch_gen, locked for this
	// transaction (rows locked by another are skipped).
	parkedAfter(ctx context.Context, device string, epoch, seq int64, limit int) ([]parkedRow, error)
	deleteParked(ctx context.Context, rows []parkedRow) error
	commit(ctx context.Context) error
	// rollback ends the transaction unless committed; safe to call twice.
	rollback()
}
