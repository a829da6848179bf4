package apply

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgesync/edgesync/transport/wire"
)

// The store suite: every test runs against SQLite and PostgreSQL.

func TestSQLite(t *testing.T) { storeSuite(t, openSQLiteT) }

func TestPostgres(t *testing.T) { storeSuite(t, openPostgresT) }

func storeSuite(t *testing.T, open opener) {
	tests := []struct {
		name string
		run  func(t *testing.T, open opener)
	}{
		{"InOrder", testInOrder},
		{"SameBatchThrice", testSameBatchThrice},
		{"ProducerIDLog", testProducerIDLog},
		{"ProducerIDState", testProducerIDState},
		{"Reordered", testReordered},
		{"Gap", testGap},
		{"Drops", testDrops},
		{"DropsOnly", testDropsOnly},
		{"RestoredBackup", testRestoredBackup},
		{"EpochChange", testEpochChange},
		{"Tombstones", testTombstones},
		{"Park", testPark},
		{"ManyParkedRanges", testManyParkedRanges},
		{"Pause", testPause},
		{"ReplayParked", testReplayParked},
		{"ReplayParkedState", testReplayParkedState},
		{"DataJSON", testDataJSON},
		{"UndecodableData", testUndecodableData},
		{"InvalidBatch", testInvalidBatch},
		{"Reopen", testReopen},
		{"Devices", testDevices},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, open)
		})
	}
}

func testInOrder(t *testing.T, open opener) {
	s := open(t, StoreConfig{})
	for i := uint64(0); i < 3; i++ {
		res := mustApply(t, s, batch(7, recs(t, 10*i+1, 10*i+10, "temps")...), nil)
		checkResult(t, res, want{through: 10*i + 10, applied: 10})
		if res.EpochGen != 1 || res.NewEpoch != (i == 0) {
			t.Errorf("batch %d: epoch_gen %d new %v, want 1 %v", i, res.EpochGen, res.NewEpoch, i == 0)
		}
		if got, want := res.NewestCapturedAt, baseTime.Add(time.Duration(10*i+10)*time.Second); !got.Equal(want) {
			t.Errorf("batch %d: newest captured_at %v, want %v", i, got, want)
		}
	}
	if got, want := logSeqs(t, s, "gw-1", 7), seqRange(1, 30); !slices.Equal(got, want) {
		t.Errorf("log seqs %v, want %v", got, want)
	}
	rows := device(t, s, "gw-1")
	if len(rows) != 1 || rows[0].AppliedThrough != 30 || rows[0].Epoch != 7 || rows[0].EpochGen != 1 ||
		rows[0].Lost != 0 || rows[0].Duplicates != 0 {
		t.Fatalf("device rows %+v", rows)
	}
	if rows[0].FirstSeen.IsZero() || rows[0].LastSeen.Before(rows[0].FirstSeen) || rows[0].LastSeen.Location() != time.UTC {
		t.Errorf("first_seen %v last_seen %v", rows[0].FirstSeen, rows[0].LastSeen)
	}
	// The log row holds what the record said.
	var (
		stream, key, op string
		id, schema      sql.NullString
		data            string
	)
	query(t, s, "SELECT stream, key, id, op, schema, data FROM edgesync_log WHERE device_id = ? AND epoch = ? AND seq = ?",
		[]any{"gw-1", int64(7), int64(5)}, func(scan func(...any) error) error {
			return scan(&stream, &key, &id, &op, &schema, &data)
		})
	if stream != "temps" || key != "k5" || id.Valid || op != "upsert" || schema.Valid || !jsonEqual(t, data, `{"n":5}`) {
		t.Errorf("row 5: %q %q %v %q %v %q", stream, key, id, op, schema, data)
	}
}

func testSameBatchThrice(t *testing.T, open opener) {
	s := open(t, StoreConfig{})
	b := batch(7, recs(t, 1, 20, "temps")...)
	checkResult(t, mustApply(t, s, b, nil), want{through: 20, applied: 20})
	checkResult(t, mustApply(t, s, b, nil), want{through: 20, duplicates: 20})
	checkResult(t, mustApply(t, s, b, nil), want{through: 20, duplicates: 20})
	if n := count(t, s, "edgesync_log"); n != 20 {
		t.Errorf("log rows %d, want 20", n)
	}
	if rows := device(t, s, "gw-1"); rows[0].Duplicates != 40 || rows[0].AppliedThrough != 20 {
		t.Errorf("device %+v, want 40 duplicates", rows[0])
	}
}

// withIDs sets the producer ids of rs, "" for none.
func withIDs(rs []wire.Record, ids ...string) []wire.Record {
	for i := range rs {
		rs[i].ID = ids[i]
	}
	return rs
}

