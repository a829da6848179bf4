package wire

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"pgregory.net/rapid"
)

// libBatchDec decodes a batch body with package cbor's reflection decoder,
// the reference the hand-written decoder is checked against: as strict as
// the protocol's other messages, but lenient inside Record.Data.
var libBatchDec = mustDecMode(cbor.DecOptions{
	MaxNestedLevels:  3 + MaxDataDepth,
	MaxArrayElements: math.MaxInt32,
	MaxMapPairs:      math.MaxInt32,
}, true)

var (
	genName   = rapid.StringMatching(`[A-Za-z0-9._-]{1,64}`)
	genDevice = rapid.StringMatching(`[A-Za-z0-9.-][A-Za-z0-9._-]{0,63}`)
	genText   = rapid.StringN(0, 40, 160)
	genTime   = rapid.OneOf(rapid.Int64(), rapid.Int64Range(0, 1<<62))
)

// genValue generates a value that encodes to a CBOR data item: what
// Record.Data holds.
func genValue(depth int) *rapid.Generator[any] {
	scalars := []*rapid.Generator[any]{
		rapid.Map(rapid.Int64(), func(i int64) any { return i }),
		rapid.Map(rapid.Uint64(), func(u uint64) any { return u }),
		rapid.Map(rapid.Float64(), func(f float64) any { return f }),
		rapid.Map(rapid.String(), func(s string) any { return s }),
		rapid.Map(rapid.SliceOfN(rapid.Byte(), 0, 16), func(b []byte) any { return b }),
		rapid.Map(rapid.Bool(), func(b bool) any { return b }),
		rapid.Just[any](nil),
	}
	if depth == 0 {
		return rapid.OneOf(scalars...)
	}
	return rapid.OneOf(append(scalars,
		rapid.Map(rapid.SliceOfN(genValue(depth-1), 0, 5), func(s []any) any { return s }),
		rapid.Map(rapid.MapOfN(rapid.StringN(0, 8, 32), genValue(depth-1), 0, 5), func(m map[string]any) any { return m }),
	)...)
}

func genData(t *rapid.T) cbor.RawMessage {
	b, err := encMode.Marshal(genValue(3).Draw(t, "data"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func genRecord(t *rapid.T, seq uint64) Record {
	r := Record{
		Seq:        seq,
		Stream:     genName.Draw(t, "stream"),
		Key:        genText.Draw(t, "key"),
		ID:         genText.Draw(t, "id"),
		Op:         rapid.Uint8Range(0, 1).Draw(t, "op"),
		CapturedAt: genTime.Draw(t, "captured_at"),
		Data:       genData(t),
	}
	if rapid.Bool().Draw(t, "has schema") {
		r.Schema = genName.Draw(t, "schema")
		r.SchemaVersion = rapid.Uint32Range(1, math.MaxUint32).Draw(t, "schema_version")
	}
	return r
}

// genBatch generates a valid batch: records and drops along one line of
// sequence numbers with gaps.
func genBatch(t *rapid.T) *Batch {
	b := &Batch{
		V:      Version,
		Device: genDevice.Draw(t, "device"),
		Epoch:  rapid.Uint64Range(1, math.MaxInt64).Draw(t, "epoch"),
		Acked:  rapid.Uint64().Draw(t, "acked"),
		SentAt: genTime.Draw(t, "sent_at"),
		SendID: rapid.Uint64().Draw(t, "send_id"),
	}
	seq := rapid.Uint64Range(1, 1<<40).Draw(t, "start")
	for range rapid.IntRange(0, 20).Draw(t, "items") {
		seq += rapid.Uint64Range(0, 3).Draw(t, "gap")
		if rapid.IntRange(0, 3).Draw(t, "kind") == 0 {
			last := seq + rapid.Uint64Range(0, 1<<20).Draw(t, "drop length")
			b.Drops = append(b.Drops, Range{First: seq, Last: last})
			seq = last + 1
			continue
		}
		b.Records = append(b.Records, genRecord(t, seq))
		seq++
	}
	if n := len(b.Records); n > 0 {
		b.First, b.Last = b.Records[0].Seq, b.Records[n-1].Seq
	}
	return b
}

// TestAppendBatchMatchesLibrary checks that the hand-written batch encoder
// writes what package cbor's core deterministic encoding of the Batch struct
// writes, and that BodySize is its length.
func TestAppendBatchMatchesLibrary(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		b := genBatch(t)
		got := appendBatch(nil, b)
		want, err := encMode.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("appendBatch:\ngot  %x\nwant %x", got, want)
		}
		if b.BodySize() != len(got) {
			t.Fatalf("BodySize: got %d, want %d", b.BodySize(), len(got))
		}
		sum := 0
		for i := range b.Records {
			sum += b.Records[i].Size()
		}
		if rec, _ := encMode.Marshal(b.Records); len(b.Records) > 0 && sum != len(rec)-headLen(uint64(len(b.Records))) {
			t.Fatalf("sum of Record.Size: got %d, want %d", sum, len(rec)-headLen(uint64(len(b.Records))))
		}
	})
}

