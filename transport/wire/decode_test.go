package wire

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/klauspost/compress/zstd"
)

// cb writes CBOR by hand for the malformed-input tests.
type cb []byte

func (b cb) head(major byte, n uint64) cb { return appendHead(b, major, n) }
func (b cb) uint(n uint64) cb             { return appendHead(b, majorUint, n) }
func (b cb) text(s string) cb             { return appendText(b, s) }
func (b cb) raw(p ...byte) cb             { return append(b, p...) }

// batchHead is the start of a valid batch map of pairs pairs, holding keys
// 1 to 6, then the given bytes.
func batchHead(pairs uint64) cb {
	return cb(nil).head(majorMap, pairs).
		uint(1).uint(1).uint(2).text(testDevice).uint(3).uint(testEpoch).
		uint(4).uint(0).uint(5).uint(0).uint(6).uint(0)
}

// TestDecodeBatchMalformed feeds the batch decoder broken payloads and checks
// what it says.
func TestDecodeBatchMalformed(t *testing.T) {
	none := func(body cb) []byte { return append([]byte{CompressionNone}, body...) }
	record := cb(nil).raw(majorArray | 9).uint(1).text("s").text("").text("").uint(0).text("").uint(0).uint(0)
	cases := []struct {
		name    string
		payload []byte
		want    string
		is      error
	}{
		{"empty", nil, "wire: batch: malformed: payload of 0 bytes", ErrMalformed},
		{"compression only", []byte{0}, "wire: batch: malformed: payload of 1 bytes", ErrMalformed},
		{"unknown compression", []byte{2, 0xa0}, "wire: batch: compression: unknown compression 2", ErrCompression},
		{"too large", make([]byte, MaxBatchBytes+1), "wire: batch: payload of 1048577 bytes, more than 1048576", ErrTooLarge},
		{"not a map", none(cb(nil).uint(1)), "wire: batch: malformed: want a map, got an unsigned integer", ErrMalformed},
		{"indefinite map", none(cb(nil).raw(0xbf, 1, 1, 0xff)), "wire: batch: malformed: indefinite length", ErrMalformed},
		{"reserved head", none(cb(nil).raw(0xbc)), "wire: batch: malformed: reserved additional information", ErrMalformed},
		{"truncated head", none(cb(nil).raw(0xb9, 0)), "wire: batch: malformed: unexpected end of body", ErrMalformed},
		{"too many pairs", none(cb(nil).head(majorMap, 65)), "wire: batch: 65 map pairs, more than 64", ErrTooLarge},
		{"text key", none(cb(nil).head(majorMap, 1).text("v").uint(1)), "wire: batch: malformed: want an unsigned integer, got a text string", ErrMalformed},
		{"duplicate key", none(batchHead(9).uint(2).text("gw-0002").uint(8).uint(0).uint(9).uint(0)), "wire: batch: malformed: duplicate map key 2", ErrMalformed},
		{"key out of range", none(batchHead(9).uint(64).uint(0).uint(8).uint(0).uint(9).uint(0)), "wire: batch: malformed: map key 64 out of range", ErrMalformed},
		{"trailing bytes", none(batchHead(8).uint(8).uint(0).uint(9).uint(0).raw(0)), "wire: batch: malformed: 1 bytes after the batch", ErrMalformed},
		{"truncated", none(batchHead(9).uint(8).uint(0).uint(9).uint(0)), "wire: batch: malformed: unexpected end of body", ErrMalformed},
		{"device not text", none(cb(nil).head(majorMap, 2).uint(1).uint(1).uint(2).raw(0x41, 'x')), "wire: batch: device: malformed: want a text string, got a byte string", ErrMalformed},
		{"text past the end", none(cb(nil).head(majorMap, 2).uint(1).uint(1).uint(2).raw(0x65, 'x')), "wire: batch: device: malformed: unexpected end of body", ErrMalformed},
		{"tagged integer", none(batchHead(8).uint(8).raw(0xc1, 0).uint(9).uint(0)), "wire: batch: sent_at: malformed: want an integer, got a tag", ErrMalformed},
		{"sent_at out of range", none(batchHead(8).uint(8).raw(0x1b, 0x80, 0, 0, 0, 0, 0, 0, 0).uint(9).uint(0)), "wire: batch: sent_at: malformed: integer out of the int64 range", ErrMalformed},
		{"version 2", none(cb(nil).head(majorMap, 2).uint(1).uint(2).uint(2).uint(7)), "wire: batch: v: version 2, want 1", ErrVersion},
		{"version 300", none(cb(nil).head(majorMap, 2).uint(1).uint(300).uint(2).uint(7)), "wire: batch: v: version 300, want 1", ErrVersion},
		{"records announced", none(batchHead(9).uint(8).uint(0).uint(9).uint(0).uint(10).head(majorArray, 100)), "wire: batch: records: malformed: unexpected end of body: 100 announced", ErrMalformed},
		{"records too many", none(batchHead(9).uint(8).uint(0).uint(9).uint(0).uint(10).head(majorArray, MaxRecords+1)), "wire: batch: records: 10001 records, more than 10000", ErrTooLarge},
		{"drops announced", none(batchHead(9).uint(8).uint(0).uint(9).uint(0).uint(7).head(majorArray, 100)), "wire: batch: drops: malformed: unexpected end of body: 100 announced", ErrMalformed},
		{"drop of 3", none(batchHead(9).uint(7).raw(majorArray|1, majorArray|3, 1, 2, 3).uint(8).uint(0).uint(9).uint(0)), "wire: batch: drops[0]: malformed: want an array of 2 elements", ErrMalformed},
		{"record of 8", none(batchHead(9).uint(8).uint(0).uint(9).uint(0).uint(10).raw(majorArray | 1).raw(majorArray | 8).raw(record[1:]...)), "wire: batch: records[0]: malformed: want an array of 9 elements", ErrMalformed},
		{"record stream not text", none(batchHead(9).uint(8).uint(0).uint(9).uint(0).uint(10).raw(majorArray|1, majorArray|9, 1, 1).raw(make([]byte, 8)...)), "wire: batch: records[0].stream: malformed: want a text string, got an unsigned integer", ErrMalformed},
		{"record op 256", none(batchHead(9).uint(8).uint(0).uint(9).uint(0).uint(10).raw(majorArray|1, majorArray|9, 1).text("s").text("").text("").uint(256).raw(make([]byte, 4)...)), "wire: batch: records[0].op: unknown op 256", ErrInvalid},
		{"record schema version 2^32", none(batchHead(9).uint(8).uint(0).uint(9).uint(0).uint(10).raw(majorArray|1, majorArray|9, 1).text("s").text("").text("").uint(0).text("s").uint(1 << 32)), "wire: batch: records[0].schema_version: 4294967296 out of the uint32 range", ErrInvalid},
		{"record data missing", none(batchHead(9).uint(8).uint(0).uint(9).uint(0).uint(10).raw(majorArray | 1).raw(record...)), "wire: batch: records[0].data: malformed: unexpected end of body", ErrMalformed},
		{"record data break", none(batchHead(9).uint(8).uint(0).uint(9).uint(0).uint(10).raw(majorArray | 1).raw(record...).raw(0xff)), "wire: batch: records[0].data: malformed: cbor: unexpected \"break\" code", ErrMalformed},
		{"bad zstd", []byte{CompressionZstd, 1, 2, 3, 4, 5}, "wire: batch: malformed: zstd: invalid input: magic number mismatch", ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := DecodeBatch(c.payload)
			if b != nil || err == nil || err.Error() != c.want || !errors.Is(err, c.is) {
				t.Errorf("got %v, %v; want nil, %q (%v)", b, err, c.want, c.is)
			}
		})
	}
}