func testProducerIDLog(t *testing.T, open opener) {
	s := open(t, StoreConfig{})
	b1 := batch(7, withIDs(recs(t, 1, 4, "temps"), "a", "b", "", "c")...)
	checkResult(t, mustApply(t, s, b1, nil), want{through: 4, applied: 4})
	// c and a again, d twice in the same batch, and a record without id.
	b2 := batch(7, withIDs(recs(t, 5, 10, "temps"), "c", "d", "a", "d", "", "e")...)
	checkResult(t, mustApply(t, s, b2, nil), want{through: 10, applied: 3, duplicates: 3})
	if got, want := logSeqs(t, s, "gw-1", 7), []int64{1, 2, 3, 4, 6, 9, 10}; !slices.Equal(got, want) {
		t.Errorf("log seqs %v, want %v", got, want)
	}
	// The same id in another stream is another record.
	b3 := batch(7, withIDs(recs(t, 11, 11, "other"), "a")...)
	checkResult(t, mustApply(t, s, b3, nil), want{through: 11, applied: 1})
	// And for another device too.
	b4 := batch(7, withIDs(recs(t, 1, 1, "temps"), "a")...)
	b4.Device = "gw-2"
	checkResult(t, mustApply(t, s, b4, nil), want{through: 1, applied: 1})
	if rows := device(t, s, "gw-1"); rows[0].Duplicates != 3 {
		t.Errorf("duplicates %d, want 3", rows[0].Duplicates)
	}
}

var statePolicy = &Policy{Streams: map[string]StreamPolicy{"inv": {Mode: ModeState}}}

func testProducerIDState(t *testing.T, open opener) {
	s := open(t, StoreConfig{})
	r := recs(t, 1, 3, "inv")
	r[0].Key, r[1].Key, r[2].Key = "x", "y", "z"
	checkResult(t, mustApply(t, s, batch(7, withIDs(r, "a", "b", "")...), statePolicy), want{through: 3, applied: 3})
	// seq 4 repeats id a for key x: a duplicate, x keeps seq 1.
	r = recs(t, 4, 6, "inv")
	r[0].Key, r[1].Key, r[2].Key = "x", "y", "y"
	checkResult(t, mustApply(t, s, batch(7, withIDs(r, "a", "c", "c")...), statePolicy),
		want{through: 6, applied: 1, duplicates: 2})
	if row, _ := state(t, s, "gw-1", "inv", "x"); row.seq != 1 {
		t.Errorf("x at seq %d, want 1 (seq 4 repeats id a)", row.seq)
	}
	if row, _ := state(t, s, "gw-1", "inv", "y"); row.seq != 5 {
		t.Errorf("y at seq %d, want 5 (seq 6 repeats id c)", row.seq)
	}
	if n := count(t, s, "edgesync_log"); n != 0 {
		t.Errorf("%d log rows for a state stream", n)
	}
}

func testReordered(t *testing.T, open opener) {
	s := open(t, StoreConfig{GapWait: 0})
	b1 := batch(7, recs(t, 1, 10, "temps")...)
	b2 := batch(7, recs(t, 11, 20, "temps")...)
	b3 := batch(7, recs(t, 21, 30, "temps")...)
	checkResult(t, mustApply(t, s, b2, nil), want{through: 0, status: wire.StatusGap})
	checkResult(t, mustApply(t, s, b1, nil), want{through: 10, applied: 10})
	checkResult(t, mustApply(t, s, b3, nil), want{through: 10, status: wire.StatusGap})
	checkResult(t, mustApply(t, s, b2, nil), want{through: 20, applied: 10})
	checkResult(t, mustApply(t, s, b1, nil), want{through: 20, duplicates: 10})
	checkResult(t, mustApply(t, s, b3, nil), want{through: 30, applied: 10})
	if got, want := logSeqs(t, s, "gw-1", 7), seqRange(1, 30); !slices.Equal(got, want) {
		t.Errorf("log seqs %v, want %v", got, want)
	}
	// A batch overlapping the watermark applies only what is new.
	b4 := batch(7, recs(t, 25, 35, "temps")...)
	checkResult(t, mustApply(t, s, b4, nil), want{through: 35, applied: 5, duplicates: 6})
	// Records out of order inside a batch are applied in seq order.
	r := recs(t, 36, 40, "temps")
	r[0], r[4] = r[4], r[0]
	checkResult(t, mustApply(t, s, batch(7, r...), nil), want{through: 40, applied: 5})
}

