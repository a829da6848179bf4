package wire

import (
	"errors"
	"strings"
	"testing"
)

// validationCase breaks one rule of a valid message.
type validationCase struct {
	name   string
	mutate func(msg any)
	want   string // the whole error message
	is     error  // the sentinel it matches
	// What the decoder says, when it sees the broken rule as broken CBOR
	// before it can validate; "-" when the encoding hides the break.
	decodeWant string
	decodeIs   error
}

func batchCase(name string, mutate func(b *Batch), want string, is error) validationCase {
	return validationCase{name: name, mutate: func(m any) { mutate(m.(*Batch)) }, want: want, is: is}
}

func vc(name string, mutate func(msg any), want string, is error) validationCase {
	return validationCase{name: name, mutate: mutate, want: want, is: is}
}

// decodes sets what the decoder says instead.
func (c validationCase) decodes(want string, is error) validationCase {
	c.decodeWant, c.decodeIs = want, is
	return c
}

// TestBatchValidation breaks every rule of a batch, one at a time, and
// checks that Validate, EncodeBatch and DecodeBatch (of the same batch
// encoded without validation) all name the field.
func TestBatchValidation(t *testing.T) {
	long := strings.Repeat("x", MaxNameLen+1)
	cases := []validationCase{
		batchCase("version", func(b *Batch) { b.V = 2 }, "wire: batch: v: version 2, want 1", ErrVersion),
		batchCase("version 0", func(b *Batch) { b.V = 0 }, "wire: batch: v: version 0, want 1", ErrVersion),
		batchCase("device empty", func(b *Batch) { b.Device = "" }, `wire: batch: device: invalid ""`, ErrInvalid),
		batchCase("device reserved", func(b *Batch) { b.Device = "_fleet" }, `wire: batch: device: invalid "_fleet"`, ErrInvalid),
		batchCase("device space", func(b *Batch) { b.Device = "gw 1" }, `wire: batch: device: invalid "gw 1"`, ErrInvalid),
		batchCase("device slash", func(b *Batch) { b.Device = "gw/1" }, `wire: batch: device: invalid "gw/1"`, ErrInvalid),
		batchCase("device very long", func(b *Batch) { b.Device = strings.Repeat("y", 100) }, `wire: batch: device: invalid "`+strings.Repeat("y", 80)+`"...`, ErrInvalid),
		batchCase("device long", func(b *Batch) { b.Device = long }, `wire: batch: device: invalid "`+long+`"`, ErrInvalid),
		batchCase("epoch 0", func(b *Batch) { b.Epoch = 0 }, "wire: batch: epoch: must be in 1..2^63-1, got 0", ErrInvalid),
		batchCase("epoch 2^63", func(b *Batch) { b.Epoch = 1 << 63 }, "wire: batch: epoch: must be in 1..2^63-1, got 9223372036854775808", ErrInvalid),
		batchCase("first", func(b *Batch) { b.First = 40 }, "wire: batch: first: is 40, want 41 (the first record's seq)", ErrInvalid),
		batchCase("last", func(b *Batch) { b.Last = 44 }, "wire: batch: last: is 44, want 43 (the last record's seq)", ErrInvalid),
		batchCase("first without records", func(b *Batch) { b.Records = nil; b.Last = 0 }, "wire: batch: first: is 41, want 0 (the first record's seq)", ErrInvalid),
		batchCase("seq 0", func(b *Batch) { b.Records[0].Seq = 0; b.First = 0 }, "wire: batch: records[0].seq: must be >= 1", ErrInvalid),
		batchCase("seq repeated", func(b *Batch) { b.Records[1].Seq = 41 }, "wire: batch: records[1].seq: 41 not after 41", ErrInvalid),
		batchCase("seq backwards", func(b *Batch) { b.Records[2].Seq = 40; b.Last = 40 }, "wire: batch: records[2].seq: 40 not after 42", ErrInvalid),
		batchCase("stream empty", func(b *Batch) { b.Records[1].Stream = "" }, `wire: batch: records[1].stream: invalid ""`, ErrInvalid),
		batchCase("stream space", func(b *Batch) { b.Records[2].Stream = "a b" }, `wire: batch: records[2].stream: invalid "a b"`, ErrInvalid),
		batchCase("stream long", func(b *Batch) { b.Records[0].Stream = long }, `wire: batch: records[0].stream: invalid "`+long+`"`, ErrInvalid),
		batchCase("key not UTF-8", func(b *Batch) { b.Records[0].Key = "\xff" }, "wire: batch: records[0].key: must be valid UTF-8 of at most 1024 bytes", ErrInvalid),
		batchCase("key long", func(b *Batch) { b.Records[0].Key = strings.Repeat("k", MaxKeyBytes+1) }, "wire: batch: records[0].key: must be valid UTF-8 of at most 1024 bytes", ErrInvalid),
		batchCase("id long", func(b *Batch) { b.Records[1].ID = strings.Repeat("é", MaxIDRunes+1) }, "wire: batch: records[1].id: must be valid UTF-8 of at most 128 characters", ErrInvalid),
		batchCase("id not UTF-8", func(b *Batch) { b.Records[1].ID = "a\xc0" }, "wire: batch: records[1].id: must be valid UTF-8 of at most 128 characters", ErrInvalid),
		batchCase("op", func(b *Batch) { b.Records[0].Op = 2 }, "wire: batch: records[0].op: unknown op 2", ErrInvalid),
		batchCase("schema version without schema", func(b *Batch) { b.Records[2].SchemaVersion = 1 }, "wire: batch: records[2].schema_version: is 1 without a schema", ErrInvalid),
		batchCase("schema without version", func(b *Batch) { b.Records[0].SchemaVersion = 0 }, `wire: batch: records[0].schema_version: must be > 0 with schema "reading"`, ErrInvalid),
		batchCase("schema name", func(b *Batch) { b.Records[0].Schema = "reading@1" }, `wire: batch: records[0].schema: invalid "reading@1"`, ErrInvalid),
		// Without validation, missing data is written as null.
		batchCase("data missing", func(b *Batch) { b.Records[0].Data = nil }, "wire: batch: records[0].data: missing", ErrInvalid).decodes("-", nil),
		batchCase("data truncated", func(b *Batch) { b.Records[0].Data = b.Records[0].Data[:3] }, "wire: batch: records[0].data: not one well-formed CBOR item: unexpected EOF", ErrInvalid).
			decodes("wire: batch: records[0].data: malformed: unexpected EOF", ErrMalformed),
		batchCase("data two items", func(b *Batch) { b.Records[0].Data = []byte{0x01, 0x02} }, "wire: batch: records[0].data: not one well-formed CBOR item: cbor: 1 bytes of extraneous data starting at index 1", ErrInvalid).
			decodes("wire: batch: records[1]: malformed: want an array, got an unsigned integer", ErrMalformed),
		batchCase("data too deep", func(b *Batch) { b.Records[0].Data = nested(MaxDataDepth + 1) }, "wire: batch: records[0].data: not one well-formed CBOR item: cbor: exceeded max nested level 64", ErrInvalid).
			decodes("wire: batch: records[0].data: malformed: cbor: exceeded max nested level 64", ErrMalformed),
		batchCase("data not too deep", func(b *Batch) { b.Records[0].Data = nested(MaxDataDepth); b.Records[1].Op = 7 }, "wire: batch: records[1].op: unknown op 7", ErrInvalid),
		batchCase("record too large", func(b *Batch) { b.Records[0].Data = textItem(MaxRecordBytes) }, "wire: batch: records[0]: record of 786475 bytes, more than 786432", ErrTooLarge),
		batchCase("drop empty", func(b *Batch) { b.Drops = []Range{{First: 5, Last: 4}} }, "wire: batch: drops[0]: bad range [5,4]", ErrInvalid),
		batchCase("drop at 0", func(b *Batch) { b.Drops = []Range{{First: 0, Last: 4}} }, "wire: batch: drops[0]: bad range [0,4]", ErrInvalid),
		batchCase("drops overlap", func(b *Batch) { b.Drops = []Range{{First: 1, Last: 10}, {First: 10, Last: 20}} }, "wire: batch: drops[1]: range [10,20] not after the previous one, which ends at 10", ErrInvalid),
		batchCase("drops out of order", func(b *Batch) { b.Drops = []Range{{First: 21, Last: 30}, {First: 1, Last: 20}} }, "wire: batch: drops[1]: range [1,20] not after the previous one, which ends at 30", ErrInvalid),
		batchCase("record inside a drop", func(b *Batch) { b.Drops = []Range{{First: 1, Last: 10}, {First: 42, Last: 42}} }, "wire: batch: records[1].seq: 42 inside drops[1]", ErrInvalid),
		batchCase("too many drops", func(b *Batch) { b.Drops = manyDrops(MaxDrops + 1) }, "wire: batch: drops: 1001 drops, more than 1000", ErrTooLarge),
		batchCase("too many records", func(b *Batch) { b.Records = manyRecords(MaxRecords + 1); b.First, b.Last = 1, MaxRecords+1 },
			"wire: batch: records: 10001 records, more than 10000", ErrTooLarge),
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := testBatch(t)
			c.mutate(b)
			check := func(what string, err error) {
				t.Helper()
				if err == nil || err.Error() != c.want || !errors.Is(err, c.is) {
					t.Errorf("%s: got %v, want %q (%v)", what, err, c.want, c.is)
				}
				var fe *FieldError
				if !errors.As(err, &fe) {
					t.Errorf("%s: %T is not a *FieldError", what, err)
				}
			}
			check("Validate", b.Validate())
			out, err := EncodeBatch([]byte("x"), b, CompressionZstd)
			check("EncodeBatch", err)
			if string(out) != "x" {
				t.Errorf("EncodeBatch wrote %q on error", out)
			}
			if c.decodeWant == "-" {
				return
			}
			if c.decodeWant != "" {
				c.want, c.is = c.decodeWant, c.decodeIs
			}
			payload := append([]byte{CompressionNone}, appendBatch(nil, b)...)
			_, err = DecodeBatch(payload)
			check("DecodeBatch", err)
		})
	}
}