// TestDecodeBatchLenient checks what the decoder accepts beyond what the
// encoder writes: unknown keys (below 64) with any well-formed value, and
// anything well formed inside data.
func TestDecodeBatchLenient(t *testing.T) {
	want := testDropsBatch()
	body := appendBatch(nil, want)
	body[0]++                                                             // one pair more
	body = cb(body).uint(11).raw(0xbf, 0x61, 'a', 0xc1, 0x9f, 0xff, 0xff) // {_ "a": 1(1)([_ ])}
	got, err := DecodeBatch(append([]byte{CompressionNone}, body...))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}

	b := testBatch(t)
	b.Records[0].Data = []byte{0xd8, 0x20, 0x7f, 0x61, 'x', 0xff} // 32(_ "x")
	payload, err := EncodeBatch(nil, b, CompressionNone)
	if err != nil {
		t.Fatal(err)
	}
	got, err = DecodeBatch(payload)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Records[0].Data, b.Records[0].Data) {
		t.Errorf("data: got %x, want %x", got.Records[0].Data, b.Records[0].Data)
	}
}

// zstdFrame compresses body with an encoder made with opts.
func zstdFrame(t *testing.T, body []byte, opts ...zstd.EOption) []byte {
	t.Helper()
	e, err := zstd.NewWriter(nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	return e.EncodeAll(body, nil)
}

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestZstdLimits checks that zstd bodies over the limits fail before
// anything large is allocated.
func TestZstdLimits(t *testing.T) {
	zeros := make([]byte, 4<<20)
	valid := appendBatch(nil, testBatch(t))
	withFCS := func(frame []byte, fcs uint32) []byte {
		// A frame of more than 65791 bytes: magic, frame header
		// descriptor, the window descriptor unless single segment, then a
		// 4-byte content size.
		f := bytes.Clone(frame)
		if f[4]>>6 != 2 {
			t.Fatalf("frame header descriptor %08b: want a 4-byte content size", f[4])
		}
		at := 6
		if f[4]&(1<<5) != 0 {
			at = 5
		}
		binary.LittleEndian.PutUint32(f[at:], fcs)
		return f
	}
	big := zstdFrame(t, zeros, zstd.WithSingleSegment(true))
	windowed := zstdFrame(t, zeros, zstd.WithSingleSegment(false), zstd.WithWindowSize(1<<20))
	cases := []struct {
		name     string
		frame    []byte
		want     string
		is       error
		maxAlloc uint64
	}{
		{"declares too much", withFCS(big, MaxDecodedBytes+1), "wire: batch: decodes to 8388609 bytes, more than 8388608", ErrTooLarge, 64 << 10},
		{"declares 4 GiB", withFCS(big, 0xffffffff), "wire: batch: decodes to 4294967295 bytes, more than 8388608", ErrTooLarge, 64 << 10},
		{"single segment declares less than it holds", withFCS(big, 1000), "wire: batch: malformed: zstd: window size exceeded", ErrMalformed, 2 * (1000 + zstdSlack)},
		{"windowed declares less than it holds", withFCS(windowed, 1000), "wire: batch: decodes to more than it declares", ErrTooLarge, 2 * (1000 + zstdSlack)},
		{"windowed declares a little less", withFCS(windowed, 3<<20), "wire: batch: decodes to more than it declares", ErrTooLarge, 2 * (3<<20 + zstdSlack)},
		{"no content size", zstdFrame(t, []byte{0xa0}, zstd.WithSingleSegment(false)), "wire: batch: malformed: zstd: frame does not declare its content size", ErrMalformed, 64 << 10},
		{"two frames", append(zstdFrame(t, valid, zstd.WithSingleSegment(true)), zstdFrame(t, []byte{0}, zstd.WithSingleSegment(true))...), "wire: batch: malformed: zstd: 1 bytes after the frame", ErrMalformed, 1 << 20},
		{"truncated", zstdFrame(t, valid, zstd.WithSingleSegment(true))[:20], "wire: batch: malformed: zstd: unexpected EOF", ErrMalformed, 1 << 20},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			payload := append([]byte{CompressionZstd}, c.frame...)
			var err error
			// The least of a few runs: a decoder allocates its own buffers
			// on its first use.
			n := uint64(1 << 62)
			for range 4 {
				n = min(n, allocated(func() { _, err = DecodeBatch(payload) }))
			}
			if err == nil || err.Error() != c.want || !errors.Is(err, c.is) {
				t.Errorf("got %v, want %q (%v)", err, c.want, c.is)
			}
			if n > c.maxAlloc {
				t.Errorf("allocated %d bytes, want at most %d", n, c.maxAlloc)
			}
		})
	}

	// A body of exactly MaxDecodedBytes decodes, allocating about that.
	b := &Batch{V: Version, Device: testDevice, Epoch: testEpoch}
	for b.BodySize() < MaxDecodedBytes-(512<<10) {
		seq := uint64(len(b.Records) + 1)
		b.Records = append(b.Records, Record{Seq: seq, Stream: "s", Data: textItem(512 << 10)})
		b.First, b.Last = 1, seq
	}
	b.Records = append(b.Records, Record{Seq: b.Last + 1, Stream: "s"})
	b.Last++
	fill(t, &b.Records[len(b.Records)-1].Data, textItem, b.BodySize, MaxDecodedBytes)
	payload, err := EncodeBatch(nil, b, CompressionZstd)
	if err != nil {
		t.Fatal(err)
	}
	n := allocated(func() { _, err = DecodeBatch(payload) })
	if err != nil {
		t.Fatal(err)
	}
	if n > 3*MaxDecodedBytes {
		t.Errorf("decoding a batch of %d bytes allocated %d bytes", MaxDecodedBytes, n)
	}
	b.Records[0].Data = textItem(len(b.Records[0].Data) - 2) // one byte more
	if _, err := EncodeBatch(nil, b, CompressionZstd); err == nil || !errors.Is(err, ErrTooLarge) {
		t.Errorf("EncodeBatch of a body of %d bytes: got %v, want ErrTooLarge", b.BodySize(), err)
	}
}