func testGap(t *testing.T, open opener) {
	s := open(t, StoreConfig{GapWait: 0})
	mustApply(t, s, batch(7, recs(t, 1, 10, "temps")...), nil)
	checkResult(t, mustApply(t, s, batch(7, recs(t, 15, 20, "temps")...), nil), want{through: 10, status: wire.StatusGap})
	// A drop that does not reach the watermark leaves a gap too, and what
	// follows it is not applied.
	b := batch(7, recs(t, 16, 20, "temps")...)
	b.Drops = []wire.Range{{First: 12, Last: 15}}
	checkResult(t, mustApply(t, s, b, nil), want{through: 10, status: wire.StatusGap})
	// A hole inside a batch: applied up to it.
	r := append(recs(t, 11, 12, "temps"), recs(t, 14, 15, "temps")...)
	checkResult(t, mustApply(t, s, batch(7, r...), nil), want{through: 12, status: wire.StatusGap, applied: 2})
	if got, want := logSeqs(t, s, "gw-1", 7), seqRange(1, 12); !slices.Equal(got, want) {
		t.Errorf("log seqs %v, want %v", got, want)
	}
	if rows := device(t, s, "gw-1"); rows[0].AppliedThrough != 12 || rows[0].Lost != 0 {
		t.Errorf("device %+v", rows[0])
	}
}

func testDrops(t *testing.T, open opener) {
	s := open(t, StoreConfig{})
	mustApply(t, s, batch(7, recs(t, 1, 10, "temps")...), nil)
	b := batch(7, recs(t, 16, 20, "temps")...)
	b.Drops = []wire.Range{{First: 11, Last: 15}}
	checkResult(t, mustApply(t, s, b, nil), want{through: 20, applied: 5, lost: 5})
	// A drop overlapping the watermark counts only what is new; a drop
	// already covered counts nothing.
	b = batch(7, recs(t, 26, 30, "temps")...)
	b.Drops = []wire.Range{{First: 11, Last: 15}, {First: 18, Last: 25}}
	checkResult(t, mustApply(t, s, b, nil), want{through: 30, applied: 5, lost: 5})
	// Drops between records of one batch.
	r := append(recs(t, 31, 32, "temps"), recs(t, 36, 37, "temps")...)
	b = batch(7, r...)
	b.Drops = []wire.Range{{First: 33, Last: 35}}
	checkResult(t, mustApply(t, s, b, nil), want{through: 37, applied: 4, lost: 3})
	// The same batch again: nothing lost twice.
	checkResult(t, mustApply(t, s, b, nil), want{through: 37, duplicates: 4})
	if rows := device(t, s, "gw-1"); rows[0].Lost != 13 || rows[0].AppliedThrough != 37 {
		t.Errorf("device %+v, want lost 13", rows[0])
	}
	if n := count(t, s, "edgesync_log"); n != 24 {
		t.Errorf("log rows %d, want 24", n)
	}
}

func testDropsOnly(t *testing.T, open opener) {
	s := open(t, StoreConfig{})
	b := batch(7)
	b.Drops = []wire.Range{{First: 1, Last: 5}, {First: 6, Last: 9}}
	checkResult(t, mustApply(t, s, b, nil), want{through: 9, lost: 9})
	checkResult(t, mustApply(t, s, batch(7, recs(t, 10, 12, "temps")...), nil), want{through: 12, applied: 3})
	if rows := device(t, s, "gw-1"); rows[0].Lost != 9 {
		t.Errorf("lost %d, want 9", rows[0].Lost)
	}
}

func testRestoredBackup(t *testing.T, open opener) {
	s := open(t, StoreConfig{})
	mustApply(t, s, batch(7, recs(t, 1, 10, "temps")...), nil)
	// The agent had 25 acknowledged (by the database before its restore)
	// and trimmed them: 11..25 are lost at the sink, which moves on.
	b := batch(7, recs(t, 26, 30, "temps")...)
	b.Acked = 25
	checkResult(t, mustApply(t, s, b, nil), want{through: 30, applied: 5, lost: 15})
	// Acked at or below the watermark changes nothing.
	b = batch(7, recs(t, 31, 32, "temps")...)
	b.Acked = 20
	checkResult(t, mustApply(t, s, b, nil), want{through: 32, applied: 2})
	if rows := device(t, s, "gw-1"); rows[0].Lost != 15 || rows[0].AppliedThrough != 32 {
		t.Errorf("device %+v", rows[0])
	}
	// A sink database restored before the device was ever seen.
	b = batch(9, recs(t, 101, 102, "temps")...)
	b.Device = "gw-2"
	b.Acked = 100
	checkResult(t, mustApply(t, s, b, nil), want{through: 102, applied: 2, lost: 100})
}