// nested returns depth nested one-element arrays around 0.
func nested(depth int) []byte {
	b := make([]byte, depth+1)
	for i := range depth {
		b[i] = majorArray | 1
	}
	return b
}

// textItem returns a CBOR text string of n bytes.
func textItem(n int) []byte {
	return appendText(nil, strings.Repeat("a", n))
}

func manyDrops(n int) []Range {
	d := make([]Range, n)
	for i := range d {
		d[i] = Range{First: uint64(2*i + 1), Last: uint64(2*i + 1)}
	}
	return d
}

func manyRecords(n int) []Record {
	r := make([]Record, n)
	for i := range r {
		r[i] = Record{Seq: uint64(i + 1), Stream: "s", Data: []byte{0}}
	}
	return r
}

// TestAckValidation does for acks what TestBatchValidation does for batches.
func TestAckValidation(t *testing.T) {
	cases := []validationCase{
		vc("version", func(m any) { m.(*Ack).V = 3 }, "wire: ack: v: version 3, want 1", ErrVersion),
		vc("device", func(m any) { m.(*Ack).Device = "-x y" }, `wire: ack: device: invalid "-x y"`, ErrInvalid),
		vc("epoch", func(m any) { m.(*Ack).Epoch = 0 }, "wire: ack: epoch: must be in 1..2^63-1, got 0", ErrInvalid),
		vc("status", func(m any) { m.(*Ack).Status = 3 }, "wire: ack: status: unknown status 3", ErrInvalid),
		vc("sink id empty", func(m any) { m.(*Ack).SinkID = "" }, "wire: ack: sink_id: must be valid UTF-8 of 1..128 bytes", ErrInvalid),
		vc("sink id long", func(m any) { m.(*Ack).SinkID = strings.Repeat("s", MaxSinkIDBytes+1) }, "wire: ack: sink_id: must be valid UTF-8 of 1..128 bytes", ErrInvalid),
		vc("parked empty range", func(m any) { m.(*Ack).Parked[0].First = 43 }, "wire: ack: parked[0]: bad range [43,42]", ErrInvalid),
		vc("parked at 0", func(m any) { m.(*Ack).Parked[0].First = 0 }, "wire: ack: parked[0]: bad range [0,42]", ErrInvalid),
		vc("parked past applied", func(m any) { m.(*Ack).AppliedThrough = 41 }, "wire: ack: parked[0]: range [42,42] past applied_through 41", ErrInvalid),
		vc("parked overlap", func(m any) {
			a := m.(*Ack)
			a.Parked = append(a.Parked, Parked{First: 42, Last: 43})
		}, "wire: ack: parked[1]: range [42,43] not after the previous one, which ends at 42", ErrInvalid),
		vc("parked reason", func(m any) { m.(*Ack).Parked[0].Reason = strings.Repeat("r", MaxReasonBytes+1) }, "wire: ack: parked[0].reason: must be valid UTF-8 of at most 1024 bytes", ErrInvalid),
		vc("too many parked", func(m any) {
			a := m.(*Ack)
			a.Parked = nil
			for i := range MaxParked + 1 {
				a.Parked = append(a.Parked, Parked{First: uint64(2*i + 1), Last: uint64(2*i + 1)})
			}
			a.AppliedThrough = 1 << 20
		}, "wire: ack: parked: 1001 ranges, more than 1000", ErrTooLarge).
			decodes("wire: ack: cbor: exceeded max number of elements 1000 for CBOR array", ErrTooLarge),
	}
	runControlCases(t, "ack", func() any { return testAck(StatusOK) }, cases)
}

