package resync

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/edgesync/edgesync/outbox"
	"github.com/edgesync/edgesync/transport/wire"
)

const testEpoch = 6917529027641081857

func testHeader() Header {
	return Header{V: 1, Device: testDevice, Epoch: testEpoch, From: 41, Through: 46, Created: testNow.UnixNano(), Watermark: 40, Acked: 40}
}

// testBatch returns a valid batch of the test header with records first..last.
func testBatch(first, last uint64) *wire.Batch {
	b := &wire.Batch{V: wire.Version, Device: testDevice, Epoch: testEpoch, Acked: 40, SentAt: testNow.UnixNano(), SendID: first}
	for s := first; s <= last; s++ {
		b.Records = append(b.Records, wire.Record{Seq: s, Stream: "temps", Key: "sensor-7", Schema: "reading", SchemaVersion: 1,
			CapturedAt: testNow.UnixNano(), Data: cbor.RawMessage(cborText(fmt.Sprintf("reading %d", s)))})
	}
	if len(b.Records) > 0 {
		b.First, b.Last = first, last
	}
	return b
}

func encodeBatch(t testing.TB, b *wire.Batch, comp byte) []byte {
	t.Helper()
	p, err := wire.EncodeBatch(nil, b, comp)
	if err != nil {
		t.Fatalf("EncodeBatch: %v", err)
	}
	return p
}

// testPayloads are the batches of the test bundle: records 41..43, 44..46.
func testPayloads(t testing.TB) [][]byte {
	return [][]byte{encodeBatch(t, testBatch(41, 43), wire.CompressionNone), encodeBatch(t, testBatch(44, 46), wire.CompressionNone)}
}