func testEpochChange(t *testing.T, open opener) {
	s := open(t, StoreConfig{})
	const oldEpoch, newEpoch = 1 << 62, 5
	// The old epoch wrote key x at a high seq.
	r := recs(t, 1, 500, "inv")
	for i := range r {
		r[i].Key = "x"
	}
	r = append(r, rec(t, 501, "inv", "only-old"), rec(t, 502, "temps", "t"))
	res := mustApply(t, s, batch(oldEpoch, r...), statePolicy)
	checkResult(t, res, want{through: 502, applied: 502})
	if res.EpochGen != 1 {
		t.Fatalf("old epoch_gen %d, want 1", res.EpochGen)
	}
	// The device was replaced: a new epoch, seq from 1.
	res = mustApply(t, s, batch(newEpoch, rec(t, 1, "inv", "x"), rec(t, 2, "temps", "t")), statePolicy)
	checkResult(t, res, want{through: 2, applied: 2})
	if res.EpochGen != 2 || !res.NewEpoch {
		t.Fatalf("new epoch: epoch_gen %d new %v, want 2 true", res.EpochGen, res.NewEpoch)
	}
	if row, _ := state(t, s, "gw-1", "inv", "x"); row.epochGen != 2 || row.seq != 1 || row.epoch != newEpoch {
		t.Errorf("x: %+v, want the new epoch's seq 1", row)
	}
	// The old epoch's outbox drains late: its newer seq loses to the new
	// epoch, its log rows are kept, its own watermark moves.
	res = mustApply(t, s, batch(oldEpoch, rec(t, 503, "inv", "x"), rec(t, 504, "temps", "t")), statePolicy)
	checkResult(t, res, want{through: 504, applied: 2})
	if row, _ := state(t, s, "gw-1", "inv", "x"); row.epochGen != 2 || row.seq != 1 {
		t.Errorf("x: %+v, want the new epoch's row to stay", row)
	}
	if row, ok := state(t, s, "gw-1", "inv", "only-old"); !ok || row.epochGen != 1 {
		t.Errorf("only-old: %+v %v, want kept", row, ok)
	}
	if got := logSeqs(t, s, "gw-1", oldEpoch); !slices.Equal(got, []int64{502, 504}) {
		t.Errorf("old epoch log %v", got)
	}
	if got := logSeqs(t, s, "gw-1", newEpoch); !slices.Equal(got, []int64{2}) {
		t.Errorf("new epoch log %v", got)
	}
	rows := device(t, s, "gw-1")
	if len(rows) != 2 || rows[0].Epoch != oldEpoch || rows[0].EpochGen != 1 || rows[0].AppliedThrough != 504 ||
		rows[1].Epoch != newEpoch || rows[1].EpochGen != 2 || rows[1].AppliedThrough != 2 {
		t.Errorf("device rows %+v", rows)
	}
	// Another device numbers its epochs on its own.
	b := batch(oldEpoch, rec(t, 1, "temps", "t"))
	b.Device = "gw-2"
	if res := mustApply(t, s, b, nil); res.EpochGen != 1 {
		t.Errorf("gw-2 epoch_gen %d, want 1", res.EpochGen)
	}
}

func testTombstones(t *testing.T, open opener) {
	s := open(t, StoreConfig{})
	del := func(r wire.Record) wire.Record {
		r.Op = wire.OpDelete
		r.Data = nil
		return r
	}
	// In one batch: upsert then delete leaves a tombstone.
	mustApply(t, s, batch(7, rec(t, 1, "inv", "a"), del(rec(t, 2, "inv", "a")), rec(t, 3, "inv", "b")), statePolicy)
	row, ok := state(t, s, "gw-1", "inv", "a")
	if !ok || !row.deleted || row.seq != 2 || row.data.Valid {
		t.Errorf("a: %+v %v, want a tombstone at seq 2 without data", row, ok)
	}
	if n := count(t, s, "edgesync_state WHERE deleted = false"); n != 1 {
		t.Errorf("live rows %d, want 1", n)
	}
	// A newer upsert revives it.
	mustApply(t, s, batch(7, rec(t, 4, "inv", "a")), statePolicy)
	if row, _ := state(t, s, "gw-1", "inv", "a"); row.deleted || row.seq != 4 {
		t.Errorf("a: %+v, want live at seq 4", row)
	}
	// A delete from a newer epoch; then an older epoch's upsert cannot bring
	// the row back, whatever its seq.
	mustApply(t, s, batch(8, del(rec(t, 1, "inv", "b"))), statePolicy)
	mustApply(t, s, batch(7, rec(t, 5, "inv", "b")), statePolicy)
	if row, _ := state(t, s, "gw-1", "inv", "b"); !row.deleted || row.epochGen != 2 || row.seq != 1 {
		t.Errorf("b: %+v, want the newer epoch's tombstone", row)
	}
	// Deleting a key never seen leaves a tombstone too.
	mustApply(t, s, batch(8, del(rec(t, 2, "inv", "c"))), statePolicy)
	if row, ok := state(t, s, "gw-1", "inv", "c"); !ok || !row.deleted {
		t.Errorf("c: %+v %v, want a tombstone", row, ok)
	}
}