func TestStateValidation(t *testing.T) {
	cases := []validationCase{
		vc("version", func(m any) { m.(*State).V = 0 }, "wire: state: v: version 0, want 1", ErrVersion),
		vc("device", func(m any) { m.(*State).Device = "_x" }, `wire: state: device: invalid "_x"`, ErrInvalid),
		vc("boot id", func(m any) { m.(*State).BootID = "" }, `wire: state: boot_id: invalid ""`, ErrInvalid),
		vc("epoch", func(m any) { m.(*State).Epoch = 1 << 63 }, "wire: state: epoch: must be 0 or in 1..2^63-1, got 9223372036854775808", ErrInvalid),
		vc("watermark", func(m any) { m.(*State).Watermark = 1044 }, "wire: state: watermark: 1044 past head 1043", ErrInvalid),
	}
	runControlCases(t, "state", func() any { return testState(true) }, cases)
}

func TestCmdValidation(t *testing.T) {
	cases := []validationCase{
		vc("version", func(m any) { m.(*Cmd).V = 2 }, "wire: cmd: v: version 2, want 1", ErrVersion),
		vc("id", func(m any) { m.(*Cmd).ID = "" }, `wire: cmd: id: invalid ""`, ErrInvalid),
		vc("name", func(m any) { m.(*Cmd).Name = "re send" }, `wire: cmd: name: invalid "re send"`, ErrInvalid),
		vc("from", func(m any) { m.(*Cmd).From = 0 }, "wire: cmd: from: must be >= 1 for resend", ErrInvalid),
		vc("epoch", func(m any) { m.(*Cmd).Epoch = 1 << 63 }, "wire: cmd: epoch: must be 0 or in 1..2^63-1, got 9223372036854775808", ErrInvalid),
		vc("arg name", func(m any) { m.(*Cmd).Args["b c"] = "x" }, `wire: cmd: args: invalid name "b c"`, ErrInvalid),
		vc("arg value", func(m any) { m.(*Cmd).Args["reason"] = "\xff" }, "wire: cmd: args[reason]: must be valid UTF-8 of at most 1024 bytes", ErrInvalid).
			decodes("wire: cmd: malformed: cbor: invalid UTF-8 string", ErrMalformed),
		vc("too many args", func(m any) {
			c := m.(*Cmd)
			for i := range MaxArgs {
				c.Args["a"+itoa(i)] = ""
			}
		}, "wire: cmd: args: 17 arguments, more than 16", ErrTooLarge),
	}
	runControlCases(t, "cmd", func() any { return testCmd() }, cases)
}

