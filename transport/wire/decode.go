package wire

import (
	"errors"
	"math"

	"github.com/edgesync/edgesync/internal/cbormsg"
)

// decodeBatchBody parses a batch body into b. It is written by hand, not
// with the reflection decoder of package cbor, for two reasons: it checks
// the number of records and drops before allocating room for them (the
// reflection decoder allocates what an array head announces, a Record for
// every byte of body), and it makes few allocations (the batch's strings
// and one buffer shared by every record's data).
//
// It accepts what package cbor would decode into Batch with the stricter
// rules of this protocol: map keys are unsigned integers, each at most
// once; the message's own arrays, maps and strings have definite lengths
// and carry no tags (Record.Data and the values of unknown keys may hold
// any well-formed item within MaxDataDepth); nothing follows the map.
// TestDecodeMatchesLibrary and FuzzDecodeBatch check the agreement.
func decodeBatchBody(body []byte, b *Batch) error {
	r := bodyReader{b: body}
	*b = Batch{Records: b.Records[:0], Drops: b.Drops[:0]}
	r.batch(b)
	if r.err != nil {
		if r.sawV && r.v != Version {
			return versionError("batch", r.v)
		}
		return r.err
	}
	return nil
}

// bodyReader reads a batch body. Its methods stop at the first error, which
// they keep in err.
type bodyReader struct {
	b     []byte
	off   int
	err   *FieldError
	sawV  bool
	v     uint64
	arena []byte // every record's Data, one after the other
	// Where the reader is, for error messages: the list ("records",
	// "drops" or "" at the top) and the index in it.
	list  string
	index int
	// The last distinct values of the strings that repeat from record to
	// record, so that a batch allocates each only once.
	stream, schema string
}

// path names field where the reader is: "records[3].key".
func (r *bodyReader) path(field string) string {
	if r.list == "" {
		return field
	}
	return indexed(r.list, r.index, field)
}

func (r *bodyReader) fail(field, reason string) {
	if r.err == nil {
		r.err = &FieldError{Message: "batch", Field: r.path(field), Reason: "malformed: " + reason, Err: ErrMalformed}
	}
}

var majorNames = [8]string{"an unsigned integer", "a negative integer", "a byte string",
	"a text string", "an array", "a map", "a tag", "a simple value or float"}

// head reads a data item's head. It refuses indefinite lengths (and the
// break code) and reserved additional information.
func (r *bodyReader) head(field string) (major byte, arg uint64) {
	if r.err != nil {
		return 0xff, 0
	}
	if r.off >= len(r.b) {
		r.fail(field, "unexpected end of body")
		return 0xff, 0
	}
	ib := r.b[r.off]
	r.off++
	major, ai := ib>>5, ib&31
	switch {
	case ai < 24:
		return major, uint64(ai)
	case ai <= 27:
		n := 1 << (ai - 24)
		if len(r.b)-r.off < n {
			r.fail(field, "unexpected end of body")
			return 0xff, 0
		}
		for _, c := range r.b[r.off : r.off+n] {
			arg = arg<<8 | uint64(c)
		}
		r.off += n
		return major, arg
	case ai == 31:
		r.fail(field, "indefinite length")
	default:
		r.fail(field, "reserved additional information")
	}
	return 0xff, 0
}

// expect reads a head of the given major type.
func (r *bodyReader) expect(field string, want byte) uint64 {
	major, arg := r.head(field)
	if r.err == nil && major != want {
		r.fail(field, "want "+majorNames[want]+", got "+majorNames[major])
	}
	return arg
}

func (r *bodyReader) uint(field string) uint64 { return r.expect(field, majorUint>>5) }

func (r *bodyReader) int(field string) int64 {
	major, arg := r.head(field)
	if r.err != nil {
		return 0
	}
	if major != majorUint>>5 && major != majorNeg>>5 {
		r.fail(field, "want an integer, got "+majorNames[major])
		return 0
	}
	if arg > math.MaxInt64 {
		r.fail(field, "integer out of the int64 range")
		return 0
	}
	if major == majorNeg>>5 {
		return -1 - int64(arg)
	}
	return int64(arg)
}