// parkPolicy accepts reading@1 on temps and parks anything else there.
func parkPolicy(onUnknown string, schemas ...string) *Policy {
	return &Policy{
		Streams:         map[string]StreamPolicy{"temps": {Mode: ModeLog, Schemas: schemas}, "inv": {Mode: ModeState, Schemas: schemas}},
		OnUnknownSchema: onUnknown,
	}
}

func withSchema(r wire.Record, name string, version uint32) wire.Record {
	r.Schema, r.SchemaVersion = name, version
	return r
}

// driftBatch: seq 1 reading@1, 2-3 reading@2, 4 reading@1, 5 without schema.
func driftBatch(t testing.TB, stream string) *wire.Batch {
	return batch(7,
		withSchema(rec(t, 1, stream, "a"), "reading", 1),
		withSchema(rec(t, 2, stream, "b"), "reading", 2),
		withSchema(rec(t, 3, stream, "c"), "reading", 2),
		withSchema(rec(t, 4, stream, "d"), "reading", 1),
		rec(t, 5, stream, "e"),
	)
}

func testPark(t *testing.T, open opener) {
	s := open(t, StoreConfig{})
	p := parkPolicy(OnUnknownPark, "reading@1")
	res := mustApply(t, s, driftBatch(t, "temps"), p)
	checkResult(t, res, want{through: 5, applied: 2, parked: 3})
	if len(res.Parked) != 2 || res.Parked[0].First != 2 || res.Parked[0].Last != 3 ||
		res.Parked[1].First != 5 || res.Parked[1].Last != 5 {
		t.Fatalf("parked ranges %+v, want [2,3] and [5,5]", res.Parked)
	}
	if r := res.Parked[0].Reason; !strings.Contains(r, "reading@2") {
		t.Errorf("reason %q does not name the schema", r)
	}
	ack := res.Ack("gw-1", "sink-1", 42)
	if err := ack.Validate(); err != nil {
		t.Errorf("ack does not validate: %v", err)
	}
	if got, want := logSeqs(t, s, "gw-1", 7), []int64{1, 4}; !slices.Equal(got, want) {
		t.Errorf("log seqs %v, want %v", got, want)
	}
	var (
		seqs    []int64
		schemas []sql.NullString
		reasons []string
	)
	query(t, s, "SELECT seq, schema, reason FROM edgesync_parked WHERE device_id = ? AND epoch = ? ORDER BY seq",
		[]any{"gw-1", int64(7)}, func(scan func(...any) error) error {
			var (
				seq    int64
				schema sql.NullString
				reason string
			)
			err := scan(&seq, &schema, &reason)
			seqs, schemas, reasons = append(seqs, seq), append(schemas, schema), append(reasons, reason)
			return err
		})
	if !slices.Equal(seqs, []int64{2, 3, 5}) || schemas[0].String != "reading@2" || schemas[2].Valid || reasons[1] == "" {
		t.Errorf("parked rows %v %v %v", seqs, schemas, reasons)
	}
	// Resent: nothing parked twice.
	checkResult(t, mustApply(t, s, driftBatch(t, "temps"), p), want{through: 5, duplicates: 5})
	if n := count(t, s, "edgesync_parked"); n != 3 {
		t.Errorf("parked rows %d, want 3", n)
	}
	// A stream without a schema list takes anything.
	b := driftBatch(t, "free")
	b.Device = "gw-2"
	checkResult(t, mustApply(t, s, b, p), want{through: 5, applied: 5})
}

// testManyParkedRanges: a batch that parks every other record still gets an
// ack that encodes.
func testManyParkedRanges(t *testing.T, open opener) {
	s := open(t, StoreConfig{})
	schemas := make([]string, 40)
	for i := range schemas {
		schemas[i] = "a-rather-long-schema-name-to-make-reasons-long@" + strconv.Itoa(i+1)
	}
	p := &Policy{Streams: map[string]StreamPolicy{"temps": {Schemas: schemas}}}
	var r []wire.Record
	for i := uint64(1); i <= 3000; i++ {
		x := rec(t, i, "temps", "k")
		x.Schema, x.SchemaVersion = "a-rather-long-schema-name-to-make-reasons-long", 1
		if i%2 == 0 {
			x.SchemaVersion = 99
		}
		r = append(r, x)
	}
	res := mustApply(t, s, batch(7, r...), p)
	checkResult(t, res, want{through: 3000, applied: 1500, parked: 1500})
	if len(res.Parked) == 0 || len(res.Parked) > wire.MaxParked {
		t.Fatalf("%d parked ranges", len(res.Parked))
	}
	ack := res.Ack("gw-1", "sink-1", 1)
	if _, err := wire.EncodeAck(nil, &ack); err != nil {
		t.Errorf("ack with %d parked ranges: %v", len(res.Parked), err)
	}
	if n := count(t, s, "edgesync_parked"); n != 1500 {
		t.Errorf("parked rows %d, want 1500", n)
	}
}