// writeBundle writes a bundle with the Writer.
func writeBundle(t testing.TB, h Header, payloads [][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, h)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	for i, p := range payloads {
		if err := w.WriteBatch(p); err != nil {
			t.Fatalf("WriteBatch %d: %v", i+1, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if w.Sum() != sha256.Sum256(buf.Bytes()) || w.Bytes() != int64(buf.Len()) {
		t.Fatalf("Writer.Sum/Bytes disagree with the bytes written")
	}
	return buf.Bytes()
}

// rawBundle builds a bundle frame by frame, without the Writer's checks, to
// make the bundles a Writer refuses to write.
type rawBundle struct{ buf bytes.Buffer }

func newRawBundle(t testing.TB, h Header) *rawBundle {
	r := &rawBundle{}
	r.buf.WriteString(Magic)
	body, err := encMode.Marshal(&h)
	if err != nil {
		t.Fatal(err)
	}
	r.frame(frameHeader, body)
	return r
}

func (r *rawBundle) frame(typ byte, payload []byte) *rawBundle {
	head := frameHead(typ, len(payload))
	r.buf.Write(head[:])
	r.buf.Write(payload)
	r.buf.Write(binary.BigEndian.AppendUint32(nil, frameCRC(head, payload)))
	return r
}

// trailer appends a trailer with the true SHA-256 and the given counts.
func (r *rawBundle) trailer(t testing.TB, batches, records uint64) []byte {
	sum := sha256.Sum256(r.buf.Bytes())
	body, err := encMode.Marshal(&Trailer{Batches: batches, Records: records, SHA256: sum[:]})
	if err != nil {
		t.Fatal(err)
	}
	r.frame(frameTrailer, body)
	return r.buf.Bytes()
}

// readAll reads a bundle to its end, returning the payloads Next returned
// and the error that ended it (nil for io.EOF).
func readAll(file []byte) ([][]byte, error) {
	rd, err := NewReader(bytes.NewReader(file))
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for {
		p, err := rd.Next()
		if errors.Is(err, io.EOF) {
			if rd.Sum() != sha256.Sum256(file) {
				return out, fmt.Errorf("test: Reader.Sum differs from the file's")
			}
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, bytes.Clone(p))
	}
}

func TestWriterReader(t *testing.T) {
	payloads := testPayloads(t)
	file := writeBundle(t, testHeader(), payloads)
	if !bytes.HasPrefix(file, []byte(Magic)) {
		t.Fatalf("bundle starts with %q, want the magic line", file[:20])
	}
	rd, err := NewReader(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if got := rd.Header(); got != testHeader() {
		t.Fatalf("header = %+v, want %+v", got, testHeader())
	}
	for i, want := range payloads {
		got, err := rd.Next()
		if err != nil {
			t.Fatalf("Next %d: %v", i+1, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("batch %d differs from what was written", i+1)
		}
		if b := rd.Batch(); b.First != uint64(41+3*i) || len(b.Records) != 3 {
			t.Fatalf("batch %d decoded as records %d..%d", i+1, b.First, b.Last)
		}
	}
	if _, err := rd.Next(); err != io.EOF {
		t.Fatalf("Next after the last batch: %v, want io.EOF", err)
	}
	if _, err := rd.Next(); err != io.EOF {
		t.Fatalf("Next again: %v, want io.EOF again", err)
	}
	if tr := rd.Trailer(); tr.Batches != 2 || tr.Records != 6 {
		t.Fatalf("trailer = %+v, want 2 batches, 6 records", tr)
	}
	if rd.Sum() != sha256.Sum256(file) || rd.Bytes() != int64(len(file)) {
		t.Fatal("Reader.Sum or Bytes disagree with the file")
	}
}

func TestReaderTruncated(t *testing.T) {
	payloads := testPayloads(t)
	file := writeBundle(t, testHeader(), payloads)
	for n := 0; n < len(file); n++ {
		got, err := readAll(file[:n])
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("bundle cut to %d of %d bytes: err = %v, want ErrTruncated", n, len(file), err)
		}
		if !strings.Contains(err.Error(), "incomplete") {
			t.Fatalf("cut to %d: error %q does not say the copy is incomplete", n, err)
		}
		for i := range got {
			if !bytes.Equal(got[i], payloads[i]) {
				t.Fatalf("cut to %d: batch %d returned damaged", n, i+1)
			}
		}
	}
}

// TestReaderFlippedByte flips each bit of a bundle in turn: the bundle is
// never taken as complete, and no batch that Next returns differs from the
// one written.
func TestReaderFlippedByte(t *testing.T) {
	payloads := testPayloads(t)
	file := writeBundle(t, testHeader(), payloads)
	for i := range file {
		for _, bit := range []byte{0x01, 0x80} {
			bad := bytes.Clone(file)
			bad[i] ^= bit
			got, err := readAll(bad)
			if err == nil {
				t.Fatalf("byte %d ^ %#x: the damaged bundle was read to its end", i, bit)
			}
			switch {
			case i < len(Magic):
				if !errors.Is(err, ErrNotBundle) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrDamaged) {
					t.Fatalf("byte %d (magic) ^ %#x: err = %v, want ErrNotBundle, ErrVersion or ErrDamaged", i, bit, err)
				}
			case !errors.Is(err, ErrDamaged) && !errors.Is(err, ErrTruncated):
				// A flipped length can make a frame reach past the end.
				t.Fatalf("byte %d ^ %#x: err = %v, want ErrDamaged (or ErrTruncated for a length)", i, bit, err)
			}
			for j := range got {
				if !bytes.Equal(got[j], payloads[j]) {
					t.Fatalf("byte %d ^ %#x: batch %d returned damaged", i, bit, j+1)
				}
			}
		}
	}
	_, err := readAll(flip(file, len(Magic)+20))
	if err == nil || !strings.Contains(err.Error(), "checksum mismatch: the file is damaged") {
		t.Fatalf("flipped header byte: err = %v, want a checksum mismatch", err)
	}
}

func flip(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 0x10
	return b
}

func TestReaderMagic(t *testing.T) {
	tests := []struct {
		name string
		file string
		want error
		msg  string
	}{
		{"empty", "", ErrTruncated, "empty file"},
		{"part of the magic", "EDGESYNC-BUN", ErrTruncated, "inside the magic line"},
		{"zip", "PK\x03\x04\x14\x00\x00\x00\x08\x00 more bytes here", ErrNotBundle, "not an edgesync bundle"},
		{"json", `{"device": "gw-0001"}` + "\n", ErrNotBundle, "not an edgesync bundle"},
		{"newer format", "EDGESYNC-BUNDLE/2\nwhatever follows", ErrVersion, "format version 2; this edgesync reads version 1: upgrade"},
		{"damaged magic", "EDGESYNC-BUNDLE/\x01\n and more", ErrDamaged, "magic at byte 0: the magic line is damaged"},
		{"magic only", Magic, ErrTruncated, "ends after the magic line"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewReader(strings.NewReader(tc.file))
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want %v saying %q", err, tc.want, tc.msg)
			}
		})
	}
}

// TestReaderRules: bundles whose checksums match but which break a rule of
// the format are refused, and the error says which batch and why.
func TestReaderRules(t *testing.T) {
	h := testHeader()
	ok1 := encodeBatch(t, testBatch(41, 43), wire.CompressionNone)
	mutate := func(f func(b *wire.Batch)) []byte {
		b := testBatch(44, 46)
		f(b)
		return encodeBatch(t, b, wire.CompressionZstd)
	}
	h2 := h
	h2.V = 2
	tests := []struct {
		name string
		file []byte
		want error
		msg  string
	}{
		{"foreign device", newRawBundle(t, h).frame(frameBatch, ok1).frame(frameBatch, mutate(func(b *wire.Batch) { b.Device = "gw-0002" })).trailer(t, 2, 6),
			ErrInvalid, `batch 2 at byte 274: device "gw-0002" is not the bundle's device "gw-0001"; refusing the bundle`},
		{"other epoch", newRawBundle(t, h).frame(frameBatch, mutate(func(b *wire.Batch) { b.Epoch = 5 })).trailer(t, 1, 3),
			ErrInvalid, "batch 1 at byte 71: epoch 5 is not the bundle's epoch"},
		{"other acked", newRawBundle(t, h).frame(frameBatch, mutate(func(b *wire.Batch) { b.Acked = 39 })).trailer(t, 1, 3),
			ErrInvalid, "acked 39 is not the header's acked 40"},
		{"out of order", newRawBundle(t, h).frame(frameBatch, encodeBatch(t, testBatch(44, 46), 0)).frame(frameBatch, ok1).trailer(t, 2, 6),
			ErrInvalid, "batch 2 at byte 274: records start at 41, not above the previous batch's last record 46"},
		{"above through", newRawBundle(t, h).frame(frameBatch, encodeBatch(t, testBatch(45, 47), 0)).trailer(t, 1, 3),
			ErrInvalid, "records 45..47 are outside the header's 41..46"},
		{"drop above through", newRawBundle(t, h).frame(frameBatch, mutate(func(b *wire.Batch) { b.Drops = []wire.Range{{First: 47, Last: 50}} })).trailer(t, 1, 3),
			ErrInvalid, "dropped range 47..50 is above the header's through 46"},
		{"not a batch", newRawBundle(t, h).frame(frameBatch, []byte{0, 0xa0}).trailer(t, 1, 0),
			ErrInvalid, "batch 1 at byte 71: wire: batch"},
		{"header version", newRawBundle(t, h2).frame(frameBatch, ok1).trailer(t, 1, 3),
			ErrVersion, "header at byte 18: format version 2; this edgesync reads version 1"},
		{"header invalid", newRawBundle(t, Header{V: 1, Device: "_fleet", Epoch: 1, From: 1}).trailer(t, 0, 0),
			ErrInvalid, `header at byte 18: device "_fleet" is not a valid device id`},
		{"header not first", (&rawBundle{}).magic().frame(frameBatch, ok1).trailer(t, 1, 3),
			ErrDamaged, "the first frame is a batch 1, not the header"},
		{"second header", newRawBundle(t, h).frame(frameBatch, ok1).frame(frameHeader, []byte{0xa0}).trailer(t, 1, 3),
			ErrDamaged, "a second header"},
		{"trailer counts", newRawBundle(t, h).frame(frameBatch, ok1).trailer(t, 1, 4),
			ErrInvalid, "the trailer counts 1 batches and 4 records; the bundle holds 1 and 3"},
		{"bytes after the trailer", append(newRawBundle(t, h).frame(frameBatch, ok1).trailer(t, 1, 3), 0),
			ErrDamaged, "bytes follow the trailer"},
		{"unknown frame", newRawBundle(t, h).frame('X', []byte("hello")).trailer(t, 0, 0),
			ErrDamaged, "unknown frame type 0x58"},
		{"huge length", append(newRawBundle(t, h).buf.Bytes(), 'B', 0xff, 0xff, 0xff, 0xff),
			ErrDamaged, "frame length 4294967295 is over the limit of 1048576"},
		{"no trailer", newRawBundle(t, h).frame(frameBatch, ok1).buf.Bytes(),
			ErrTruncated, "file ends after 1 batches without a trailer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readAll(tc.file)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v\nwant %v saying %q", err, tc.want, tc.msg)
			}
			var be *BundleError
			if !errors.As(err, &be) {
				t.Fatalf("err is a %T, want a *BundleError", err)
			}
		})
	}
}

