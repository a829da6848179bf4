package wire

import (
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/edgesync/edgesync/internal/cbormsg"
)

// EncodeBatch validates b and appends its payload to dst: the compression
// byte, then the core deterministic CBOR body, compressed with zstd when
// compression is CompressionZstd. It returns dst unchanged and an error
// matching ErrTooLarge when b has more than MaxRecords records or MaxDrops
// drops, when its body is over MaxDecodedBytes or when the payload would be
// over MaxBatchBytes, so that the caller can split the batch; an error
// matching ErrInvalid when b breaks a rule; ErrCompression for an unknown
// compression. It is safe for concurrent use.
func EncodeBatch(dst []byte, b *Batch, compression byte) ([]byte, error) {
	if compression != CompressionNone && compression != CompressionZstd {
		return dst, &FieldError{Message: "batch", Field: "compression", Reason: "unknown compression " + itoa(int(compression)), Err: ErrCompression}
	}
	if err := b.Validate(); err != nil {
		return dst, err
	}
	size := b.BodySize()
	if size > MaxDecodedBytes {
		return dst, tooLarge("batch", "", fmt.Sprintf("body of %d bytes, more than %d", size, MaxDecodedBytes))
	}
	n0 := len(dst)
	if compression == CompressionNone {
		if 1+size > MaxBatchBytes {
			return dst, tooLarge("batch", "", fmt.Sprintf("payload of %d bytes, more than %d", 1+size, MaxBatchBytes))
		}
		dst = slices.Grow(dst, 1+size)
		dst = append(dst, CompressionNone)
		return appendBatch(dst, b), nil
	}
	buf := getBuffer(size)
	body := appendBatch(buf.b[:0], b)
	dst = append(dst, CompressionZstd)
	dst = zstdEncoder().EncodeAll(body, dst)
	buf.b = body
	putBuffer(buf)
	if n := len(dst) - n0; n > MaxBatchBytes {
		return dst[:n0], tooLarge("batch", "", fmt.Sprintf("payload of %d bytes, more than %d", n, MaxBatchBytes))
	}
	return dst, nil
}

// DecodeBatch decodes and validates a payload published on {p}/{d}/up. The
// caller still has to check that Device is the device of the topic.
func DecodeBatch(payload []byte) (*Batch, error) {
	b := new(Batch)
	if err := DecodeBatchInto(payload, b); err != nil {
		return nil, err
	}
	return b, nil
}

// DecodeBatchInto is DecodeBatch into b, reusing the memory of b.Records
// and b.Drops: slices of b kept from an earlier call are overwritten. The
// Data of all records share one new buffer. On error b holds no valid batch.
func DecodeBatchInto(payload []byte, b *Batch) error {
	if len(payload) > MaxBatchBytes {
		return tooLarge("batch", "", fmt.Sprintf("payload of %d bytes, more than %d", len(payload), MaxBatchBytes))
	}
	if len(payload) < 2 {
		return malformed("batch", fmt.Errorf("payload of %d bytes", len(payload)))
	}
	var body []byte
	switch payload[0] {
	case CompressionNone:
		body = payload[1:]
	case CompressionZstd:
		out, buf, err := unzstd(payload[1:])
		if err != nil {
			return err
		}
		defer putBuffer(buf)
		body = out
	default:
		return &FieldError{Message: "batch", Field: "compression", Reason: "unknown compression " + itoa(int(payload[0])), Err: ErrCompression}
	}
	if err := decodeBatchBody(body, b); err != nil {
		return err
	}
	return b.validate(false) // the decoder has checked every record's data
}

// Validate reports the first rule b breaks, as a *FieldError naming the
// field: V is Version; Device is a valid device id; Epoch is in
// 1..2^63-1; at most MaxRecords records with strictly increasing seq >= 1,
// each valid (see Record.Validate); First and Last are the seq of the first
// and last record (both 0 without records); at most MaxDrops drops, each
// with 1 <= First <= Last, ascending and not overlapping each other or any
// record.
func (b *Batch) Validate() error { return b.validate(true) }

