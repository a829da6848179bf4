package capture

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/edgesync/edgesync/internal/jsoncbor"
	"github.com/edgesync/edgesync/outbox"
	"github.com/edgesync/edgesync/transport"
	"github.com/edgesync/edgesync/transport/wire"
)

// The content types of the ingest API. Parameters are allowed
// ("application/json; charset=utf-8"); a charset other than UTF-8 is refused.
// "application/ndjson" is accepted as a synonym of application/x-ndjson.
const (
	ContentTypeJSON   = "application/json"     // one record object or an array of them
	ContentTypeNDJSON = "application/x-ndjson" // one record object a line; blank lines ignored
	ContentTypeCBOR   = "application/cbor"     // one record map or an array of them
)

type format uint8

const (
	formatNone format = iota
	formatJSON
	formatNDJSON
	formatCBOR
)

// contentFormat maps a Content-Type header to a format, or an error matching
// ErrUnsupportedType.
func contentFormat(ct string) (format, error) {
	media, params, _ := strings.Cut(ct, ";")
	media = strings.TrimSpace(media)
	var f format
	switch {
	case strings.EqualFold(media, ContentTypeJSON):
		f = formatJSON
	case strings.EqualFold(media, ContentTypeNDJSON), strings.EqualFold(media, "application/ndjson"):
		f = formatNDJSON
	case strings.EqualFold(media, ContentTypeCBOR):
		f = formatCBOR
	default:
		if media == "" {
			return formatNone, fmt.Errorf("%w: none given; use %s, %s or %s", ErrUnsupportedType, ContentTypeJSON, ContentTypeNDJSON, ContentTypeCBOR)
		}
		return formatNone, fmt.Errorf("%w: %s; use %s, %s or %s", ErrUnsupportedType, quoteValue([]byte(media)), ContentTypeJSON, ContentTypeNDJSON, ContentTypeCBOR)
	}
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		k, v, _ := strings.Cut(p, "=")
		if !strings.EqualFold(strings.TrimSpace(k), "charset") {
			continue
		}
		v = strings.Trim(strings.TrimSpace(v), `"`)
		if !strings.EqualFold(v, "utf-8") && !strings.EqualFold(v, "utf8") {
			return formatNone, fmt.Errorf("%w: charset %s; records are UTF-8", ErrUnsupportedType, quoteValue([]byte(v)))
		}
	}
	return f, nil
}

// The fields of a record, in the order of the contract.
const (
	fStream = iota
	fKey
	fID
	fOp
	fSchema
	fTS
	fData
	nFields
)

var fieldNames = [nFields]string{"stream", "key", "id", "op", "schema", "ts", "data"}

const unknownFieldMsg = `unknown field; a record has "stream", "key", "id", "op", "schema", "ts" and "data"`

func lookupField(k []byte) int {
	switch string(k) {
	case "stream":
		return fStream
	case "key":
		return fKey
	case "id":
		return fID
	case "op":
		return fOp
	case "schema":
		return fSchema
	case "ts":
		return fTS
	case "data":
		return fData
	}
	return -1
}

// dataKind says how rawRecord.data is written.
type dataKind uint8

const (
	dataJSON dataKind = iota // JSON text
	dataCBOR                 // one CBOR item
	dataText                 // UTF-8 text that becomes a CBOR text string (MQTT payload: text)
)

// rawRecord is one record as found in the input, before validation.
type rawRecord struct {
	seen     uint8         // bit 1<<f: field f occurs (possibly as null)
	set      uint8         // bit 1<<f: field f has a value (not null)
	str      [fData][]byte // the string fields, unescaped
	data     []byte        // the data's JSON or CBOR text
	dataKind dataKind
	valOff   [nFields]int // offset of each field's value in the body
	valEnd   [nFields]int // end of each field's value
	start    int          // offset of '{' or of the CBOR map head
	headLen  int          // CBOR: length of the map head
	pairs    uint64       // number of fields
	indef    bool         // CBOR: indefinite-length map
}

// defaults fill fields that records leave out; validated where they are
// made (except stream and key derived from MQTT topics, checked per record).
type defaults struct {
	stream     string
	key        string
	schemaName string
	schemaVer  uint32
}

// parser turns request bodies into records. Its buffers are reused between
// calls to reset; records hold slices of arena, so a parser must not be
// reset while the records of its last parse are in use.
type parser struct {
	full    []byte // the whole body, for positions
	b       []byte // the part being scanned: full, or full up to the end of an NDJSON line
	pos     int
	format  format
	line    int // NDJSON: the current line; 0 otherwise
	now     int64
	def     *defaults
	recs    []outbox.Record
	arena   []byte // the CBOR data of every record
	scratch []byte // unescaped strings of the current record
	rr      rawRecord

	// visit, when set, replaces building a record (FillDefaults).
	visit func(i int, r *rawRecord) error

	// Interned strings: most requests repeat one stream and schema.
	stream     string
	schemaRaw  string
	schemaName string
	schemaVer  uint32
}