func testPause(t *testing.T, open opener) {
	s := open(t, StoreConfig{})
	p := parkPolicy(OnUnknownPause, "reading@1")
	checkResult(t, mustApply(t, s, driftBatch(t, "temps"), p), want{through: 1, status: wire.StatusPaused, applied: 1})
	// Resent while still paused: the same answer, nothing more applied.
	checkResult(t, mustApply(t, s, driftBatch(t, "temps"), p),
		want{through: 1, status: wire.StatusPaused, duplicates: 1})
	if n := count(t, s, "edgesync_parked"); n != 0 {
		t.Errorf("parked rows %d, want 0 when pausing", n)
	}
	// The policy learns reading@2: applied up to the record without schema.
	p = parkPolicy(OnUnknownPause, "reading@1", "reading@2")
	checkResult(t, mustApply(t, s, driftBatch(t, "temps"), p),
		want{through: 4, status: wire.StatusPaused, applied: 3, duplicates: 1})
	// Switched to park: the rest is parked and the device moves on.
	p.OnUnknownSchema = OnUnknownPark
	checkResult(t, mustApply(t, s, driftBatch(t, "temps"), p), want{through: 5, duplicates: 4, parked: 1})
	if got, want := logSeqs(t, s, "gw-1", 7), []int64{1, 2, 3, 4}; !slices.Equal(got, want) {
		t.Errorf("log seqs %v, want %v", got, want)
	}
}

func testReplayParked(t *testing.T, open opener) {
	s := open(t, StoreConfig{})
	ctx := context.Background()
	p := parkPolicy(OnUnknownPark, "reading@1")
	b := driftBatch(t, "temps")
	b.Records[2].ID = "dup-id" // seq 3, parked
	b.Records[3].ID = "dup-id" // seq 4, applied: seq 3 will be a duplicate by id
	mustApply(t, s, b, p)
	// Nothing known yet: nothing replayed.
	replayed, remaining, err := s.ReplayParked(ctx, p)
	if err != nil || replayed != 0 || remaining != 3 {
		t.Fatalf("replay: %d %d %v, want 0 3", replayed, remaining, err)
	}
	p = parkPolicy(OnUnknownPark, "reading@1", "reading@2")
	for i, w := range []struct{ replayed, remaining int }{{2, 1}, {0, 1}} {
		replayed, remaining, err := s.ReplayParked(ctx, p)
		if err != nil || replayed != w.replayed || remaining != w.remaining {
			t.Fatalf("replay %d: %d %d %v, want %d %d", i, replayed, remaining, err, w.replayed, w.remaining)
		}
		if got, want := logSeqs(t, s, "gw-1", 7), []int64{1, 2, 4}; !slices.Equal(got, want) {
			t.Errorf("replay %d: log seqs %v, want %v", i, got, want)
		}
	}
	// The replayed row holds the record's data and schema.
	var (
		data   string
		schema string
	)
	query(t, s, "SELECT data, schema FROM edgesync_log WHERE device_id = ? AND epoch = ? AND seq = ?",
		[]any{"gw-1", int64(7), int64(2)}, func(scan func(...any) error) error { return scan(&data, &schema) })
	if !jsonEqual(t, data, `{"n":2}`) || schema != "reading@2" {
		t.Errorf("replayed row: %s %s", data, schema)
	}
	// With an empty schema list, the record without schema goes too.
	replayed, remaining, err = s.ReplayParked(ctx, nil)
	if err != nil || replayed != 1 || remaining != 0 {
		t.Fatalf("replay all: %d %d %v, want 1 0", replayed, remaining, err)
	}
	if rows := device(t, s, "gw-1"); rows[0].AppliedThrough != 5 {
		t.Errorf("watermark moved: %+v", rows[0])
	}
}