func (b *Batch) validate(checkData bool) error {
	const m = "batch"
	if b.V != Version {
		return versionError(m, uint64(b.V))
	}
	if !ValidDeviceID(b.Device) {
		return invalidValue(m, "device", b.Device)
	}
	if !ValidEpoch(b.Epoch) {
		return invalid(m, "epoch", "must be in 1..2^63-1, got "+utoa(b.Epoch))
	}
	if len(b.Records) > MaxRecords {
		return tooLarge(m, "records", itoa(len(b.Records))+" records, more than "+itoa(MaxRecords))
	}
	if len(b.Drops) > MaxDrops {
		return tooLarge(m, "drops", itoa(len(b.Drops))+" drops, more than "+itoa(MaxDrops))
	}
	var first, last uint64
	if n := len(b.Records); n > 0 {
		first, last = b.Records[0].Seq, b.Records[n-1].Seq
	}
	if b.First != first {
		return invalid(m, "first", "is "+utoa(b.First)+", want "+utoa(first)+" (the first record's seq)")
	}
	if b.Last != last {
		return invalid(m, "last", "is "+utoa(b.Last)+", want "+utoa(last)+" (the last record's seq)")
	}
	var prev uint64
	for i := range b.Drops {
		d := b.Drops[i]
		if d.First == 0 || d.First > d.Last {
			return invalid(m, indexed("drops", i, ""), "bad range ["+utoa(d.First)+","+utoa(d.Last)+"]")
		}
		if i > 0 && d.First <= prev {
			return invalid(m, indexed("drops", i, ""), "range ["+utoa(d.First)+","+utoa(d.Last)+"] not after the previous one, which ends at "+utoa(prev))
		}
		prev = d.Last
	}
	prev = 0
	di := 0 // the first drop that does not end before the current record
	for i := range b.Records {
		r := &b.Records[i]
		if r.Seq == 0 {
			return invalid(m, indexed("records", i, "seq"), "must be >= 1")
		}
		if i > 0 && r.Seq <= prev {
			return invalid(m, indexed("records", i, "seq"), utoa(r.Seq)+" not after "+utoa(prev))
		}
		prev = r.Seq
		for di < len(b.Drops) && b.Drops[di].Last < r.Seq {
			di++
		}
		if di < len(b.Drops) && b.Drops[di].First <= r.Seq {
			return invalid(m, indexed("records", i, "seq"), utoa(r.Seq)+" inside drops["+itoa(di)+"]")
		}
		if err := r.validate(m, i, checkData); err != nil {
			return err
		}
	}
	return nil
}

// indexed names a field of an element of a list: "records[3].stream", or
// "records[3]" when field is empty. For a record on its own (i < 0) it is
// just field.
func indexed(list string, i int, field string) string {
	if i < 0 {
		return field
	}
	s := list + "[" + itoa(i) + "]"
	if field != "" {
		s += "." + field
	}
	return s
}

// Validate reports the first rule r breaks, as a *FieldError naming the
// field: Stream is 1..64 characters of [A-Za-z0-9._-]; Key is valid UTF-8 of
// at most MaxKeyBytes; ID is empty or valid UTF-8 of 1..MaxIDRunes
// characters; Op is OpUpsert or OpDelete; Schema is empty with
// SchemaVersion 0, or a valid schema name with SchemaVersion > 0; Data is
// one well-formed CBOR item (see ValidData). Seq is checked by
// Batch.Validate. Capture can call it to refuse at ingest what the agent
// could not send.
func (r *Record) Validate() error { return r.validate("record", -1, true) }

// validate checks records[i], or a record on its own when i < 0.
func (r *Record) validate(m string, i int, checkData bool) error {
	f := func(field string) string { return indexed("records", i, field) }
	if !ValidStream(r.Stream) {
		return invalidValue(m, f("stream"), r.Stream)
	}
	if !validText(r.Key, MaxKeyBytes) {
		return invalid(m, f("key"), "must be valid UTF-8 of at most "+itoa(MaxKeyBytes)+" bytes")
	}
	if !utf8.ValidString(r.ID) || utf8.RuneCountInString(r.ID) > MaxIDRunes {
		return invalid(m, f("id"), "must be valid UTF-8 of at most "+itoa(MaxIDRunes)+" characters")
	}
	if r.Op != OpUpsert && r.Op != OpDelete {
		return invalid(m, f("op"), "unknown op "+itoa(int(r.Op)))
	}
	if r.Schema == "" {
		if r.SchemaVersion != 0 {
			return invalid(m, f("schema_version"), "is "+utoa(uint64(r.SchemaVersion))+" without a schema")
		}
	} else {
		if !ValidSchemaName(r.Schema) {
			return invalidValue(m, f("schema"), r.Schema)
		}
		if r.SchemaVersion == 0 {
			return invalid(m, f("schema_version"), "must be > 0 with schema "+quote(r.Schema))
		}
	}
	if len(r.Data) == 0 {
		return invalid(m, f("data"), "missing")
	}
	if n := r.Size(); n > MaxRecordBytes {
		return tooLarge(m, f(""), "record of "+itoa(n)+" bytes, more than "+itoa(MaxRecordBytes))
	}
	if !checkData {
		return nil
	}
	if err := cbormsg.Wellformed(r.Data, dataLimits); err != nil {
		return invalid(m, f("data"), "not one well-formed CBOR item: "+err.Error())
	}
	return nil
}

// MaxRecordBytes is the largest record, as Record.Size counts it: a batch of
// one record this large and MaxDrops drops still fits in MaxBatchBytes,
// compressed or not. Capture must refuse larger records.
const MaxRecordBytes = 768 << 10

// Size is the number of bytes r takes in a batch body, before compression.
// A batch body is BodySize() bytes: a header of at most a few hundred bytes
// (plus 19 bytes a drop) and the sum of its records' sizes.
func (r *Record) Size() int {
	return 1 + uintLen(r.Seq) + textLen(r.Stream) + textLen(r.Key) + textLen(r.ID) +
		uintLen(uint64(r.Op)) + textLen(r.Schema) + uintLen(uint64(r.SchemaVersion)) +
		intLen(r.CapturedAt) + max(len(r.Data), 1)
}