// textBytes reads a text string and returns its bytes, aliasing the body.
func (r *bodyReader) textBytes(field string) []byte {
	n := r.expect(field, majorText>>5)
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)-r.off) {
		r.fail(field, "unexpected end of body")
		return nil
	}
	t := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return t
}

func (r *bodyReader) text(field string) string { return string(r.textBytes(field)) }

// cached reads a text string, reusing *last when it is the same.
func (r *bodyReader) cached(field string, last *string) string {
	t := r.textBytes(field)
	if string(t) != *last { // no allocation for the comparison
		*last = string(t)
	}
	return *last
}

// length reads the head of an array or map of at most limit elements or
// pairs; over it is ErrTooLarge.
func (r *bodyReader) length(field string, major byte, limit int, what string) int {
	n := r.expect(field, major)
	if r.err == nil && n > uint64(limit) {
		r.err = tooLarge("batch", r.path(field), utoa(n)+" "+what+", more than "+itoa(limit))
	}
	if r.err != nil {
		return 0
	}
	return int(n)
}

// item reads one well-formed data item of any kind, within MaxDataDepth,
// and returns it, aliasing the body. itemEnd finds where it ends;
// cbormsg.Wellformed then judges it, exactly as ValidData does on the
// encoder's side.
func (r *bodyReader) item(field string) []byte {
	if r.err != nil {
		return nil
	}
	if r.off >= len(r.b) {
		r.fail(field, "unexpected end of body")
		return nil
	}
	end := itemEnd(r.b, r.off, 0)
	if end < 0 {
		// Let cbormsg say what is wrong.
		err := cbormsg.Wellformed(r.b[r.off:], dataLimits)
		if err == nil {
			err = errors.New("not well formed")
		}
		r.fail(field, err.Error())
		return nil
	}
	t := r.b[r.off:end]
	if err := cbormsg.Wellformed(t, dataLimits); err != nil {
		r.fail(field, err.Error())
		return nil
	}
	r.off = end
	return t
}

// itemEnd returns the offset just past the CBOR data item that starts at
// off in b, or -1 when there is none. For a well-formed item it is exact;
// it is not a full check of well-formedness (cbormsg.Wellformed is), only
// bounded: it never reads past b, nests at most MaxDataDepth+1 deep and
// takes time linear in the item.
func itemEnd(b []byte, off, depth int) int {
	if depth > MaxDataDepth+1 || off >= len(b) {
		return -1
	}
	major, ai := b[off]>>5, b[off]&31
	off++
	var arg uint64
	switch {
	case ai < 24:
		arg = uint64(ai)
	case ai <= 27:
		n := 1 << (ai - 24)
		if len(b)-off < n {
			return -1
		}
		for _, c := range b[off : off+n] {
			arg = arg<<8 | uint64(c)
		}
		off += n
	case ai == 31 && major >= 2 && major <= 5:
		// Indefinite length: items (string chunks, elements, keys and
		// values) until the break code.
		for off < len(b) {
			if b[off] == 0xff {
				return off + 1
			}
			if off = itemEnd(b, off, depth+1); off < 0 {
				return -1
			}
		}
		return -1
	default:
		return -1
	}
	switch major {
	case 2, 3:
		if arg > uint64(len(b)-off) {
			return -1
		}
		return off + int(arg)
	case 4, 5:
		// Each item takes at least one byte.
		if arg > uint64(len(b)-off) || major == 5 && 2*arg > uint64(len(b)-off) {
			return -1
		}
		n := int(arg)
		if major == 5 {
			n *= 2
		}
		for range n {
			if off = itemEnd(b, off, depth+1); off < 0 {
				return -1
			}
		}
		return off
	case 6:
		return itemEnd(b, off, depth+1)
	}
	return off // integers, simple values, floats
}

// maxBatchPairs bounds the batch map: ten keys today, room for more.
const maxBatchPairs = 64

