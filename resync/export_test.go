package resync

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/edgesync/edgesync/outbox"
	"github.com/edgesync/edgesync/transport/wire"
)

// checkExactlyOnce checks that the sink applied every seq in [from, through]
// exactly once with the data the outbox holds, and nothing else.
func checkExactlyOnce(t *testing.T, s *testSink, ob *outbox.Outbox, from, through outbox.Seq) {
	t.Helper()
	want := map[uint64]string{}
	for next := from; next <= through; {
		_, recs, err := ob.Read(next, 1000, 1<<30, nil)
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			if r.Seq <= through {
				want[uint64(r.Seq)] = string(r.Data)
			}
		}
		next = recs[len(recs)-1].Seq + 1
	}
	if len(want) == 0 {
		t.Fatal("test bug: no records to check")
	}
	for seq, data := range want {
		if n := s.applied[seq]; n != 1 {
			t.Errorf("seq %d applied %d times, want 1", seq, n)
		} else if s.data[seq] != data {
			t.Errorf("seq %d applied with data %q, want %q", seq, s.data[seq], data)
		}
	}
	for seq := range s.applied {
		if _, ok := want[seq]; !ok {
			t.Errorf("seq %d applied, but it is not an unacknowledged record", seq)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, comp := range []string{"zstd", "none"} {
		t.Run(comp, func(t *testing.T) {
			ob := openOutbox(t, outbox.Options{})
			appendRecords(t, ob, 0, 3000, 40)
			if _, err := ob.Ack(ob.Epoch(), 1000); err != nil {
				t.Fatal(err)
			}
			file, sum := exportBytes(t, ob, 0, ExportOptions{MaxRecords: 250, Compression: comp})

			want := Summary{Device: testDevice, Epoch: ob.Epoch(), First: 1001, Last: 3000, Records: 2000, Batches: 8,
				From: 1001, Through: 3000, Watermark: 1000, Acked: 1000}
			got := sum
			got.Bytes, got.SHA256 = 0, [32]byte{}
			if !equalSummary(got, want) {
				t.Fatalf("summary = %+v, want %+v", got, want)
			}
			if sum.SHA256 != sha256.Sum256(file) {
				t.Fatalf("Summary.SHA256 = %x, want the file's %x", sum.SHA256, sha256.Sum256(file))
			}

			sink := newTestSink()
			sink.w[sink.key(testDevice, uint64(ob.Epoch()))] = 1000 // the sink applied 1..1000 over MQTT
			res, err := Import(bytes.NewReader(file), sink.apply)
			if err != nil {
				t.Fatalf("Import: %v", err)
			}
			if res.AppliedThrough != 3000 || res.Status != wire.StatusOK || res.Device != testDevice || res.Epoch != ob.Epoch() {
				t.Fatalf("result = %+v; want applied through 3000, ok, %s, epoch %d", res, testDevice, ob.Epoch())
			}
			if res.Batches != 8 || res.Records != 2000 || res.SHA256 != sum.SHA256 || res.Bytes != int64(len(file)) {
				t.Fatalf("result counts = %d batches, %d records, sha %x, %d bytes; want 8, 2000, %x, %d",
					res.Batches, res.Records, res.SHA256, res.Bytes, sum.SHA256, len(file))
			}
			if sink.lost != 0 || sink.dups != 0 {
				t.Fatalf("sink lost %d, duplicates %d; want 0, 0", sink.lost, sink.dups)
			}
			checkExactlyOnce(t, sink, ob, 1001, 3000)

			// A second import changes nothing: every record is a duplicate.
			res2, err := Import(bytes.NewReader(file), sink.apply)
			if err != nil {
				t.Fatalf("second Import: %v", err)
			}
			if res2.AppliedThrough != 3000 || sink.dups != 2000 {
				t.Fatalf("second import: applied through %d, duplicates %d; want 3000, 2000", res2.AppliedThrough, sink.dups)
			}
			checkExactlyOnce(t, sink, ob, 1001, 3000)
		})
	}
}

func equalSummary(a, b Summary) bool {
	return a.Device == b.Device && a.Epoch == b.Epoch && a.First == b.First && a.Last == b.Last &&
		a.Records == b.Records && a.Batches == b.Batches && a.Bytes == b.Bytes && a.From == b.From &&
		a.Through == b.Through && a.Watermark == b.Watermark && a.Acked == b.Acked && a.Dropped == b.Dropped &&
		a.SHA256 == b.SHA256
}

// TestRoundTripDrops: a small drop_oldest outbox that overflowed while the
// link was down. The bundle carries the dropped range; the sink counts it as
// lost, applies every record still held exactly once and ends at the head.
func TestRoundTripDrops(t *testing.T) {
	ob := openOutbox(t, outbox.Options{MaxBytes: 64 << 10, WhenFull: outbox.DropOldest})
	appendRecords(t, ob, 0, 40, 500)
	if _, err := ob.Ack(ob.Epoch(), 30); err != nil {
		t.Fatal(err)
	}
	appendRecords(t, ob, 40, 400, 500) // far more than 64 KiB: the oldest go
	st := ob.Stats()
	if len(st.Drops) == 0 || st.Dropped == 0 {
		t.Fatalf("test setup: no drops (stats %+v)", st)
	}
	file, sum := exportBytes(t, ob, 0, ExportOptions{MaxRecords: 30})
	if sum.Dropped != st.Dropped || sum.Acked != 30 || sum.Through != st.Head {
		t.Fatalf("summary dropped %d, acked %d, through %d; want %d, 30, %d", sum.Dropped, sum.Acked, sum.Through, st.Dropped, st.Head)
	}
	if sum.First != st.OldestSeq || sum.Last != st.Head {
		t.Fatalf("summary records %d..%d, want %d..%d", sum.First, sum.Last, st.OldestSeq, st.Head)
	}

	sink := newTestSink()
	sink.w[sink.key(testDevice, uint64(ob.Epoch()))] = 30
	res, err := Import(bytes.NewReader(file), sink.apply)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if res.AppliedThrough != st.Head || res.Status != wire.StatusOK {
		t.Fatalf("applied through %d, status %d; want the head %d, ok", res.AppliedThrough, res.Status, st.Head)
	}
	if sink.lost != st.Dropped {
		t.Fatalf("sink counted %d lost, want the %d dropped", sink.lost, st.Dropped)
	}
	checkExactlyOnce(t, sink, ob, 31, st.Head)

	// ack-import with the result trims the outbox to empty.
	if _, err := ob.Ack(res.Epoch, res.AppliedThrough); err != nil {
		t.Fatal(err)
	}
	if st := ob.Stats(); st.Depth != 0 || len(st.Drops) != 0 {
		t.Fatalf("after the ack: depth %d, drops %v; want 0, none", st.Depth, st.Drops)
	}
}

// TestExportNothing: with everything acknowledged a bundle still holds one
// batch (no records), whose receipt says where the sink is.
func TestExportNothing(t *testing.T) {
	ob := openOutbox(t, outbox.Options{})
	appendRecords(t, ob, 0, 10, 10)
	if _, err := ob.Ack(ob.Epoch(), 10); err != nil {
		t.Fatal(err)
	}
	file, sum := exportBytes(t, ob, 0, ExportOptions{})
	if sum.Batches != 1 || sum.Records != 0 || sum.From != 11 || sum.Through != 10 || sum.First != 0 {
		t.Fatalf("summary = %+v; want 1 batch, 0 records, from 11 through 10", sum)
	}
	sink := newTestSink()
	res, err := Import(bytes.NewReader(file), sink.apply)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	// A sink that never saw the device learns that 1..10 were acknowledged
	// elsewhere (its database was restored), as from an MQTT batch.
	if res.AppliedThrough != 10 || sink.lost != 10 {
		t.Fatalf("applied through %d, lost %d; want 10, 10", res.AppliedThrough, sink.lost)
	}
}

// TestExportRetainAcked exports records kept after acknowledgement
// (retain_acked): the batches carry from-1 as acked, so a sink whose
// database was restored to an earlier state applies them and counts nothing
// as lost.
func TestExportRetainAcked(t *testing.T) {
	ob := openOutbox(t, outbox.Options{RetainAcked: time.Hour})
	appendRecords(t, ob, 0, 100, 20)
	if _, err := ob.Ack(ob.Epoch(), 60); err != nil {
		t.Fatal(err)
	}
	file, sum := exportBytes(t, ob, 41, ExportOptions{MaxRecords: 16})
	if sum.From != 41 || sum.Acked != 40 || sum.Watermark != 60 || sum.First != 41 || sum.Last != 100 || sum.Records != 60 {
		t.Fatalf("summary = %+v; want from 41, acked 40, watermark 60, records 41..100", sum)
	}
	sink := newTestSink()
	sink.w[sink.key(testDevice, uint64(ob.Epoch()))] = 40 // restored from a backup taken at 40
	res, err := Import(bytes.NewReader(file), sink.apply)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if res.AppliedThrough != 100 || sink.lost != 0 {
		t.Fatalf("applied through %d, lost %d; want 100, 0", res.AppliedThrough, sink.lost)
	}
	checkExactlyOnce(t, sink, ob, 41, 100)
}

// fakeSource is an outbox of records lo..head (and nothing below lo), for
// the choice of the first seq.
type fakeSource struct {
	pos outbox.Position
}

func (f *fakeSource) Position() outbox.Position { return f.pos }

func (f *fakeSource) Read(from outbox.Seq, maxRecords, maxBytes int, dst []outbox.Record) (outbox.Epoch, []outbox.Record, error) {
	from = max(from, f.pos.Low)
	for s := from; s <= f.pos.Head && len(dst) < maxRecords; s++ {
		r := testRecord(int(s), 10)
		r.Seq = s
		dst = append(dst, r)
	}
	return f.pos.Epoch, dst, nil
}

func TestExportFrom(t *testing.T) {
	base := outbox.Position{Epoch: 7, Head: 100, Watermark: 60, Low: 30}
	tests := []struct {
		name             string
		from             outbox.Seq
		low              outbox.Seq
		wantFrom, wantAc outbox.Seq
		wantErr          string
	}{
		{name: "default", from: 0, wantFrom: 61, wantAc: 60},
		{name: "watermark+1", from: 61, wantFrom: 61, wantAc: 60},
		{name: "below watermark, retained", from: 41, wantFrom: 41, wantAc: 40},
		{name: "below what is retained", from: 10, wantFrom: 30, wantAc: 29},
		{name: "nothing retained", from: 10, low: 61, wantFrom: 61, wantAc: 60},
		{name: "above watermark", from: 80, wantFrom: 80, wantAc: 60},
		{name: "head+1", from: 101, wantFrom: 101, wantAc: 60},
		{name: "past the head", from: 102, wantErr: "from 102 is past the head 100"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pos := base
			if tc.low != 0 {
				pos.Low = tc.low
			}
			var buf bytes.Buffer
			sum, err := Export(&buf, &fakeSource{pos: pos}, testDevice, tc.from, ExportOptions{Now: fixedNow})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sum.From != tc.wantFrom || sum.Acked != tc.wantAc {
				t.Fatalf("from %d, acked %d; want %d, %d", sum.From, sum.Acked, tc.wantFrom, tc.wantAc)
			}
			wantRecords := uint64(0)
			if tc.wantFrom <= 100 {
				wantRecords = uint64(100 - tc.wantFrom + 1)
			}
			if sum.Records != wantRecords {
				t.Fatalf("records %d, want %d", sum.Records, wantRecords)
			}
			rd, err := NewReader(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if h := rd.Header(); h.From != tc.wantFrom || h.Acked != tc.wantAc || h.Watermark != 60 || h.Through != 100 || h.Created != testNow.UnixNano() {
				t.Fatalf("header = %+v", h)
			}
		})
	}
}

// TestExportAboveWatermarkGap: exporting from above the watermark leaves a
// hole the sink cannot cross; the receipt then says gap and acknowledges
// only what the sink has.
func TestExportAboveWatermarkGap(t *testing.T) {
	ob := openOutbox(t, outbox.Options{})
	appendRecords(t, ob, 0, 100, 20)
	if _, err := ob.Ack(ob.Epoch(), 10); err != nil {
		t.Fatal(err)
	}
	file, _ := exportBytes(t, ob, 50, ExportOptions{})
	sink := newTestSink()
	sink.w[sink.key(testDevice, uint64(ob.Epoch()))] = 10
	res, err := Import(bytes.NewReader(file), sink.apply)
	if err != nil {
		t.Fatal(err)
	}
	if res.AppliedThrough != 10 || res.Status != wire.StatusGap || len(sink.applied) != 0 {
		t.Fatalf("applied through %d, status %d, %d applied; want 10, gap, 0", res.AppliedThrough, res.Status, len(sink.applied))
	}
}

// randomCBOR returns a CBOR byte string of n random (incompressible) bytes.
func randomCBOR(n int) []byte {
	b := []byte{0x5a, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	raw := make([]byte, n)
	_, _ = rand.Read(raw)
	return append(b, raw...)
}

// TestExportSplitsLargeBatches: records that compress badly make a batch of
// max_bytes over wire.MaxBatchBytes; Export halves it until it fits, as the
// uplink does.
func TestExportSplitsLargeBatches(t *testing.T) {
	ob := openOutbox(t, outbox.Options{})
	recs := make([]outbox.Record, 24)
	for i := range recs {
		recs[i] = testRecord(i, 1)
		recs[i].Data = randomCBOR(200 << 10)
	}
	if _, _, err := ob.Append(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	file, sum := exportBytes(t, ob, 0, ExportOptions{MaxBytes: 4 << 20})
	if sum.Records != 24 || sum.Batches < 5 {
		t.Fatalf("summary: %d records in %d batches; want 24 records in at least 5 batches of at most 1 MiB", sum.Records, sum.Batches)
	}
	rd, err := NewReader(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	for {
		p, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(p) > wire.MaxBatchBytes {
			t.Fatalf("batch of %d bytes, more than %d", len(p), wire.MaxBatchBytes)
		}
	}
	sink := newTestSink()
	res, err := Import(bytes.NewReader(file), sink.apply)
	if err != nil || res.AppliedThrough != 24 {
		t.Fatalf("Import: %v, applied through %d; want 24", err, res.AppliedThrough)
	}
	checkExactlyOnce(t, sink, ob, 1, 24)
}

func TestExportOptionsValidate(t *testing.T) {
	o := ExportOptions{MaxRecords: -1, MaxBytes: -5, Compression: "lz4"}
	err := o.Validate()
	if err == nil {
		t.Fatal("Validate accepted bad options")
	}
	for _, key := range []string{"batch.max_records", "batch.max_bytes", "batch.compression"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error %q does not name %s", err, key)
		}
	}
	var buf bytes.Buffer
	if _, err := Export(&buf, &fakeSource{pos: outbox.Position{Epoch: 7, Low: 1}}, "_fleet", 0, ExportOptions{}); err == nil || !strings.Contains(err.Error(), "device id") {
		t.Fatalf("Export to device _fleet: err = %v, want a device id error", err)
	}
}

// TestExportWhileDropping exports a full drop_oldest outbox while records
// keep arriving and pushing the oldest out, as on a gateway that runs with
// its link down. Every seq the bundle covers reaches the sink exactly once,
// as a record (with its own data) or as lost.
func TestExportWhileDropping(t *testing.T) {
	ob := openOutbox(t, outbox.Options{MaxBytes: 64 << 10, WhenFull: outbox.DropOldest})
	appendRecords(t, ob, 0, 300, 300)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 300; ; i += 5 {
			select {
			case <-stop:
				return
			default:
			}
			recs := make([]outbox.Record, 5)
			for j := range recs {
				recs[j] = testRecord(i+j, 300)
			}
			if _, _, err := ob.Append(t.Context(), recs); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var file []byte
	var sum Summary
	for range 20 {
		var buf bytes.Buffer
		s, err := Export(&buf, ob, testDevice, 0, ExportOptions{MaxRecords: 7, Now: fixedNow})
		if errors.Is(err, ErrDropping) {
			continue
		}
		if err != nil {
			t.Fatalf("Export: %v", err)
		}
		file, sum = buf.Bytes(), s
		break
	}
	close(stop)
	<-done
	if file == nil {
		t.Fatal("every export ended with ErrDropping")
	}
	sink := newTestSink()
	res, err := Import(bytes.NewReader(file), sink.apply)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if res.AppliedThrough < sum.Last {
		t.Fatalf("applied through %d, below the last record exported %d", res.AppliedThrough, sum.Last)
	}
	if got := uint64(len(sink.applied)) + sink.lost; got != uint64(res.AppliedThrough) {
		t.Fatalf("%d applied + %d lost = %d, want every seq through %d once", len(sink.applied), sink.lost, got, res.AppliedThrough)
	}
	for seq, n := range sink.applied {
		if n != 1 {
			t.Fatalf("seq %d applied %d times", seq, n)
		}
		if want := string(testRecord(int(seq)-1, 300).Data); sink.data[seq] != want {
			t.Fatalf("seq %d applied with the data of another record", seq)
		}
	}
	if sum.Records != uint64(len(sink.applied)) {
		t.Fatalf("bundle holds %d records, the sink applied %d", sum.Records, len(sink.applied))
	}
}

// churningSource reports a different (wrong) dropped range on each Position
// call for the first n calls, then the true one: 1..60 (Low is 61).
type churningSource struct {
	fakeSource
	calls, n int
}

func (c *churningSource) Position() outbox.Position {
	pos := c.pos
	c.calls++
	pos.Drops = []outbox.Range{{First: 1, Last: 60}}
	if c.calls <= c.n {
		pos.Drops = []outbox.Range{{First: 1, Last: outbox.Seq(c.calls)}}
	}
	return pos
}

func TestExportDropsChanging(t *testing.T) {
	pos := outbox.Position{Epoch: 7, Head: 100, Watermark: 0, Low: 61}
	// Drops that settle after a few reads: the export rereads and succeeds.
	var buf bytes.Buffer
	sum, err := Export(&buf, &churningSource{fakeSource: fakeSource{pos: pos}, n: 5}, testDevice, 0, ExportOptions{Now: fixedNow})
	if err != nil || sum.Records != 40 || sum.Dropped != 60 {
		t.Fatalf("Export = %+v, %v; want 40 records and 60 dropped", sum, err)
	}
	// A dropping front that always overtakes the export: ErrDropping.
	buf.Reset()
	_, err = Export(&buf, &frontRunner{fakeSource: fakeSource{pos: outbox.Position{Epoch: 7, Head: 1 << 20, Low: 1}}}, testDevice, 0, ExportOptions{Now: fixedNow})
	if !errors.Is(err, ErrDropping) {
		t.Fatalf("Export behind a front that always overtakes it: %v, want ErrDropping", err)
	}
}

// frontRunner drops everything each Read returned, and some more, before
// the next Position: a drop_oldest outbox filling faster than the export
// reads it.
type frontRunner struct{ fakeSource }

func (f *frontRunner) Read(from outbox.Seq, maxRecords, maxBytes int, dst []outbox.Record) (outbox.Epoch, []outbox.Record, error) {
	epoch, recs, err := f.fakeSource.Read(from, maxRecords, maxBytes, dst)
	if len(recs) > 0 {
		f.pos.Low = recs[len(recs)-1].Seq + 10
		f.pos.Drops = []outbox.Range{{First: 1, Last: f.pos.Low - 1}}
	}
	return epoch, recs, err
}

// purgingSource deletes the acknowledged records below 61 after the first
// read, as retain_acked expiring during an export.
type purgingSource struct {
	fakeSource
	reads int
}

func (p *purgingSource) Read(from outbox.Seq, maxRecords, maxBytes int, dst []outbox.Record) (outbox.Epoch, []outbox.Record, error) {
	p.reads++
	if p.reads == 2 {
		p.pos.Low = 61
	}
	return p.fakeSource.Read(from, maxRecords, maxBytes, dst)
}

func TestExportRetainedPurged(t *testing.T) {
	src := &purgingSource{fakeSource: fakeSource{pos: outbox.Position{Epoch: 7, Head: 100, Watermark: 60, Low: 1}}}
	var buf bytes.Buffer
	_, err := Export(&buf, src, testDevice, 41, ExportOptions{MaxRecords: 5, Now: fixedNow})
	if err == nil || !strings.Contains(err.Error(), "acknowledged records from 46 were deleted while being exported") {
		t.Fatalf("err = %v, want one saying the retained records went", err)
	}
}