func TestConfigValidation(t *testing.T) {
	cases := []validationCase{
		vc("version", func(m any) { m.(*Config).V = 9 }, "wire: config: v: version 9, want 1", ErrVersion),
		vc("target", func(m any) { m.(*Config).Target = "_all" }, `wire: config: target: invalid "_all"`, ErrInvalid),
		vc("config version", func(m any) { m.(*Config).Version = 0 }, "wire: config: version: must be >= 1", ErrInvalid),
		vc("body", func(m any) { m.(*Config).Body = []byte("a: \xff") }, "wire: config: body: not valid UTF-8", ErrInvalid),
		vc("key id without signature", func(m any) { m.(*Config).Signature = nil }, "wire: config: signature: 0 bytes, want 64", ErrInvalid),
		vc("signature without key id", func(m any) { m.(*Config).KeyID = "" }, `wire: config: key_id: invalid ""`, ErrInvalid),
		vc("key id", func(m any) { m.(*Config).KeyID = "a:b" }, `wire: config: key_id: invalid "a:b"`, ErrInvalid),
		vc("signature length", func(m any) { m.(*Config).Signature = m.(*Config).Signature[:63] }, "wire: config: signature: 63 bytes, want 64", ErrInvalid),
		vc("too large", func(m any) { m.(*Config).Body = []byte(strings.Repeat("#", MaxControlBytes)) }, "wire: config: 262259 bytes, more than 262144", ErrTooLarge),
	}
	runControlCases(t, "config", func() any { return testConfig(t, true) }, cases)
}