func (r *bodyReader) batch(b *Batch) {
	pairs := r.length("", majorMap>>5, maxBatchPairs, "map pairs")
	var seen uint64 // bit k: key k < 64 seen
	for range pairs {
		key := r.uint("")
		if r.err != nil {
			return
		}
		if key < 64 {
			if seen&(1<<key) != 0 {
				r.fail("", "duplicate map key "+utoa(key))
				return
			}
			seen |= 1 << key
		}
		switch key {
		case 1:
			r.v = r.uint("v")
			r.sawV = r.err == nil
			if r.v > math.MaxUint8 {
				r.err = versionError("batch", r.v)
				return
			}
			b.V = uint8(r.v)
		case 2:
			b.Device = r.text("device")
		case 3:
			b.Epoch = r.uint("epoch")
		case 4:
			b.First = r.uint("first")
		case 5:
			b.Last = r.uint("last")
		case 6:
			b.Acked = r.uint("acked")
		case 7:
			r.drops(b)
		case 8:
			b.SentAt = r.int("sent_at")
		case 9:
			b.SendID = r.uint("send_id")
		case 10:
			r.records(b)
		default:
			if key >= 64 {
				// Keys 1..63 are checked for duplicates above; larger ones
				// are not worth a set: the protocol will not need them.
				r.fail("", "map key "+utoa(key)+" out of range")
				return
			}
			r.item("unknown key " + utoa(key))
		}
		if r.err != nil {
			return
		}
	}
	if r.err == nil && r.off != len(r.b) {
		r.fail("", itoa(len(r.b)-r.off)+" bytes after the batch")
	}
}

// The fewest bytes a drop and a record take: a drop is an array of two
// integers, a record an array of nine items.
const (
	minDropBytes   = 3
	minRecordBytes = 10
)

// room checks that the rest of the body can hold n items of at least size
// bytes, before room for them is allocated.
func (r *bodyReader) room(field string, n, size int) {
	if r.err == nil && n > (len(r.b)-r.off)/size {
		r.fail(field, "unexpected end of body: "+itoa(n)+" announced")
	}
}

func (r *bodyReader) drops(b *Batch) {
	n := r.length("drops", majorArray>>5, MaxDrops, "drops")
	r.room("drops", n, minDropBytes)
	if r.err != nil {
		return
	}
	b.Drops = grow(b.Drops, n)
	r.list = "drops"
	for i := range b.Drops {
		r.index = i
		if r.expect("", majorArray>>5) != 2 && r.err == nil {
			r.fail("", "want an array of 2 elements")
		}
		b.Drops[i] = Range{First: r.uint("first"), Last: r.uint("last")}
		if r.err != nil {
			return
		}
	}
	r.list = ""
}

func (r *bodyReader) records(b *Batch) {
	n := r.length("records", majorArray>>5, MaxRecords, "records")
	r.room("records", n, minRecordBytes)
	if r.err != nil {
		return
	}
	b.Records = grow(b.Records, n)
	if n > 0 {
		// Data takes less than the rest of the body: the arena never grows.
		r.arena = make([]byte, 0, len(r.b)-r.off)
	}
	r.list = "records"
	for i := range b.Records {
		r.index = i
		if !r.record(&b.Records[i]) {
			return
		}
	}
	r.list = ""
}

func (r *bodyReader) record(rec *Record) bool {
	if r.expect("", majorArray>>5) != 9 && r.err == nil {
		r.fail("", "want an array of 9 elements")
	}
	rec.Seq = r.uint("seq")
	rec.Stream = r.cached("stream", &r.stream)
	rec.Key = r.text("key")
	rec.ID = r.text("id")
	op := r.uint("op")
	if op > math.MaxUint8 && r.err == nil {
		r.err = invalid("batch", r.path("op"), "unknown op "+utoa(op))
	}
	rec.Op = uint8(op)
	rec.Schema = r.cached("schema", &r.schema)
	sv := r.uint("schema_version")
	if sv > math.MaxUint32 && r.err == nil {
		r.err = invalid("batch", r.path("schema_version"), utoa(sv)+" out of the uint32 range")
	}
	rec.SchemaVersion = uint32(sv)
	rec.CapturedAt = r.int("captured_at")
	data := r.item("data")
	if r.err != nil {
		return false
	}
	start := len(r.arena)
	r.arena = append(r.arena, data...)
	rec.Data = r.arena[start:len(r.arena):len(r.arena)]
	return true
}

// grow returns s with length n, reusing its array when it can.
func grow[T any](s []T, n int) []T {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]T, n)
}