// reset forgets the records of the last parse and sets the capture time.
func (p *parser) reset(now time.Time) {
	p.recs = p.recs[:0]
	p.arena = p.arena[:0]
	p.now = now.UnixNano()
}

// Parse decodes the body of a POST /v1/records request with the given
// Content-Type into records, validated as the ingest API requires. now is
// the capture time of records without "ts". The request is all or nothing:
// on any error no record is returned.
//
// Errors: an error matching ErrUnsupportedType for the content type; a
// *RecordError naming the record's index and field, matching ErrInvalid or
// ErrTooLarge.
//
// Unknown fields are refused (a misspelt "stram" would otherwise lose the
// stream silently), and so is a field given twice. JSON null in key, id,
// op, schema or ts means the field is absent; "schema": "" means no schema.
// The records' Data share one buffer; Seq is zero.
func Parse(contentType string, body []byte, now time.Time) ([]outbox.Record, error) {
	return parse(contentType, body, now, nil)
}

// ParseDefaults is Parse where d fills the stream, key and schema of
// records that leave them out (or set them to null). d is validated first;
// its errors name the field ("stream: ...").
func ParseDefaults(contentType string, body []byte, now time.Time, d PutDefaults) ([]outbox.Record, error) {
	def, err := d.compile()
	if err != nil {
		return nil, err
	}
	return parse(contentType, body, now, def)
}

func parse(contentType string, body []byte, now time.Time, def *defaults) ([]outbox.Record, error) {
	f, err := contentFormat(contentType)
	if err != nil {
		return nil, err
	}
	p := &parser{}
	p.recs = make([]outbox.Record, 0, estimateRecords(f, body))
	p.arena = make([]byte, 0, len(body)+len(body)/4)
	p.reset(now)
	if err := p.parse(f, body, def); err != nil {
		return nil, err
	}
	return p.recs, nil
}

// estimateRecords guesses how many records body holds, to size the slice.
func estimateRecords(f format, body []byte) int {
	n := 1
	switch f {
	case formatNDJSON:
		n = bytes.Count(body, []byte{'\n'}) + 1
	case formatJSON:
		n = bytes.Count(body, []byte(`"data"`))
	case formatCBOR:
		n = bytes.Count(body, []byte("\x64data"))
	}
	return max(1, min(n, len(body)/16+1))
}

// parse appends the records of body to p.recs. On error p.recs and p.arena
// are as they were before.
func (p *parser) parse(f format, body []byte, def *defaults) error {
	nrecs, narena := len(p.recs), len(p.arena)
	p.full, p.b, p.pos, p.format, p.line, p.def = body, body, 0, f, 0, def
	var err error
	switch f {
	case formatJSON:
		err = p.jsonBody()
	case formatNDJSON:
		err = p.ndjsonBody()
	case formatCBOR:
		err = p.cborBody()
	default:
		err = fmt.Errorf("%w: unknown format", ErrUnsupportedType)
	}
	if err != nil {
		clear(p.recs[nrecs:])
		p.recs, p.arena = p.recs[:nrecs], p.arena[:narena]
	}
	p.full, p.b = nil, nil
	return err
}

// record hands one scanned record on.
func (p *parser) record(i int, r *rawRecord) error {
	if p.visit != nil {
		return p.visit(i, r)
	}
	return p.build(i, r)
}

// errors

func (p *parser) bodyErr(msg string) error {
	return &RecordError{Index: -1, Msg: msg, Err: ErrInvalid}
}