// fill sets *data to item(n) with the n that makes size() return target.
func fill(t *testing.T, data *cbor.RawMessage, item func(n int) []byte, size func() int, target int) {
	t.Helper()
	*data = item(0)
	n := target - size()
	for try := n; try > n-10 && try >= 0; try-- {
		*data = item(try)
		if size() == target {
			return
		}
	}
	t.Fatalf("cannot fill to %d bytes", target)
}

// TestEncodeTooLarge checks the payload limit and that the largest record
// always fits.
func TestEncodeTooLarge(t *testing.T) {
	noise := func(n int) []byte {
		p := make([]byte, n)
		rand.Read(p)
		return append(appendHead(nil, 2<<5, uint64(n)), p...)
	}
	// The largest record, incompressible, with the most drops: fits.
	b := &Batch{V: Version, Device: strings.Repeat("d", MaxNameLen), Epoch: 1<<63 - 1, Acked: 1<<64 - 1, SentAt: -1 << 63, SendID: 1<<64 - 1}
	for i := range MaxDrops {
		b.Drops = append(b.Drops, Range{First: 1<<62 + uint64(2*i), Last: 1<<62 + uint64(2*i)})
	}
	r := Record{Seq: 1<<63 - 1, Stream: strings.Repeat("s", MaxNameLen), Key: strings.Repeat("k", MaxKeyBytes),
		ID: strings.Repeat("i", MaxIDRunes), Schema: strings.Repeat("c", MaxNameLen), SchemaVersion: 1<<32 - 1, CapturedAt: -1 << 63}
	fill(t, &r.Data, noise, r.Size, MaxRecordBytes)
	b.Records = []Record{r}
	b.First, b.Last = r.Seq, r.Seq
	for _, c := range []byte{CompressionNone, CompressionZstd} {
		payload, err := EncodeBatch(nil, b, c)
		if err != nil {
			t.Fatalf("compression %d: %v", c, err)
		}
		t.Logf("compression %d: the largest batch of one record is %d bytes", c, len(payload))
	}

	// Two such records do not fit, compressed or not.
	b.Drops = nil
	r2 := r
	r2.Seq--
	fill(t, &r2.Data, noise, r2.Size, MaxRecordBytes) // not the same noise: zstd would find it
	b.Records = []Record{r2, r}
	b.First = r2.Seq
	for _, c := range []byte{CompressionNone, CompressionZstd} {
		out, err := EncodeBatch([]byte("x"), b, c)
		if !errors.Is(err, ErrTooLarge) || string(out) != "x" {
			t.Errorf("compression %d: got %d bytes, %v; want ErrTooLarge and dst unchanged", c, len(out), err)
		}
	}
}