// TestDecodeMatchesLibrary checks that the hand-written batch decoder reads
// what package cbor reads into a Batch.
func TestDecodeMatchesLibrary(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		b := genBatch(t)
		body := appendBatch(nil, b)
		var got, want Batch
		if err := decodeBatchBody(body, &got); err != nil {
			t.Fatal(err)
		}
		if err := libBatchDec.Unmarshal(body, &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(normalize(&got), normalize(&want)) {
			t.Fatalf("decode:\ngot  %+v\nwant %+v", got, want)
		}
	})
}

// TestBatchRoundTrip: every valid batch encodes, with either compression,
// and decodes to itself.
func TestBatchRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		b := genBatch(t)
		compression := rapid.SampledFrom([]byte{CompressionNone, CompressionZstd}).Draw(t, "compression")
		prefix := []byte("prefix")
		payload, err := EncodeBatch(bytes.Clone(prefix), b, compression)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(payload, prefix) || payload[len(prefix)] != compression {
			t.Fatalf("payload %x does not start with the prefix and compression %d", payload, compression)
		}
		got, err := DecodeBatch(payload[len(prefix):])
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(normalize(got), normalize(b)) {
			t.Fatalf("round trip:\ngot  %+v\nwant %+v", got, b)
		}
	})
}

func genAck(t *rapid.T) *Ack {
	a := &Ack{
		V:         Version,
		Device:    genDevice.Draw(t, "device"),
		Epoch:     rapid.Uint64Range(1, math.MaxInt64).Draw(t, "epoch"),
		Status:    rapid.Uint8Range(0, 2).Draw(t, "status"),
		SinkID:    rapid.StringN(1, 20, MaxSinkIDBytes).Draw(t, "sink_id"),
		InReplyTo: rapid.Uint64().Draw(t, "in_reply_to"),
	}
	seq := rapid.Uint64Range(1, 1<<40).Draw(t, "start")
	for range rapid.IntRange(0, 10).Draw(t, "parked") {
		first := seq + rapid.Uint64Range(0, 10).Draw(t, "gap")
		last := first + rapid.Uint64Range(0, 10).Draw(t, "length")
		a.Parked = append(a.Parked, Parked{First: first, Last: last, Reason: genText.Draw(t, "reason")})
		seq = last + 1
	}
	a.AppliedThrough = seq + rapid.Uint64Range(0, 1<<20).Draw(t, "applied_through")
	return a
}