func (r *rawBundle) magic() *rawBundle {
	r.buf.WriteString(Magic)
	return r
}

// TestImportForeignDevice: a batch of another device stops the import
// before it is applied, naming the batch.
func TestImportForeignDevice(t *testing.T) {
	b2 := testBatch(44, 46)
	b2.Device = "gw-0666"
	file := newRawBundle(t, testHeader()).
		frame(frameBatch, encodeBatch(t, testBatch(41, 43), wire.CompressionZstd)).
		frame(frameBatch, encodeBatch(t, b2, wire.CompressionZstd)).trailer(t, 2, 6)
	sink := newTestSink()
	sink.w[sink.key(testDevice, testEpoch)] = 40
	res, err := Import(bytes.NewReader(file), sink.apply)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `batch 2`) || !strings.Contains(err.Error(), `"gw-0666"`) {
		t.Fatalf("err = %v, want ErrInvalid naming batch 2 and device gw-0666", err)
	}
	if sink.batches != 1 || res.Batches != 1 || len(sink.w) != 1 {
		t.Fatalf("apply called %d times (result %d, sink watermarks %v); want only batch 1, of %s", sink.batches, res.Batches, sink.w, testDevice)
	}
}

// TestImportDamagedTail: a batch frame is missing (each remaining frame is
// intact): the batches are applied, the trailer's SHA-256 fails, and Import
// returns the error, so that no receipt is written.
func TestImportDamagedTail(t *testing.T) {
	good := writeBundle(t, testHeader(), testPayloads(t))
	// Cut the first batch frame out.
	start := len(Magic)
	start += frameOverhead + int(binary.BigEndian.Uint32(good[start+1:]))
	n := frameOverhead + int(binary.BigEndian.Uint32(good[start+1:]))
	bad := append(bytes.Clone(good[:start]), good[start+n:]...)

	sink := newTestSink()
	sink.w[sink.key(testDevice, testEpoch)] = 43 // records 41..43 arrived over MQTT
	res, err := Import(bytes.NewReader(bad), sink.apply)
	if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "trailer") || !strings.Contains(err.Error(), "checksum mismatch: the file is damaged") {
		t.Fatalf("err = %v, want the trailer's checksum mismatch", err)
	}
	if res.Batches != 1 || res.AppliedThrough != 46 || sink.applied[44] != 1 {
		t.Fatalf("result %+v; want the intact batch (44..46) applied", res)
	}
	// Importing the good copy afterwards applies nothing twice.
	res, err = Import(bytes.NewReader(good), sink.apply)
	if err != nil || res.AppliedThrough != 46 || sink.applied[44] != 1 || sink.dups != 6 {
		t.Fatalf("good copy: %v, %+v, dups %d", err, res, sink.dups)
	}
}