func testReplayParkedState(t *testing.T, open opener) {
	s := open(t, StoreConfig{})
	ctx := context.Background()
	p := parkPolicy(OnUnknownPark, "reading@1")
	// seq 1: x reading@2 (parked); seq 2: x reading@1 (applied, newer).
	mustApply(t, s, batch(7,
		withSchema(rec(t, 1, "inv", "x"), "reading", 2),
		withSchema(rec(t, 2, "inv", "x"), "reading", 1),
		withSchema(rec(t, 3, "inv", "y"), "reading", 2),
	), p)
	// Many parked records across devices, more than one replay chunk.
	var many []wire.Record
	for i := uint64(1); i <= replayChunk+20; i++ {
		many = append(many, withSchema(rec(t, i, "temps", "m"), "reading", 2))
	}
	b := batch(3, many...)
	b.Device = "gw-0"
	checkResult(t, mustApply(t, s, b, p), want{through: replayChunk + 20, parked: replayChunk + 20})

	p = parkPolicy(OnUnknownPark, "reading@1", "reading@2")
	for i, w := range []struct{ replayed int }{{replayChunk + 22}, {0}} {
		replayed, remaining, err := s.ReplayParked(ctx, p)
		if err != nil || replayed != w.replayed || remaining != 0 {
			t.Fatalf("replay %d: %d %d %v, want %d 0", i, replayed, remaining, err, w.replayed)
		}
	}
	// The replayed older record did not overwrite the newer one.
	if row, _ := state(t, s, "gw-1", "inv", "x"); row.seq != 2 {
		t.Errorf("x at seq %d, want 2", row.seq)
	}
	if row, ok := state(t, s, "gw-1", "inv", "y"); !ok || row.seq != 3 || row.epochGen != 1 {
		t.Errorf("y: %+v %v, want replayed at seq 3", row, ok)
	}
	if n := len(logSeqs(t, s, "gw-0", 3)); n != replayChunk+20 {
		t.Errorf("gw-0 log rows %d, want %d", n, replayChunk+20)
	}
}

func testDataJSON(t *testing.T, open opener) {
	s := open(t, StoreConfig{})
	values := []any{
		map[string]any{"temp": 21.5, "unit": "C", "ok": true, "tags": []any{"a", "b"}, "nested": map[string]any{"x": nil}},
		[]any{1, -2, 3.25, "four", false},
		"just a string with \"quotes\" and \\ and ünïcødé \u2028",
		int64(-9007199254740991),
		map[string]any{"bytes": []byte{0, 1, 2, 250}},
		map[string]any{},
		[]any{},
	}
	var r []wire.Record
	for i, v := range values {
		x := rec(t, uint64(i+1), "temps", "k")
		x.Data = cborOf(t, v)
		r = append(r, x)
	}
	// And one in a state stream.
	st := rec(t, uint64(len(values)+1), "inv", "k")
	st.Data = cborOf(t, values[0])
	r = append(r, st)
	checkResult(t, mustApply(t, s, batch(7, r...), statePolicy), want{through: uint64(len(r)), applied: len(r)})
	for i, v := range values {
		wantJSON, err := json.Marshal(v) // []byte becomes base64, as the sink stores CBOR byte strings
		if err != nil {
			t.Fatal(err)
		}
		var got string
		query(t, s, "SELECT data FROM edgesync_log WHERE device_id = ? AND epoch = ? AND seq = ?",
			[]any{"gw-1", int64(7), int64(i + 1)}, func(scan func(...any) error) error { return scan(&got) })
		if !json.Valid([]byte(got)) || !jsonEqual(t, got, string(wantJSON)) {
			t.Errorf("value %d: stored %s, want %s", i, got, wantJSON)
		}
	}
	row, _ := state(t, s, "gw-1", "inv", "k")
	wantJSON, _ := json.Marshal(values[0])
	if !row.data.Valid || !jsonEqual(t, row.data.String, string(wantJSON)) {
		t.Errorf("state data %v, want %s", row.data, wantJSON)
	}
}

func testUndecodableData(t *testing.T, open opener) {
	s := open(t, StoreConfig{})
	bad := rec(t, 2, "temps", "k")
	bad.Data = []byte{0xc1, 0x00} // a tag: not representable as JSON
	res := mustApply(t, s, batch(7, rec(t, 1, "temps", "k"), bad, rec(t, 3, "temps", "k")), parkPolicy(OnUnknownPause))
	checkResult(t, res, want{through: 3, applied: 2, parked: 1})
	if len(res.Parked) != 1 || !strings.Contains(res.Parked[0].Reason, "undecodable") {
		t.Errorf("parked %+v", res.Parked)
	}
	// Replay leaves it parked.
	replayed, remaining, err := s.ReplayParked(context.Background(), nil)
	if err != nil || replayed != 0 || remaining != 1 {
		t.Errorf("replay: %d %d %v, want 0 1", replayed, remaining, err)
	}
}