// BodySize is the number of bytes of b's CBOR body, before compression.
func (b *Batch) BodySize() int {
	n := 1 + // map head: at most 10 pairs
		1 + uintLen(uint64(b.V)) +
		1 + textLen(b.Device) +
		1 + uintLen(b.Epoch) +
		1 + uintLen(b.First) +
		1 + uintLen(b.Last) +
		1 + uintLen(b.Acked) +
		1 + intLen(b.SentAt) +
		1 + uintLen(b.SendID)
	if len(b.Drops) > 0 {
		n += 1 + headLen(uint64(len(b.Drops)))
		for _, d := range b.Drops {
			n += 1 + uintLen(d.First) + uintLen(d.Last)
		}
	}
	if len(b.Records) > 0 {
		n += 1 + headLen(uint64(len(b.Records)))
		for i := range b.Records {
			n += b.Records[i].Size()
		}
	}
	return n
}

// appendBatch writes b as the CBOR encoding/deterministic encoding of the
// Batch struct would (TestAppendBatchMatchesLibrary checks it): a map with
// integer keys in ascending order, Drops and Records left out when empty.
func appendBatch(dst []byte, b *Batch) []byte {
	pairs := uint64(8)
	if len(b.Drops) > 0 {
		pairs++
	}
	if len(b.Records) > 0 {
		pairs++
	}
	dst = appendHead(dst, majorMap, pairs)
	dst = append(dst, 1)
	dst = appendHead(dst, majorUint, uint64(b.V))
	dst = append(dst, 2)
	dst = appendText(dst, b.Device)
	dst = append(dst, 3)
	dst = appendHead(dst, majorUint, b.Epoch)
	dst = append(dst, 4)
	dst = appendHead(dst, majorUint, b.First)
	dst = append(dst, 5)
	dst = appendHead(dst, majorUint, b.Last)
	dst = append(dst, 6)
	dst = appendHead(dst, majorUint, b.Acked)
	if len(b.Drops) > 0 {
		dst = append(dst, 7)
		dst = appendHead(dst, majorArray, uint64(len(b.Drops)))
		for _, d := range b.Drops {
			dst = append(dst, majorArray|2)
			dst = appendHead(dst, majorUint, d.First)
			dst = appendHead(dst, majorUint, d.Last)
		}
	}
	dst = append(dst, 8)
	dst = appendInt(dst, b.SentAt)
	dst = append(dst, 9)
	dst = appendHead(dst, majorUint, b.SendID)
	if len(b.Records) > 0 {
		dst = append(dst, 10)
		dst = appendHead(dst, majorArray, uint64(len(b.Records)))
		for i := range b.Records {
			dst = appendRecord(dst, &b.Records[i])
		}
	}
	return dst
}

func appendRecord(dst []byte, r *Record) []byte {
	dst = append(dst, majorArray|9)
	dst = appendHead(dst, majorUint, r.Seq)
	dst = appendText(dst, r.Stream)
	dst = appendText(dst, r.Key)
	dst = appendText(dst, r.ID)
	dst = appendHead(dst, majorUint, uint64(r.Op))
	dst = appendText(dst, r.Schema)
	dst = appendHead(dst, majorUint, uint64(r.SchemaVersion))
	dst = appendInt(dst, r.CapturedAt)
	if len(r.Data) == 0 {
		return append(dst, 0xf6) // null, as cbor.RawMessage encodes nil
	}
	return append(dst, r.Data...)
}

// CBOR major types, shifted into the initial byte.
const (
	majorUint  = 0 << 5
	majorNeg   = 1 << 5
	majorText  = 3 << 5
	majorArray = 4 << 5
	majorMap   = 5 << 5
)

// appendHead writes a CBOR head in its shortest form.
func appendHead(dst []byte, major byte, n uint64) []byte { return cbormsg.AppendHead(dst, major, n) }

func appendText(dst []byte, s string) []byte {
	return append(appendHead(dst, majorText, uint64(len(s))), s...)
}

func appendInt(dst []byte, i int64) []byte {
	if i < 0 {
		return appendHead(dst, majorNeg, uint64(-(i + 1)))
	}
	return appendHead(dst, majorUint, uint64(i))
}

// headLen is the length of a CBOR head carrying n.
func headLen(n uint64) int {
	switch {
	case n < 24:
		return 1
	case n <= 0xff:
		return 2
	case n <= 0xffff:
		return 3
	case n <= 0xffffffff:
		return 5
	}
	return 9
}

func uintLen(n uint64) int { return headLen(n) }

func intLen(i int64) int {
	if i < 0 {
		return headLen(uint64(-(i + 1)))
	}
	return headLen(uint64(i))
}

func textLen(s string) int { return headLen(uint64(len(s))) + len(s) }