func genState(t *rapid.T) *State {
	s := &State{
		V:               Version,
		Device:          genDevice.Draw(t, "device"),
		Online:          rapid.Bool().Draw(t, "online"),
		BootID:          genName.Draw(t, "boot_id"),
		Epoch:           rapid.Uint64Range(0, math.MaxInt64).Draw(t, "epoch"),
		Head:            rapid.Uint64().Draw(t, "head"),
		Depth:           rapid.Uint64().Draw(t, "depth"),
		DepthBytes:      rapid.Uint64().Draw(t, "depth_bytes"),
		OldestAgeMillis: rapid.Uint64().Draw(t, "oldest_age_ms"),
		Time:            genTime.Draw(t, "time"),
	}
	s.Watermark = rapid.Uint64Range(0, s.Head).Draw(t, "watermark")
	return s
}

func genCmd(t *rapid.T) *Cmd {
	return &Cmd{
		V:        Version,
		ID:       genName.Draw(t, "id"),
		Name:     rapid.SampledFrom([]string{CmdResend, "future-command"}).Draw(t, "name"),
		From:     rapid.Uint64Range(1, math.MaxUint64).Draw(t, "from"),
		Epoch:    rapid.Uint64Range(0, math.MaxInt64).Draw(t, "epoch"),
		Args:     rapid.MapOfN(genName, genText, 0, MaxArgs).Draw(t, "args"),
		IssuedAt: genTime.Draw(t, "issued_at"),
	}
}