func testInvalidBatch(t *testing.T, open opener) {
	s := open(t, StoreConfig{})
	ctx := context.Background()
	cases := []struct {
		name   string
		device string
		b      *wire.Batch
	}{
		{"other device", "gw-9", batch(7, recs(t, 1, 1, "temps")...)},
		{"epoch zero", "gw-1", batch(0, recs(t, 1, 1, "temps")...)},
		{"epoch too big", "gw-1", batch(1<<63, recs(t, 1, 1, "temps")...)},
		{"seq zero", "gw-1", batch(7, rec(t, 0, "temps", "k"))},
		{"bad drop", "gw-1", &wire.Batch{Device: "gw-1", Epoch: 7, Drops: []wire.Range{{First: 5, Last: 4}}}},
		{"empty device", "", batch(7, recs(t, 1, 1, "temps")...)},
		{"reserved device", "_fleet", func() *wire.Batch { b := batch(7, recs(t, 1, 1, "temps")...); b.Device = "_fleet"; return b }()},
	}
	for _, c := range cases {
		_, err := s.Apply(ctx, c.device, c.b, nil)
		var be *BatchError
		if !errors.As(err, &be) || !errors.Is(err, ErrInvalidBatch) {
			t.Errorf("%s: got %v, want a *BatchError", c.name, err)
		}
	}
	if rows, err := s.Devices(ctx); err != nil || len(rows) != 0 {
		t.Errorf("devices after refused batches: %v %v", rows, err)
	}
}

func testReopen(t *testing.T, open opener) {
	s := open(t, StoreConfig{})
	mustApply(t, s, batch(7, recs(t, 1, 5, "temps")...), nil)
	// Migrating again is a no-op; the version is recorded once.
	if n := count(t, s, "edgesync_schema_version"); n != 1 {
		t.Errorf("schema versions %d, want 1", n)
	}
	switch be := s.be.(type) {
	case *sqliteBackend:
		if err := be.migrate(context.Background()); err != nil {
			t.Fatalf("migrate again: %v", err)
		}
	case *pgBackend:
		if err := be.migrate(context.Background()); err != nil {
			t.Fatalf("migrate again: %v", err)
		}
	}
	if n := count(t, s, "edgesync_schema_version"); n != 1 {
		t.Errorf("schema versions %d after migrating again, want 1", n)
	}
	// A database from a newer edgesync is refused.
	var err error
	switch be := s.be.(type) {
	case *sqliteBackend:
		if _, err := be.db.Exec(`INSERT INTO edgesync_schema_version (version, applied_at) VALUES (99, 'x')`); err != nil {
			t.Fatal(err)
		}
		err = be.migrate(context.Background())
	case *pgBackend:
		c, aerr := be.pool.acquire(context.Background())
		if aerr != nil {
			t.Fatal(aerr)
		}
		_, xerr := c.Exec(context.Background(), `INSERT INTO edgesync_schema_version (version, applied_at) VALUES (99, now())`)
		be.pool.release(c)
		if xerr != nil {
			t.Fatal(xerr)
		}
		err = be.migrate(context.Background())
	}
	var me *MigrationError
	if !errors.Is(err, ErrSchemaTooNew) || !errors.As(err, &me) {
		t.Errorf("migrate a newer database: %v, want ErrSchemaTooNew", err)
	}
	// Close twice, then every call says closed.
	if err := s.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("close again: %v", err)
	}
	if _, err := s.Apply(context.Background(), "gw-1", batch(7, recs(t, 6, 6, "temps")...), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("apply after close: %v, want ErrClosed", err)
	}
	if _, _, err := s.ReplayParked(context.Background(), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("replay after close: %v, want ErrClosed", err)
	}
	if _, err := s.Device(context.Background(), "gw-1"); !errors.Is(err, ErrClosed) {
		t.Errorf("device after close: %v, want ErrClosed", err)
	}
}

func testDevices(t *testing.T, open opener) {
	s := open(t, StoreConfig{})
	for _, d := range []string{"gw-b", "gw-a"} {
		b := batch(7, recs(t, 1, 2, "temps")...)
		b.Device = d
		mustApply(t, s, b, nil)
	}
	b := batch(8, recs(t, 1, 1, "temps")...)
	b.Device = "gw-a"
	mustApply(t, s, b, nil)
	rows, err := s.Devices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, r.Device+"/"+strconv.FormatInt(r.EpochGen, 10))
	}
	if want := []string{"gw-a/1", "gw-a/2", "gw-b/1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("devices %v, want %v", got, want)
	}
	if rows := device(t, s, "nobody"); len(rows) != 0 {
		t.Errorf("unknown device: %+v", rows)
	}
	if n, err := s.ParkedCount(context.Background()); err != nil || n != 0 {
		t.Errorf("parked count %d %v", n, err)
	}
}