func TestImportApplyError(t *testing.T) {
	file := writeBundle(t, testHeader(), testPayloads(t))
	calls := 0
	res, err := Import(bytes.NewReader(file), func(device string, b *wire.Batch) (uint64, uint8, error) {
		calls++
		if calls == 2 {
			return 0, 0, errors.New("database is locked")
		}
		return b.Last, wire.StatusOK, nil
	})
	if err == nil || !strings.Contains(err.Error(), "batch 2 (records 44..46): database is locked") {
		t.Fatalf("err = %v, want the apply error naming batch 2", err)
	}
	if res.Batches != 1 || res.AppliedThrough != 43 {
		t.Fatalf("result = %+v, want batch 1 applied through 43", res)
	}
}

func TestWriterRefuses(t *testing.T) {
	var buf bytes.Buffer
	if _, err := NewWriter(&buf, Header{Device: testDevice, Epoch: 1, From: 5, Through: 10, Watermark: 4, Acked: 5}); !errors.Is(err, ErrInvalid) ||
		!strings.Contains(err.Error(), "acked 5 is above the watermark 4") {
		t.Fatalf("NewWriter with a bad header: %v", err)
	}
	if _, err := NewWriter(&buf, Header{V: 3, Device: testDevice, Epoch: 1, From: 1}); !errors.Is(err, ErrVersion) {
		t.Fatalf("NewWriter with version 3: %v, want ErrVersion", err)
	}
	buf.Reset()
	w, err := NewWriter(&buf, testHeader())
	if err != nil {
		t.Fatal(err)
	}
	foreign := testBatch(41, 43)
	foreign.Device = "gw-0002"
	before := w.Bytes()
	if err := w.WriteBatch(encodeBatch(t, foreign, 0)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `device "gw-0002"`) {
		t.Fatalf("WriteBatch of another device: %v, want ErrInvalid", err)
	}
	if err := w.WriteBatch([]byte{7, 7, 7}); !errors.Is(err, ErrInvalid) || !errors.Is(err, wire.ErrCompression) {
		t.Fatalf("WriteBatch of garbage: %v, want ErrInvalid wrapping wire.ErrCompression", err)
	}
	if w.Bytes() != before || w.Batches() != 0 {
		t.Fatalf("refused batches were written (%d bytes, %d batches)", w.Bytes()-before, w.Batches())
	}
	if err := w.WriteBatch(encodeBatch(t, testBatch(41, 43), 0)); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteBatch(encodeBatch(t, testBatch(42, 44), 0)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("overlapping batch: %v, want ErrInvalid", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := w.WriteBatch(encodeBatch(t, testBatch(44, 46), 0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("WriteBatch after Close: %v, want ErrClosed", err)
	}
	if got, err := readAll(buf.Bytes()); err != nil || len(got) != 1 {
		t.Fatalf("reading back: %d batches, %v; want 1, nil", len(got), err)
	}
}

type failingWriter struct{ n int }

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.n < len(p) {
		k := f.n
		f.n = 0
		return k, errors.New("no space left on device")
	}
	f.n -= len(p)
	return len(p), nil
}

// TestExportWriteError: a full USB stick fails the export with the error.
func TestExportWriteError(t *testing.T) {
	ob := openOutbox(t, outbox.Options{})
	appendRecords(t, ob, 0, 5000, 100)
	_, err := Export(&failingWriter{n: 10 << 10}, ob, testDevice, 0, ExportOptions{})
	if err == nil || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("err = %v, want the write error", err)
	}
}

// TestReaderMemoryBounded: a frame that declares 1 MiB in a file that ends
// after a few bytes costs about what is there, not the declared length.
func TestReaderMemoryBounded(t *testing.T) {
	file := append(newRawBundle(t, testHeader()).buf.Bytes(), 'B', 0x00, 0x10, 0x00, 0x00, 1, 2, 3)
	var before, after runtime.MemStats
	const runs = 20
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		if _, err := readAll(file); !errors.Is(err, ErrTruncated) {
			t.Fatalf("err = %v, want ErrTruncated", err)
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > 512<<10 {
		t.Fatalf("reading a truncated 1 MiB frame allocated %d bytes a time, want well under 1 MiB", per)
	}
}