func genConfig(t *rapid.T) *Config {
	c := &Config{
		V:        Version,
		Target:   rapid.OneOf(genDevice, rapid.Just(FleetID)).Draw(t, "target"),
		Version:  rapid.Uint64Range(1, math.MaxUint64).Draw(t, "version"),
		Body:     []byte(rapid.StringN(0, 200, 800).Draw(t, "body")),
		IssuedAt: genTime.Draw(t, "issued_at"),
	}
	if rapid.Bool().Draw(t, "signed") {
		if err := c.Sign(testKey, genName.Draw(t, "key_id")); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func genConfigStatus(t *rapid.T) *ConfigStatus {
	s := &ConfigStatus{
		V:            Version,
		Device:       genDevice.Draw(t, "device"),
		Version:      rapid.Uint64().Draw(t, "version"),
		FleetVersion: rapid.Uint64().Draw(t, "fleet_version"),
		Applied:      rapid.Bool().Draw(t, "applied"),
		Time:         genTime.Draw(t, "time"),
	}
	if !s.Applied {
		s.Error = rapid.StringN(1, 100, MaxReasonBytes).Draw(t, "error")
	}
	return s
}

// TestControlRoundTrip: every valid ack and control message encodes and
// decodes to itself, and its encoding is package cbor's core deterministic
// encoding.
func TestControlRoundTrip(t *testing.T) {
	gens := map[string]func(*rapid.T) any{
		"ack":           func(t *rapid.T) any { return genAck(t) },
		"state":         func(t *rapid.T) any { return genState(t) },
		"cmd":           func(t *rapid.T) any { return genCmd(t) },
		"config":        func(t *rapid.T) any { return genConfig(t) },
		"config_status": func(t *rapid.T) any { return genConfigStatus(t) },
	}
	for kind, gen := range gens {
		t.Run(kind, func(t *testing.T) {
			rapid.Check(t, func(t *rapid.T) {
				msg := gen(t)
				payload, err := encodeAny(nil, msg, 0)
				if err != nil {
					t.Fatal(err)
				}
				want, err := encMode.Marshal(msg)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(payload, want) {
					t.Fatalf("encode:\ngot  %x\nwant %x", payload, want)
				}
				got, err := decodeAny(kind, payload)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(normalize(got), normalize(msg)) {
					t.Fatalf("round trip:\ngot  %+v\nwant %+v", got, msg)
				}
			})
		})
	}
}

// TestDecodeBatchInto checks that decoding into a used Batch leaves nothing
// of the old batch behind and reuses its slices.
func TestDecodeBatchInto(t *testing.T) {
	big, err := EncodeBatch(nil, testBatch(t), CompressionZstd)
	if err != nil {
		t.Fatal(err)
	}
	small, err := EncodeBatch(nil, testDropsBatch(), CompressionNone)
	if err != nil {
		t.Fatal(err)
	}
	var b Batch
	if err := DecodeBatchInto(big, &b); err != nil {
		t.Fatal(err)
	}
	records := &b.Records[0]
	if err := DecodeBatchInto(small, &b); err != nil {
		t.Fatal(err)
	}
	if c := b; !reflect.DeepEqual(normalize(&c), normalize(testDropsBatch())) {
		t.Errorf("got %+v, want %+v", b, testDropsBatch())
	}
	if err := DecodeBatchInto(big, &b); err != nil {
		t.Fatal(err)
	}
	if c := b; !reflect.DeepEqual(normalize(&c), normalize(testBatch(t))) {
		t.Errorf("got %+v, want %+v", b, testBatch(t))
	}
	if &b.Records[0] != records {
		t.Errorf("records were not reused")
	}
	for _, c := range []byte{CompressionNone, CompressionZstd} {
		payload, err := EncodeBatch(nil, testBatch(t), c)
		if err != nil {
			t.Fatal(err)
		}
		allocs := testing.AllocsPerRun(100, func() {
			if err := DecodeBatchInto(payload, &b); err != nil {
				t.Fatal(err)
			}
		})
		// Device, three keys, one id, two streams, one schema, the data arena.
		if allocs > 9 {
			t.Errorf("DecodeBatchInto, compression %d: %v allocations, want at most 9", c, allocs)
		}
	}
}

// TestEncodeAppends checks that encoders append to dst and, on error, leave
// it as it was.
func TestEncodeAppends(t *testing.T) {
	dst := []byte("keep")
	for _, v := range testVectors(t) {
		out, err := encodeAny(dst, v.msg, v.compression)
		if err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		if string(out[:4]) != "keep" {
			t.Errorf("%s: dst overwritten: %q", v.name, out[:4])
		}
		_, want := readVector(t, v.name)
		if !bytes.Equal(out[4:], want) {
			t.Errorf("%s: appended %x, want %x", v.name, out[4:], want)
		}
	}
	bad := testBatch(t)
	bad.Device = "a b"
	out, err := EncodeBatch(dst, bad, CompressionZstd)
	if !errors.Is(err, ErrInvalid) || string(out) != "keep" {
		t.Errorf("EncodeBatch(invalid): got %q, %v; want %q, ErrInvalid", out, err, "keep")
	}
}

// TestNoAliasing checks that a decoded batch does not share memory with the
// payload: the caller may reuse its buffer at once.
func TestNoAliasing(t *testing.T) {
	for _, c := range []byte{CompressionNone, CompressionZstd} {
		payload, err := EncodeBatch(nil, testBatch(t), c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeBatch(payload)
		if err != nil {
			t.Fatal(err)
		}
		for i := range payload {
			payload[i] = 0xee
		}
		if !reflect.DeepEqual(normalize(got), normalize(testBatch(t))) {
			t.Errorf("compression %d: the batch changed with the payload: %+v", c, got)
		}
	}
}

// TestConcurrent encodes and decodes from many goroutines at once (run it
// with -race): the shared zstd encoder and decoder and the buffer pool are
// safe for concurrent use.
func TestConcurrent(t *testing.T) {
	want := testBatch(t)
	done := make(chan error)
	for g := range 8 {
		go func() {
			var buf []byte
			var b Batch
			for i := range 50 {
				c := byte((g + i) % 2)
				var err error
				if buf, err = EncodeBatch(buf[:0], want, c); err != nil {
					done <- err
					return
				}
				if err = DecodeBatchInto(buf, &b); err != nil {
					done <- err
					return
				}
				if got := b; !reflect.DeepEqual(normalize(&got), want) {
					done <- errors.New("decoded a different batch")
					return
				}
				ack, err := EncodeAck(nil, testAck(StatusGap))
				if err != nil {
					done <- err
					return
				}
				if _, err := DecodeAck(ack); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