// lineCol returns the 1-based line and column (in bytes) of off in the body.
func (p *parser) lineCol(off int) (line, col int) {
	off = min(off, len(p.full))
	before := p.full[:off]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = off - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

// errAt reports an error at byte offset off of the body: with its line and
// column in JSON, its byte offset in CBOR.
func (p *parser) errAt(i int, field string, off int, msg string, kind error) error {
	e := &RecordError{Index: i, Field: field, Msg: msg, Err: kind}
	if p.format == formatCBOR {
		e.Msg += " at byte offset " + strconv.Itoa(off)
		return e
	}
	line, col := p.lineCol(off)
	e.Line = line
	e.Msg += " (column " + strconv.Itoa(col) + ")"
	return e
}

// fieldErr reports a bad field value of record i: index and field say
// where, and in NDJSON the line.
func (p *parser) fieldErr(i int, f int, msg string) error {
	return &RecordError{Index: i, Field: fieldNames[f], Line: p.line, Msg: msg, Err: ErrInvalid}
}

// syntax reports the byte at off as unexpected in the named context.
func (p *parser) syntax(i, off int, context string) error {
	if off >= len(p.b) {
		what := "unexpected end of input "
		if p.format == formatNDJSON {
			what = "unexpected end of line "
		}
		return p.errAt(i, "", off, what+context, ErrInvalid)
	}
	return p.errAt(i, "", off, "invalid character "+quoteChar(p.b[off])+" "+context, ErrInvalid)
}

func quoteChar(c byte) string {
	switch {
	case c == '\'':
		return `'\''`
	case c >= 0x20 && c < 0x7f:
		return "'" + string(rune(c)) + "'"
	}
	return fmt.Sprintf(`'\x%02x'`, c)
}

// build validates r and appends it to p.recs.
func (p *parser) build(i int, r *rawRecord) error {
	var rec outbox.Record
	d := p.def

	switch {
	case r.set&(1<<fStream) != 0:
		s := r.str[fStream]
		if !validName(s) {
			return p.fieldErr(i, fStream, "must match [A-Za-z0-9._-]{1,64}, got "+quoteValue(s))
		}
		if string(s) != p.stream {
			p.stream = string(s)
		}
		rec.Stream = p.stream
	case d != nil && d.stream != "":
		if !wire.ValidStream(d.stream) {
			return p.fieldErr(i, fStream, "must match [A-Za-z0-9._-]{1,64}, got "+quoteValue([]byte(d.stream)))
		}
		rec.Stream = d.stream
	default:
		return p.fieldErr(i, fStream, "missing; every record needs a stream")
	}

	switch {
	case r.set&(1<<fKey) != 0:
		k := r.str[fKey]
		if err := checkKey(k); err != "" {
			return p.fieldErr(i, fKey, err)
		}
		rec.Key = string(k)
	case d != nil && d.key != "":
		if err := checkKey([]byte(d.key)); err != "" {
			return p.fieldErr(i, fKey, err)
		}
		rec.Key = d.key
	}

	if r.set&(1<<fID) != 0 {
		id := r.str[fID]
		if !utf8.Valid(id) {
			return p.fieldErr(i, fID, "must be valid UTF-8")
		}
		if n := utf8.RuneCount(id); n < 1 || n > wire.MaxIDRunes {
			return p.fieldErr(i, fID, "must be 1.."+strconv.Itoa(wire.MaxIDRunes)+" characters, got "+strconv.Itoa(n))
		}
		rec.ID = string(id)
	}

	if r.set&(1<<fOp) != 0 {
		switch op := r.str[fOp]; string(op) {
		case "upsert":
			rec.Op = outbox.OpUpsert
		case "delete":
			rec.Op = outbox.OpDelete
		default:
			return p.fieldErr(i, fOp, `must be "upsert" or "delete", got `+quoteValue(op))
		}
	}

	switch {
	case r.set&(1<<fSchema) != 0:
		s := r.str[fSchema]
		if len(s) == 0 {
			break // "schema": "" is no schema
		}
		if string(s) != p.schemaRaw {
			name, ver, err := wire.ParseSchema(string(s))
			if err != nil {
				return p.fieldErr(i, fSchema, "must be NAME@VERSION (NAME of [A-Za-z0-9._-]{1,64}, VERSION a positive integer), got "+quoteValue(s))
			}
			p.schemaRaw, p.schemaName, p.schemaVer = string(s), name, ver
		}
		rec.Schema, rec.SchemaVersion = p.schemaName, p.schemaVer
	case d != nil && d.schemaName != "":
		rec.Schema, rec.SchemaVersion = d.schemaName, d.schemaVer
	}

	if r.set&(1<<fTS) != 0 {
		ns, msg := parseRFC3339(r.str[fTS])
		if msg != "" {
			return p.fieldErr(i, fTS, msg+", got "+quoteValue(r.str[fTS]))
		}
		rec.CapturedAt = ns
	} else {
		rec.CapturedAt = p.now
	}

	if r.set&(1<<fData) == 0 {
		return p.fieldErr(i, fData, "missing; every record needs data (null for none)")
	}
	start := len(p.arena)
	var err error
	switch r.dataKind {
	case dataJSON:
		p.arena, err = jsoncbor.FromJSON(p.arena, r.data)
	case dataCBOR:
		p.arena, err = jsoncbor.FromCBOR(p.arena, r.data)
	case dataText:
		p.arena, err = appendText(p.arena, r.data)
	}
	if err != nil {
		return p.dataErr(i, r, err)
	}
	if n := len(p.arena) - start; n > transport.MaxDataBytes {
		p.arena = p.arena[:start]
		return &RecordError{Index: i, Field: "data", Line: p.line, Err: ErrTooLarge,
			Msg: "is " + strconv.Itoa(n) + " bytes as CBOR, more than the limit of " + strconv.Itoa(transport.MaxDataBytes)}
	}
	rec.Data = p.arena[start:len(p.arena):len(p.arena)]
	p.recs = append(p.recs, rec)
	return nil
}

// dataErr turns a jsoncbor error in record i's data into a RecordError.
func (p *parser) dataErr(i int, r *rawRecord, err error) error {
	var je *jsoncbor.Error
	if !errors.As(err, &je) {
		return &RecordError{Index: i, Field: "data", Line: p.line, Msg: err.Error(), Err: ErrInvalid}
	}
	if errors.Is(err, jsoncbor.ErrTooLarge) {
		return &RecordError{Index: i, Field: "data", Line: p.line, Err: ErrTooLarge,
			Msg: "is " + strconv.Itoa(len(r.data)) + " bytes, more than the limit of " + strconv.Itoa(jsoncbor.MaxLen)}
	}
	if r.dataKind == dataText {
		return &RecordError{Index: i, Field: "data", Line: p.line, Msg: je.Msg, Err: ErrInvalid}
	}
	return p.errAt(i, "data", r.valOff[fData]+je.Offset, je.Msg, ErrInvalid)
}

// appendText appends b, which must be UTF-8, as a CBOR text string.
func appendText(dst, b []byte) ([]byte, error) {
	if len(b) > jsoncbor.MaxLen {
		return dst, &jsoncbor.Error{Offset: jsoncbor.MaxLen, Err: jsoncbor.ErrTooLarge, Msg: "too large"}
	}
	if !utf8.Valid(b) {
		return dst, &jsoncbor.Error{Err: jsoncbor.ErrInvalidUTF8, Msg: "payload is not valid UTF-8 text"}
	}
	dst = appendCBORHead(dst, 3, uint64(len(b)))
	return append(dst, b...), nil
}

// appendCBORHead appends the shortest head of major type major with argument n.
func appendCBORHead(dst []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(dst, m|byte(n))
	case n <= 0xff:
		return append(dst, m|24, byte(n))
	case n <= 0xffff:
		return append(dst, m|25, byte(n>>8), byte(n))
	case n <= 0xffffffff:
		return append(dst, m|26, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, m|27, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// validName reports whether s is 1..64 bytes of [A-Za-z0-9._-], the rule of
// wire.ValidStream (without converting to a string).
func validName(s []byte) bool {
	if len(s) == 0 || len(s) > wire.MaxNameLen {
		return false
	}
	for _, c := range s {
		if !nameByte(c) {
			return false
		}
	}
	return true
}

// checkKey returns what is wrong with a key, or "".
func checkKey(k []byte) string {
	if len(k) > wire.MaxKeyBytes {
		return "must be at most " + strconv.Itoa(wire.MaxKeyBytes) + " bytes, got " + strconv.Itoa(len(k))
	}
	if !utf8.Valid(k) {
		return "must be valid UTF-8"
	}
	return ""
}

// parseRFC3339 reads an RFC 3339 date-time (2026-11-26T10:00:00Z, with
// optional fraction and a numeric offset; T and Z in either case) as unix
// nanoseconds, or returns what is wrong.
func parseRFC3339(b []byte) (int64, string) {
	const bad = "must be an RFC 3339 time such as 2026-11-26T10:00:00Z"
	// YYYY-MM-DDTHH:MM:SS
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || (b[10] != 'T' && b[10] != 't') || b[13] != ':' || b[16] != ':' {
		return 0, bad
	}
	year, ok1 := digits(b[0:4])
	month, ok2 := digits(b[5:7])
	day, ok3 := digits(b[8:10])
	hour, ok4 := digits(b[11:13])
	minute, ok5 := digits(b[14:16])
	sec, ok6 := digits(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return 0, bad
	}
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 60 {
		return 0, bad + " (a field is out of range)"
	}
	rest := b[19:]
	nsec := 0
	if rest[0] == '.' {
		j := 1
		scale := 100000000
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			nsec += int(rest[j]-'0') * scale
			scale /= 10
			j++
		}
		if j == 1 {
			return 0, bad
		}
		rest = rest[j:]
	}
	offset := 0
	switch {
	case len(rest) == 1 && (rest[0] == 'Z' || rest[0] == 'z'):
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, ok1 := digits(rest[1:3])
		om, ok2 := digits(rest[4:6])
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return 0, bad
		}
		offset = (oh*60 + om) * 60
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return 0, bad
	}
	if year < 1678 || year > 2261 {
		return 0, "must be between the years 1678 and 2261"
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	return t.Unix()*1e9 - int64(offset)*1e9 + int64(t.Nanosecond()), ""
}

func digits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