func TestConfigStatusValidation(t *testing.T) {
	cases := []validationCase{
		vc("version", func(m any) { m.(*ConfigStatus).V = 2 }, "wire: config status: v: version 2, want 1", ErrVersion),
		vc("device", func(m any) { m.(*ConfigStatus).Device = "" }, `wire: config status: device: invalid ""`, ErrInvalid),
		vc("error when applied", func(m any) { m.(*ConfigStatus).Error = "x" }, "wire: config status: error: must be empty when applied", ErrInvalid),
		vc("no error when refused", func(m any) { m.(*ConfigStatus).Applied = false }, "wire: config status: error: must say why when not applied", ErrInvalid),
		vc("error long", func(m any) {
			s := m.(*ConfigStatus)
			s.Applied, s.Error = false, strings.Repeat("e", MaxReasonBytes+1)
		}, "wire: config status: error: must be valid UTF-8 of at most 1024 bytes", ErrInvalid),
	}
	runControlCases(t, "config status", func() any { return testConfigStatus(true) }, cases)
}

// runControlCases checks Validate, the encoder and the decoder (of the
// message encoded without validation) for each case.
func runControlCases(t *testing.T, kind string, valid func() any, cases []validationCase) {
	t.Helper()
	decodeKind := strings.ReplaceAll(kind, " ", "_")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg := valid()
			c.mutate(msg)
			check := func(what string, err error) {
				t.Helper()
				if err == nil || err.Error() != c.want || !errors.Is(err, c.is) {
					t.Errorf("%s: got %v, want %q (%v)", what, err, c.want, c.is)
				}
			}
			if c.is != ErrTooLarge || !strings.HasSuffix(c.want, "more than 262144") {
				check("Validate", msg.(interface{ Validate() error }).Validate())
			}
			out, err := encodeAny([]byte("x"), msg, 0)
			check("encode", err)
			if string(out) != "x" {
				t.Errorf("encode wrote %q on error", out)
			}
			if c.decodeWant == "-" {
				return
			}
			if c.decodeWant != "" {
				c.want, c.is = c.decodeWant, c.decodeIs
			}
			payload, err := encMode.Marshal(msg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = decodeAny(decodeKind, payload)
			check("decode", err)
		})
	}
}

func TestValidData(t *testing.T) {
	cases := []struct {
		name string
		data []byte
		want string // "" when valid
	}{
		{"map", []byte{0xa1, 0x61, 't', 0xf9, 0x4d, 0x60}, ""},
		{"null", []byte{0xf6}, ""},
		{"deepest", nested(MaxDataDepth), ""},
		{"indefinite and tagged", []byte{0xd8, 0x20, 0x7f, 0x61, 'x', 0xff}, ""},
		{"empty", nil, "wire: data: missing"},
		{"two items", []byte{1, 2}, "wire: data: not one well-formed CBOR item: cbor: 1 bytes of extraneous data starting at index 1"},
		{"truncated", []byte{0x62, 'a'}, "wire: data: not one well-formed CBOR item: unexpected EOF"},
		{"too deep", nested(MaxDataDepth + 1), "wire: data: not one well-formed CBOR item: cbor: exceeded max nested level 64"},
		{"lone break", []byte{0xff}, "wire: data: not one well-formed CBOR item: cbor: unexpected \"break\" code"},
	}
	for _, c := range cases {
		err := ValidData(c.data)
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if err == nil || err.Error() != c.want || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
}