// TestDecodeControlMalformed feeds the other decoders broken payloads.
func TestDecodeControlMalformed(t *testing.T) {
	cases := []struct {
		name    string
		kind    string
		payload []byte
		want    string
		is      error
	}{
		{"ack empty", "ack", nil, "wire: ack: malformed: empty payload", ErrMalformed},
		{"ack too large", "ack", make([]byte, MaxAckBytes+1), "wire: ack: 65537 bytes, more than 65536", ErrTooLarge},
		{"ack version 2", "ack", cb(nil).head(majorMap, 2).uint(1).uint(2).uint(4).text("new"), "wire: ack: v: version 2, want 1", ErrVersion},
		{"ack indefinite", "ack", cb(nil).raw(0xbf, 1, 1, 0xff), "wire: ack: malformed: cbor: indefinite-length map isn't allowed", ErrMalformed},
		{"ack duplicate key", "ack", cb(nil).head(majorMap, 2).uint(1).uint(1).uint(1).uint(1), "wire: ack: malformed: cbor: found duplicate map key 1 at map element index 1", ErrMalformed},
		{"ack trailing", "ack", cb(nil).head(majorMap, 1).uint(1).uint(1).raw(0), "wire: ack: malformed: cbor: 1 bytes of extraneous data starting at index 3", ErrMalformed},
		{"ack status type", "ack", cb(nil).head(majorMap, 2).uint(1).uint(1).uint(5).text("ok"), "wire: ack: malformed: cbor: cannot unmarshal UTF-8 text string into Go struct field wire.Ack.5 of type uint8", ErrMalformed},
		{"state tag", "state", cb(nil).head(majorMap, 1).uint(1).raw(0xc1, 1), "wire: state: malformed: cbor: CBOR tag isn't allowed", ErrMalformed},
		{"state too large", "state", make([]byte, MaxControlBytes+1), "wire: state: 262145 bytes, more than 262144", ErrTooLarge},
		{"cmd version 7", "cmd", cb(nil).head(majorMap, 2).uint(1).uint(7).uint(3).uint(1), "wire: cmd: v: version 7, want 1", ErrVersion},
		{"cmd args not text", "cmd", cb(nil).head(majorMap, 1).uint(6).head(majorMap, 1).text("a").uint(1), "wire: cmd: malformed: cbor: cannot unmarshal positive integer into Go struct field wire.Cmd.6 of type string", ErrMalformed},
		{"config body text", "config", cb(nil).head(majorMap, 1).uint(4).text("a: 1"), "wire: config: malformed: cbor: cannot unmarshal UTF-8 text string into Go struct field wire.Config.4 of type []uint8", ErrMalformed},
		{"config status not a map", "config_status", cb(nil).uint(1), "wire: config status: malformed: cbor: cannot unmarshal positive integer into Go value of type wire.ConfigStatus", ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := decodeAny(c.kind, c.payload)
			if err == nil || err.Error() != c.want || !errors.Is(err, c.is) {
				t.Errorf("got %v, want %q (%v)", err, c.want, c.is)
			}
		})
	}
}
