package capture

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/edgesync/edgesync/internal/jsoncbor"
	"github.com/edgesync/edgesync/outbox"
	"github.com/edgesync/edgesync/transport"
	"github.com/edgesync/edgesync/transport/wire"
)

var testNow = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

// want is an expected record, its data as JSON.
type want struct {
	stream, key, id string
	op              outbox.Op
	schema          string
	ver             uint32
	at              int64 // 0: testNow
	data            string
}

func checkRecords(t *testing.T, got []outbox.Record, wants []want) {
	t.Helper()
	if len(got) != len(wants) {
		t.Fatalf("got %d records, want %d: %+v", len(got), len(wants), got)
	}
	for i, w := range wants {
		g := got[i]
		at := w.at
		if at == 0 {
			at = testNow.UnixNano()
		}
		wantData, err := jsoncbor.FromJSON(nil, []byte(w.data))
		if err != nil {
			t.Fatalf("bad test data %s: %v", w.data, err)
		}
		if g.Stream != w.stream || g.Key != w.key || g.ID != w.id || g.Op != w.op || g.Schema != w.schema ||
			g.SchemaVersion != w.ver || g.CapturedAt != at || !bytes.Equal(g.Data, wantData) || g.Seq != 0 {
			gj, _ := jsoncbor.ToJSON(nil, g.Data)
			t.Errorf("record %d:\n got %q/%q id %q %v %q@%d at %d data %s\nwant %q/%q id %q %v %q@%d at %d data %s",
				i, g.Stream, g.Key, g.ID, g.Op, g.Schema, g.SchemaVersion, g.CapturedAt, gj,
				w.stream, w.key, w.id, w.op, w.schema, w.ver, at, w.data)
		}
	}
}

// cb builds CBOR test input: hex-free, from pieces.
func cb(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch v := p.(type) {
		case string: // a text string
			b = appendCBORHead(b, majText, uint64(len(v)))
			b = append(b, v...)
		case []byte: // raw bytes
			b = append(b, v...)
		case int: // an unsigned integer
			b = appendCBORHead(b, majUint, uint64(v))
		default:
			panic(fmt.Sprintf("cb: %T", p))
		}
	}
	return b
}

func cmap(n int) []byte   { return appendCBORHead(nil, majMap, uint64(n)) }
func carray(n int) []byte { return appendCBORHead(nil, majArray, uint64(n)) }

func TestParse(t *testing.T) {
	full := `{"stream":"temps","key":"sensor-7","id":"b7f3","op":"delete","schema":"reading@2","ts":"2026-11-26T10:00:00.5+01:00","data":{"t":21.5}}`
	fullWant := want{stream: "temps", key: "sensor-7", id: "b7f3", op: outbox.OpDelete, schema: "reading", ver: 2,
		at: time.Date(2026, 11, 26, 9, 0, 0, 5e8, time.UTC).UnixNano(), data: `{"t":21.5}`}
	tests := []struct {
		name string
		ct   string
		body []byte
		want []want
	}{
		{"json minimal", ContentTypeJSON, []byte(`{"stream":"temps","data":1}`),
			[]want{{stream: "temps", data: "1"}}},
		{"json every field", ContentTypeJSON, []byte(full), []want{fullWant}},
		{"json fields in any order", ContentTypeJSON, []byte(`{"data":[1,"x"],"key":"k","stream":"s.1-_A"}`),
			[]want{{stream: "s.1-_A", key: "k", data: `[1,"x"]`}}},
		{"json array", ContentTypeJSON, []byte(`[{"stream":"a","data":1},{"stream":"b","data":"two"},{"stream":"a","data":null}]`),
			[]want{{stream: "a", data: "1"}, {stream: "b", data: `"two"`}, {stream: "a", data: "null"}}},
		{"json pretty", ContentTypeJSON, []byte("\n[\n  {\n    \"stream\" : \"a\" ,\n    \"data\" : { \"x\" : [ 1 , 2 ] }\n  }\n]\n"),
			[]want{{stream: "a", data: `{"x":[1,2]}`}}},
		{"json escapes", ContentTypeJSON, []byte(`{"stream":"a","key":"q\"b\\s\/\u00e9\ud83d\ude00\n","id":"\u0041","data":"\u00e9"}`),
			[]want{{stream: "a", key: "q\"b\\s/é😀\n", id: "A", data: `"é"`}}},
		{"json escaped field name", ContentTypeJSON, []byte(`{"str\u0065am":"a","data":1}`),
			[]want{{stream: "a", data: "1"}}},
		{"json nulls are absent", ContentTypeJSON, []byte(`{"stream":"a","key":null,"id":null,"op":null,"schema":null,"ts":null,"data":1}`),
			[]want{{stream: "a", data: "1"}}},
		{"json empty schema", ContentTypeJSON, []byte(`{"stream":"a","schema":"","data":1}`),
			[]want{{stream: "a", data: "1"}}},
		{"json op upsert", ContentTypeJSON, []byte(`{"stream":"a","op":"upsert","data":1}`),
			[]want{{stream: "a", data: "1"}}},
		{"json data kinds", ContentTypeJSON, []byte(`[{"stream":"a","data":true},{"stream":"a","data":-1.5e3},{"stream":"a","data":"s\"}"},{"stream":"a","data":{"a":{"b":[{}]}}}]`),
			[]want{{stream: "a", data: "true"}, {stream: "a", data: "-1.5e3"}, {stream: "a", data: `"s\"}"`}, {stream: "a", data: `{"a":{"b":[{}]}}`}}},
		{"json max key and id", ContentTypeJSON, []byte(`{"stream":"` + strings.Repeat("s", 64) + `","key":"` + strings.Repeat("k", 1024) + `","id":"` + strings.Repeat("é", 128) + `","data":1}`),
			[]want{{stream: strings.Repeat("s", 64), key: strings.Repeat("k", 1024), id: strings.Repeat("é", 128), data: "1"}}},
		{"content type with parameters", "Application/JSON; charset=UTF-8", []byte(`{"stream":"a","data":1}`),
			[]want{{stream: "a", data: "1"}}},
		{"content type charset quoted", `application/json;charset="utf-8"`, []byte(`{"stream":"a","data":1}`),
			[]want{{stream: "a", data: "1"}}},
		{"ndjson", ContentTypeNDJSON, []byte("{\"stream\":\"a\",\"data\":1}\n\n  \n{\"stream\":\"b\",\"data\":2}\r\n\r\n{\"stream\":\"c\",\"data\":3}"),
			[]want{{stream: "a", data: "1"}, {stream: "b", data: "2"}, {stream: "c", data: "3"}}},
		{"ndjson full", ContentTypeNDJSON, []byte(full + "\n"), []want{fullWant}},
		{"ndjson alias", "application/ndjson", []byte("{\"stream\":\"a\",\"data\":1}\n"),
			[]want{{stream: "a", data: "1"}}},
		{"cbor map", ContentTypeCBOR, cb(cmap(3), "stream", "temps", "key", "k", "data", cmap(1), "t", []byte{0xf9, 0x4d, 0x60}),
			[]want{{stream: "temps", key: "k", data: `{"t":21.5}`}}},
		{"cbor full", ContentTypeCBOR, jsonCBOR(full), []want{fullWant}},
		{"cbor array", ContentTypeCBOR, cb(carray(2), cmap(2), "stream", "a", "data", 1, cmap(2), "data", 2, "stream", "b"),
			[]want{{stream: "a", data: "1"}, {stream: "b", data: "2"}}},
		{"cbor indefinite array and map", ContentTypeCBOR, cb([]byte{0x9f, 0xbf}, "stream", "a", "data", 1, []byte{0xff, 0xff}),
			[]want{{stream: "a", data: "1"}}},
		{"cbor indefinite text", ContentTypeCBOR, cb(cmap(2), []byte{0x7f}, "str", "eam", []byte{0xff}, []byte{0x7f}, "a", "b", []byte{0xff}, "data", 1),
			[]want{{stream: "ab", data: "1"}}},
		{"cbor null fields", ContentTypeCBOR, cb(cmap(3), "stream", "a", "key", []byte{0xf6}, "data", []byte{0xf6}),
			[]want{{stream: "a", data: "null"}}},
		{"cbor byte string data is base64", ContentTypeCBOR, cb(cmap(2), "stream", "a", "data", []byte{0x43, 1, 2, 3}),
			[]want{{stream: "a", data: `"AQID"`}}},
		{"cbor data made canonical", ContentTypeCBOR, cb(cmap(2), "stream", "a", "data", []byte{0xfb, 0x40, 0x35, 0x80, 0, 0, 0, 0, 0}),
			[]want{{stream: "a", data: "21.5"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.ct, tt.body, testNow)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			checkRecords(t, got, tt.want)
		})
	}
}

func jsonCBOR(s string) []byte {
	b, err := jsoncbor.FromJSON(nil, []byte(s))
	if err != nil {
		panic(err)
	}
	return b
}

func TestParseErrors(t *testing.T) {
	rec := func(fields string) string { return `{"stream":"a","data":1` + fields + `}` }
	bigData := `"` + strings.Repeat("x", transport.MaxDataBytes) + `"`
	tests := []struct {
		name  string
		ct    string
		body  string
		index int
		field string
		line  int    // 0: not checked
		msg   string // a substring of the error text
		kind  error  // default ErrInvalid
	}{
		// The body as a whole.
		{"json empty", ContentTypeJSON, ``, -1, "", 0, "body: empty body", nil},
		{"json blank", ContentTypeJSON, " \n\t", -1, "", 0, "body: empty body", nil},
		{"json empty array", ContentTypeJSON, `[ ]`, -1, "", 0, "body: no records", nil},
		{"json scalar", ContentTypeJSON, `"x"`, 0, "", 1, `records[0] (line 1): invalid character '"' looking for a record object`, nil},
		{"json trailing data", ContentTypeJSON, rec("") + ` x`, -1, "", 1, "body (line 1): invalid character 'x' after the top-level value (column 25)", nil},
		{"json two objects", ContentTypeJSON, rec("") + rec(""), -1, "", 1, "after the top-level value", nil},
		{"json trailing data after array", ContentTypeJSON, "[" + rec("") + "]\n]", -1, "", 2, "body (line 2): invalid character ']'", nil},

		// Syntax, naming the record and the line.
		{"json element not object", ContentTypeJSON, `[` + rec("") + `,1]`, 1, "", 1, "records[1] (line 1): a record must be a JSON object, got a number", nil},
		{"json element array", ContentTypeJSON, `[[]]`, 0, "", 1, "got an array", nil},
		{"json missing comma", ContentTypeJSON, "[" + rec("") + "\n" + rec("") + "]", 0, "", 2, "records[0] (line 2): invalid character '{' after a record: want ',' or ']' (column 1)", nil},
		{"json trailing comma in object", ContentTypeJSON, `{"stream":"a","data":1,}`, 0, "", 1, "looking for a field name", nil},
		{"json missing colon", ContentTypeJSON, `{"stream" "a"}`, 0, "", 1, "after a field name: want ':'", nil},
		{"json unterminated string", ContentTypeJSON, `{"stream":"a`, 0, "", 1, "unexpected end of input in a string", nil},
		{"json unterminated object", ContentTypeJSON, `{"stream":"a"`, 0, "", 1, "unexpected end of input after a field value", nil},
		{"json unterminated array", ContentTypeJSON, `[` + rec(""), 0, "", 1, "unexpected end of input after a record", nil},
		{"json control character", ContentTypeJSON, "{\"stream\":\"a\tb\",\"data\":1}", 0, "", 1, "control characters must be escaped", nil},
		{"json bad escape", ContentTypeJSON, `{"stream":"a\x","data":1}`, 0, "", 1, "in a string escape", nil},
		{"json short unicode escape", ContentTypeJSON, `{"stream":"\u00","data":1}`, 0, "", 1, `in a \u escape`, nil},
		{"json lone surrogate", ContentTypeJSON, `{"stream":"a","key":"\ud800x","data":1}`, 0, "", 1, "lone UTF-16 surrogate", nil},
		{"json unterminated data", ContentTypeJSON, `{"stream":"a","data":{"x":[1,2}`, 0, "", 1, "unexpected end of input in the data", nil},
		{"json missing value", ContentTypeJSON, `{"stream":"a","data":}`, 0, "", 1, "looking for the data", nil},

		// Fields.
		{"stream missing", ContentTypeJSON, `{"data":1}`, 0, "stream", 0, "records[0].stream: missing", nil},
		{"stream null", ContentTypeJSON, `{"stream":null,"data":1}`, 0, "stream", 0, "records[0].stream: missing", nil},
		{"stream bad", ContentTypeJSON, `[` + rec("") + `,` + rec("") + `,` + rec("") + `,{"stream":"a b","data":1}]`, 3, "stream", 0,
			`records[3].stream: must match [A-Za-z0-9._-]{1,64}, got "a b"`, nil},
		{"stream empty", ContentTypeJSON, `{"stream":"","data":1}`, 0, "stream", 0, `must match [A-Za-z0-9._-]{1,64}, got ""`, nil},
		{"stream too long", ContentTypeJSON, `{"stream":"` + strings.Repeat("s", 65) + `","data":1}`, 0, "stream", 0, "records[0].stream: must match", nil},
		{"stream number", ContentTypeJSON, `{"stream":5,"data":1}`, 0, "stream", 0, "records[0].stream: must be a string, got a number", nil},
		{"stream object", ContentTypeJSON, `{"stream":{},"data":1}`, 0, "stream", 0, "must be a string, got an object", nil},
		{"key too long", ContentTypeJSON, rec(`,"key":"` + strings.Repeat("k", 1025) + `"`), 0, "key", 0, "records[0].key: must be at most 1024 bytes, got 1025", nil},
		{"key invalid utf-8", ContentTypeJSON, rec(`,"key":"a` + "\xff" + `"`), 0, "key", 0, "records[0].key: must be valid UTF-8", nil},
		{"key bool", ContentTypeJSON, rec(`,"key":true`), 0, "key", 0, "must be a string, got a boolean", nil},
		{"id empty", ContentTypeJSON, rec(`,"id":""`), 0, "id", 0, "records[0].id: must be 1..128 characters, got 0", nil},
		{"id too long", ContentTypeJSON, rec(`,"id":"` + strings.Repeat("é", 129) + `"`), 0, "id", 0, "records[0].id: must be 1..128 characters, got 129", nil},
		{"id invalid utf-8", ContentTypeJSON, rec(`,"id":"` + "\xc3" + `"`), 0, "id", 0, "records[0].id: must be valid UTF-8", nil},
		{"op unknown", ContentTypeJSON, rec(`,"op":"insert"`), 0, "op", 0, `records[0].op: must be "upsert" or "delete", got "insert"`, nil},
		{"op number", ContentTypeJSON, rec(`,"op":1`), 0, "op", 0, "records[0].op: must be a string", nil},
		{"schema without version", ContentTypeJSON, rec(`,"schema":"reading"`), 0, "schema", 0, `records[0].schema: must be NAME@VERSION`, nil},
		{"schema version 0", ContentTypeJSON, rec(`,"schema":"reading@0"`), 0, "schema", 0, `got "reading@0"`, nil},
		{"schema bad name", ContentTypeJSON, rec(`,"schema":"a b@1"`), 0, "schema", 0, `got "a b@1"`, nil},
		{"schema version too big", ContentTypeJSON, rec(`,"schema":"a@4294967296"`), 0, "schema", 0, `records[0].schema: must be NAME@VERSION`, nil},
		{"ts words", ContentTypeJSON, rec(`,"ts":"yesterday"`), 0, "ts", 0, `records[0].ts: must be an RFC 3339 time such as 2026-11-26T10:00:00Z, got "yesterday"`, nil},
		{"ts no zone", ContentTypeJSON, rec(`,"ts":"2026-11-26T10:00:00"`), 0, "ts", 0, "records[0].ts: must be an RFC 3339 time", nil},
		{"ts month 13", ContentTypeJSON, rec(`,"ts":"2026-13-01T00:00:00Z"`), 0, "ts", 0, "out of range", nil},
		{"ts february 30", ContentTypeJSON, rec(`,"ts":"2026-02-29T00:00:00Z"`), 0, "ts", 0, "out of range", nil},
		{"ts year 3000", ContentTypeJSON, rec(`,"ts":"3000-01-01T00:00:00Z"`), 0, "ts", 0, "records[0].ts: must be between the years 1678 and 2261", nil},
		{"ts empty fraction", ContentTypeJSON, rec(`,"ts":"2026-11-26T10:00:00.Z"`), 0, "ts", 0, "records[0].ts: must be an RFC 3339 time", nil},
		{"ts bad offset", ContentTypeJSON, rec(`,"ts":"2026-11-26T10:00:00+24:00"`), 0, "ts", 0, "records[0].ts: must be an RFC 3339 time", nil},
		{"ts number", ContentTypeJSON, rec(`,"ts":1764151200`), 0, "ts", 0, "records[0].ts: must be a string, got a number", nil},
		{"data missing", ContentTypeJSON, `{"stream":"a"}`, 0, "data", 0, "records[0].data: missing", nil},
		{"data missing in empty object", ContentTypeJSON, `[` + rec("") + `,{}]`, 1, "stream", 0, "records[1].stream: missing", nil},
		{"data invalid", ContentTypeJSON, `[` + rec("") + `,{"stream":"a","data":{"a":tru}}]`, 1, "data", 1, `records[1].data (line 1): invalid character '}' in literal true (column 55)`, nil},
		{"data duplicate key", ContentTypeJSON, `{"stream":"a","data":{"a":1,"a":2}}`, 0, "data", 1, `duplicate key "a"`, nil},
		{"data number out of range", ContentTypeJSON, `{"stream":"a","data":1e400}`, 0, "data", 1, "records[0].data (line 1)", nil},
		{"data too large", ContentTypeJSON, `{"stream":"a","data":` + bigData + `}`, 0, "data", 0,
			fmt.Sprintf("records[0].data: is %d bytes as CBOR, more than the limit of %d", transport.MaxDataBytes+5, transport.MaxDataBytes), ErrTooLarge},
		{"data text too large", ContentTypeJSON, `{"stream":"a","data":"` + strings.Repeat("x", jsoncbor.MaxLen) + `"}`, 0, "data", 0,
			"records[0].data: is 1048578 bytes, more than the limit of 1048576", ErrTooLarge},
		{"unknown field", ContentTypeJSON, rec(`,"colour":"red"`), 0, "colour", 0, `records[0].colour: unknown field; a record has "stream", "key", "id", "op", "schema", "ts" and "data"`, nil},
		{"unknown field misspelt", ContentTypeJSON, `{"stram":"a","data":1}`, 0, "stram", 0, "records[0].stram: unknown field", nil},
		{"unknown field odd name", ContentTypeJSON, rec(`,"a b":1`), 0, `"a b"`, 0, `records[0]."a b": unknown field`, nil},
		{"field twice", ContentTypeJSON, rec(`,"stream":"b"`), 0, "stream", 0, "records[0].stream: given twice", nil},
		{"data twice", ContentTypeJSON, rec(`,"data":2`), 0, "data", 0, "records[0].data: given twice", nil},

		// NDJSON names the line.
		{"ndjson empty", ContentTypeNDJSON, ``, -1, "", 0, "body: empty body", nil},
		{"ndjson blank", ContentTypeNDJSON, "\n \n\r\n", -1, "", 0, "body: no records: every line is blank", nil},
		{"ndjson field", ContentTypeNDJSON, rec("") + "\n\n" + `{"stream":"a b","data":1}` + "\n", 1, "stream", 3, `records[1].stream (line 3): must match [A-Za-z0-9._-]{1,64}, got "a b"`, nil},
		{"ndjson syntax", ContentTypeNDJSON, rec("") + "\n" + `{"stream":"a","data":1` + "\n" + rec(""), 1, "", 2, "records[1] (line 2): unexpected end of line after a field value: want ',' or '}' (column 23)", nil},
		{"ndjson two on a line", ContentTypeNDJSON, rec("") + " " + rec(""), 0, "", 1, "NDJSON takes one object a line", nil},
		{"ndjson array", ContentTypeNDJSON, "[" + rec("") + "]", 0, "", 1, "records[0] (line 1): a record must be a JSON object, got an array", nil},
		{"ndjson data", ContentTypeNDJSON, rec("") + "\n" + `{"stream":"a","data":[1,]}`, 1, "data", 2, "records[1].data (line 2): invalid character ']'", nil},
		{"ndjson unknown", ContentTypeNDJSON, "\n" + rec(`,"x":1`), 0, "x", 2, "records[0].x (line 2): unknown field", nil},
		{"ndjson too large", ContentTypeNDJSON, rec("") + "\n" + `{"stream":"a","data":` + bigData + `}`, 1, "data", 2, "records[1].data (line 2): is", ErrTooLarge},

		// CBOR.
		{"cbor empty", ContentTypeCBOR, ``, -1, "", 0, "body: empty body", nil},
		{"cbor integer", ContentTypeCBOR, string(cb(5)), -1, "", 0, "body: want a record map or an array of them, got an unsigned integer", nil},
		{"cbor empty array", ContentTypeCBOR, string(carray(0)), -1, "", 0, "body: no records", nil},
		{"cbor empty indefinite array", ContentTypeCBOR, "\x9f\xff", -1, "", 0, "body: no records", nil},
		{"cbor array too long", ContentTypeCBOR, string(cb(carray(1000), cmap(0))), -1, "", 0, "an array of 1000 records in 1 bytes", nil},
		{"cbor element not map", ContentTypeCBOR, string(cb(carray(2), cmap(2), "stream", "a", "data", 1, "x")), 1, "", 0, "records[1]: a record must be a map, got a text string at byte offset 17", nil},
		{"cbor key not text", ContentTypeCBOR, string(cb(cmap(1), 1, 2)), 0, "", 0, "records[0]: field names must be text strings, got an unsigned integer at byte offset 1", nil},
		{"cbor unknown field", ContentTypeCBOR, string(cb(cmap(3), "stream", "a", "data", 1, "colour", 1)), 0, "colour", 0, "records[0].colour: unknown field", nil},
		{"cbor field twice", ContentTypeCBOR, string(cb(cmap(3), "stream", "a", "data", 1, "stream", "b")), 0, "stream", 0, "records[0].stream: given twice", nil},
		{"cbor stream integer", ContentTypeCBOR, string(cb(cmap(2), "stream", 5, "data", 1)), 0, "stream", 0, "records[0].stream: must be a text string, got an unsigned integer", nil},
		{"cbor stream bytes", ContentTypeCBOR, string(cb(cmap(2), "stream", []byte{0x41, 'a'}, "data", 1)), 0, "stream", 0, "must be a text string, got a byte string", nil},
		{"cbor key undefined", ContentTypeCBOR, string(cb(cmap(3), "stream", "a", "key", []byte{0xf7}, "data", 1)), 0, "key", 0, "records[0].key: must be a text string, got undefined", nil},
		{"cbor stream bad", ContentTypeCBOR, string(cb(cmap(2), "stream", "a/b", "data", 1)), 0, "stream", 0, `records[0].stream: must match [A-Za-z0-9._-]{1,64}, got "a/b"`, nil},
		{"cbor data tag", ContentTypeCBOR, string(cb(cmap(2), "stream", "a", "data", []byte{0xc1, 0x1a, 0, 0, 0, 1})), 0, "data", 0, "records[0].data: tag 1", nil},
		{"cbor data undefined", ContentTypeCBOR, string(cb(cmap(2), "stream", "a", "data", []byte{0xf7})), 0, "data", 0, "records[0].data: ", nil},
		{"cbor data map with integer key", ContentTypeCBOR, string(cb(cmap(2), "stream", "a", "data", cmap(1), 1, 2)), 0, "data", 0, "records[0].data: ", nil},
		{"cbor data truncated", ContentTypeCBOR, string(cb(cmap(2), "stream", "a", "data", []byte{0x82, 1})), 0, "data", 0, "records[0].data: unexpected end of CBOR input", nil},
		{"cbor data break", ContentTypeCBOR, string(cb(cmap(2), "stream", "a", "data", []byte{0xff})), 0, "data", 0, "unexpected break", nil},
		{"cbor data reserved", ContentTypeCBOR, string(cb(cmap(2), "stream", "a", "data", []byte{0x1c})), 0, "data", 0, "reserved additional information 28", nil},
		{"cbor data indefinite integer", ContentTypeCBOR, string(cb(cmap(2), "stream", "a", "data", []byte{0x1f})), 0, "data", 0, "indefinite length", nil},
		{"cbor data bad chunk", ContentTypeCBOR, string(cb(cmap(2), "stream", "a", "data", []byte{0x7f, 0x41, 'a', 0xff})), 0, "data", 0, "chunk", nil},
		{"cbor data too deep", ContentTypeCBOR, string(cb(cmap(2), "stream", "a", "data", bytes.Repeat([]byte{0x81}, 100), 1)), 0, "data", 0, "nest deeper than 64", nil},
		{"cbor extra data", ContentTypeCBOR, string(cb(cmap(2), "stream", "a", "data", 1, 2)), -1, "", 0, "body: extra data after the CBOR item at byte offset 16", nil},
		{"cbor truncated map", ContentTypeCBOR, string(cb(cmap(2), "stream", "a")), 0, "", 0, "records[0]: unexpected end of CBOR input", nil},
		{"cbor truncated indefinite map", ContentTypeCBOR, string(cb([]byte{0xbf}, "stream", "a")), 0, "", 0, "unexpected end of CBOR input", nil},
		{"cbor truncated text", ContentTypeCBOR, string(cb(cmap(1), []byte{0x66}, "str")), 0, "", 0, "unexpected end of CBOR input", nil},
		{"cbor missing data", ContentTypeCBOR, string(cb(cmap(1), "stream", "a")), 0, "data", 0, "records[0].data: missing", nil},
		{"cbor too large", ContentTypeCBOR, string(cb(cmap(2), "stream", "a", "data", appendCBORHead(nil, majText, transport.MaxDataBytes), bytes.Repeat([]byte("x"), transport.MaxDataBytes))), 0, "data", 0, "records[0].data: is", ErrTooLarge},
		{"cbor map count too large", ContentTypeCBOR, string(cb(cmap(1000), "stream", "a")), 0, "", 0, "unexpected end of CBOR input", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, err := Parse(tt.ct, []byte(tt.body), testNow)
			if err == nil {
				t.Fatalf("Parse accepted %d records", len(recs))
			}
			if recs != nil {
				t.Errorf("Parse returned %d records with an error", len(recs))
			}
			var re *RecordError
			if !errors.As(err, &re) {
				t.Fatalf("error %T %v, want a *RecordError", err, err)
			}
			if re.Index != tt.index || re.Field != tt.field {
				t.Errorf("error %q: index %d field %q, want %d %q", err, re.Index, re.Field, tt.index, tt.field)
			}
			if tt.line != 0 && re.Line != tt.line {
				t.Errorf("error %q: line %d, want %d", err, re.Line, tt.line)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not contain %q", err, tt.msg)
			}
			prefix := "body"
			if tt.index >= 0 {
				prefix = fmt.Sprintf("records[%d]", tt.index)
				if tt.field != "" {
					prefix += "." + tt.field
				}
			}
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not start with %q", err, prefix)
			}
			kind := tt.kind
			if kind == nil {
				kind = ErrInvalid
			}
			if !errors.Is(err, kind) {
				t.Errorf("error %q does not match %v", err, kind)
			}
		})
	}
}

func TestParseContentTypes(t *testing.T) {
	body := []byte(`{"stream":"a","data":1}`)
	for _, ct := range []string{"", "text/plain", "application/xml", "application/json-seq", "application/jsonx",
		"application/json; charset=latin1", "application/x-ndjson; charset=utf-16", "multipart/form-data; boundary=x"} {
		_, err := Parse(ct, body, testNow)
		if !errors.Is(err, ErrUnsupportedType) {
			t.Errorf("Parse(%q): %v, want ErrUnsupportedType", ct, err)
		}
	}
	for _, ct := range []string{"application/json", " application/json ", "APPLICATION/JSON", "application/json; charset=utf8",
		"application/json;foo=bar", "application/x-ndjson", "application/ndjson; charset=utf-8"} {
		if _, err := Parse(ct, body, testNow); err != nil {
			t.Errorf("Parse(%q): %v", ct, err)
		}
	}
	if _, err := Parse("application/cbor; charset=utf-8", cb(cmap(2), "stream", "a", "data", 1), testNow); err != nil {
		t.Errorf("Parse(cbor with charset): %v", err)
	}
}

// TestAllOrNothing: an error anywhere returns no records, and a parser
// reused after an error is as before.
func TestAllOrNothing(t *testing.T) {
	p := new(parser)
	p.reset(testNow)
	if err := p.parse(formatJSON, []byte(`[{"stream":"a","data":1},{"stream":"b","data":2}]`), nil); err != nil {
		t.Fatal(err)
	}
	arena := len(p.arena)
	err := p.parse(formatJSON, []byte(`[{"stream":"c","data":3},{"stream":"d","data":4},{"stream":"e"}]`), nil)
	if err == nil {
		t.Fatal("parse accepted a record without data")
	}
	if len(p.recs) != 2 || len(p.arena) != arena || p.recs[1].Stream != "b" {
		t.Errorf("after a failed parse: %d records, arena %d, want 2 and %d", len(p.recs), len(p.arena), arena)
	}
}

func TestValidNameMatchesWire(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("aZ09._-/ @é\x00\xff")
	for i := 0; i < 20000; i++ {
		b := make([]byte, r.IntN(70))
		for j := range b {
			b[j] = alphabet[r.IntN(len(alphabet))]
		}
		if got, want := validName(b), wire.ValidStream(string(b)); got != want {
			t.Fatalf("validName(%q) = %v, wire.ValidStream = %v", b, got, want)
		}
	}
}

func TestParseRFC3339(t *testing.T) {
	good := []string{
		"2026-11-26T10:00:00Z", "2026-11-26t10:00:00z", "2026-11-26T10:00:00.5Z", "2026-11-26T10:00:00.123456789Z",
		"2026-11-26T10:00:00.1234567891234Z", "2026-11-26T10:00:00+01:00", "2026-11-26T10:00:00.25-05:30",
		"1970-01-01T00:00:00Z", "2000-02-29T23:59:59Z", "1678-01-01T00:00:00Z", "2261-12-31T23:59:59.999999999Z",
		"2026-11-26T00:00:00+23:59",
	}
	for _, s := range good {
		got, msg := parseRFC3339([]byte(s))
		if msg != "" {
			t.Errorf("parseRFC3339(%q): %s", s, msg)
			continue
		}
		want, err := time.Parse(time.RFC3339Nano, strings.ToUpper(s))
		if err != nil {
			t.Fatalf("time.Parse(%q): %v", s, err)
		}
		// time.Parse keeps 9 digits of a longer fraction, as we do.
		if got != want.UnixNano() {
			t.Errorf("parseRFC3339(%q) = %d, want %d", s, got, want.UnixNano())
		}
	}
	// A leap second is accepted as the first second of the next minute.
	got, msg := parseRFC3339([]byte("2016-12-31T23:59:60Z"))
	if msg != "" || got != time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano() {
		t.Errorf("leap second: %d %q", got, msg)
	}
	bad := []string{"", "2026-11-26", "2026-11-26 10:00:00Z", "2026-11-26T10:00:00", "2026-11-26T10:00Z",
		"26-11-26T10:00:00Z", "2026-1-26T10:00:00Z", "2026-11-26T10:00:00+0100", "2026-11-26T10:00:00+01",
		"2026-11-26T10:00:00.Z", "2026-11-26T10:00:00ZZ", "2026-11-26T24:00:00Z", "2026-11-26T10:60:00Z",
		"2026-11-26T10:00:61Z", "2026-00-26T10:00:00Z", "2026-11-00T10:00:00Z", "2026-11-31T10:00:00Z",
		"2100-02-29T10:00:00Z", "1677-12-31T23:59:59Z", "2262-01-01T00:00:00Z", "2026-11-26T10:00:00+01:60",
		"2026-11-26T10:00:00 Z", "+026-11-26T10:00:00Z", "2026-11-26T1a:00:00Z"}
	for _, s := range bad {
		if got, msg := parseRFC3339([]byte(s)); msg == "" {
			t.Errorf("parseRFC3339(%q) = %d, want an error", s, got)
		}
	}
}

func TestRecordErrorText(t *testing.T) {
	tests := []struct {
		e    RecordError
		want string
	}{
		{RecordError{Index: 3, Field: "stream", Msg: "bad"}, "records[3].stream: bad"},
		{RecordError{Index: 0, Msg: "bad"}, "records[0]: bad"},
		{RecordError{Index: 2, Field: "data", Line: 7, Msg: "bad"}, "records[2].data (line 7): bad"},
		{RecordError{Index: -1, Msg: "empty"}, "body: empty"},
		{RecordError{Index: -1, Line: 2, Msg: "x"}, "body (line 2): x"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	e := &RecordError{Err: ErrTooLarge}
	if !errors.Is(e, ErrTooLarge) || errors.Is(e, ErrInvalid) {
		t.Errorf("RecordError{Err: ErrTooLarge} does not unwrap to it alone")
	}
}

func TestParseDefaults(t *testing.T) {
	d := PutDefaults{Stream: "dflt", Key: "k0", Schema: "reading@3"}
	got, err := ParseDefaults(ContentTypeNDJSON, []byte(
		`{"data":1}`+"\n"+
			`{"stream":"own","key":"own-key","schema":"other@1","data":2}`+"\n"+
			`{"stream":null,"key":null,"schema":null,"data":3}`+"\n"+
			`{"key":"","schema":"","data":4}`+"\n"), testNow, d)
	if err != nil {
		t.Fatal(err)
	}
	checkRecords(t, got, []want{
		{stream: "dflt", key: "k0", schema: "reading", ver: 3, data: "1"},
		{stream: "own", key: "own-key", schema: "other", ver: 1, data: "2"},
		{stream: "dflt", key: "k0", schema: "reading", ver: 3, data: "3"},
		{stream: "dflt", key: "", schema: "", data: "4"},
	})
	_, err = ParseDefaults(ContentTypeJSON, []byte(`{"data":1}`), testNow, PutDefaults{Stream: "a b", Key: "\xff", Schema: "x"})
	for _, s := range []string{"stream: must match", "key: must be valid UTF-8", "schema: must be NAME@VERSION"} {
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("bad defaults: %v, want it to contain %q", err, s)
		}
	}
}

func TestFillDefaults(t *testing.T) {
	d := PutDefaults{Stream: "temps", Key: "sensor-7", Schema: "reading@1"}
	tests := []struct {
		name     string
		ct       string
		body     string
		d        PutDefaults
		want     string
		wantRecs []want
	}{
		{"json object", ContentTypeJSON, `{"data":1}`, d,
			`{"stream":"temps","key":"sensor-7","schema":"reading@1","data":1}`,
			[]want{{stream: "temps", key: "sensor-7", schema: "reading", ver: 1, data: "1"}}},
		{"json keeps what is set", ContentTypeJSON, `[ {"stream":"own","data":1} , {"key":"k","data":2}]`, d,
			`[ {"key":"sensor-7","schema":"reading@1","stream":"own","data":1} , {"stream":"temps","schema":"reading@1","key":"k","data":2}]`,
			[]want{{stream: "own", key: "sensor-7", schema: "reading", ver: 1, data: "1"}, {stream: "temps", key: "k", schema: "reading", ver: 1, data: "2"}}},
		{"json replaces null", ContentTypeJSON, `{"stream": null ,"data":1}`, PutDefaults{Stream: "s"},
			`{"stream": "s" ,"data":1}`, []want{{stream: "s", data: "1"}}},
		{"json escapes", ContentTypeJSON, `{"data":1}`, PutDefaults{Stream: "s", Key: `a"b\é`},
			`{"stream":"s","key":"a\"b\\é","data":1}`, []want{{stream: "s", key: `a"b\é`, data: "1"}}},
		{"json nothing to fill", ContentTypeJSON, `{"stream":"a","data":1}`, PutDefaults{},
			`{"stream":"a","data":1}`, []want{{stream: "a", data: "1"}}},
		{"ndjson", ContentTypeNDJSON, "{\"data\":1}\n\n{\"stream\":\"x\",\"data\":2}\r\n", PutDefaults{Stream: "s"},
			"{\"stream\":\"s\",\"data\":1}\n\n{\"stream\":\"x\",\"data\":2}\r\n", []want{{stream: "s", data: "1"}, {stream: "x", data: "2"}}},
		{"cbor map", ContentTypeCBOR, string(cb(cmap(1), "data", 1)), d,
			string(cb(cmap(4), "stream", "temps", "key", "sensor-7", "schema", "reading@1", "data", 1)),
			[]want{{stream: "temps", key: "sensor-7", schema: "reading", ver: 1, data: "1"}}},
		{"cbor indefinite map and null", ContentTypeCBOR, string(cb(carray(1), []byte{0xbf}, "stream", []byte{0xf6}, "data", 1, []byte{0xff})), PutDefaults{Stream: "s", Key: "k"},
			string(cb(carray(1), []byte{0xbf}, "key", "k", "stream", "s", "data", 1, []byte{0xff})),
			[]want{{stream: "s", key: "k", data: "1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FillDefaults(tt.ct, []byte(tt.body), tt.d)
			if err != nil {
				t.Fatalf("FillDefaults: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("FillDefaults:\n got %q\nwant %q", got, tt.want)
			}
			if tt.wantRecs != nil {
				recs, err := Parse(tt.ct, got, testNow)
				if err != nil {
					t.Fatalf("Parse(filled): %v", err)
				}
				checkRecords(t, recs, tt.wantRecs)
			}
		})
	}
}

func TestFillDefaultsErrors(t *testing.T) {
	if _, err := FillDefaults(ContentTypeJSON, []byte(`{"data":1}`), PutDefaults{Stream: "a b"}); err == nil || !strings.Contains(err.Error(), "stream: must match") {
		t.Errorf("bad default stream: %v", err)
	}
	if _, err := FillDefaults("text/csv", []byte(`x`), PutDefaults{}); !errors.Is(err, ErrUnsupportedType) {
		t.Errorf("csv: %v", err)
	}
	_, err := FillDefaults(ContentTypeNDJSON, []byte("{\"data\":1}\n{\"data\":2,\"op\":\"x\"}\n"), PutDefaults{Stream: "s"})
	var re *RecordError
	if !errors.As(err, &re) || re.Index != 1 || re.Field != "op" || re.Line != 2 {
		t.Errorf("bad record: %v, want records[1].op on line 2", err)
	}
	_, err = FillDefaults(ContentTypeJSON, []byte(`{"data":1}`), PutDefaults{Key: "k"})
	if !errors.As(err, &re) || re.Field != "stream" {
		t.Errorf("no stream anywhere: %v", err)
	}
	// The map head is rewritten with the new count.
	m := cb(cmap(2), "data", 1, "key", "k")
	out, err := FillDefaults(ContentTypeCBOR, m, PutDefaults{Stream: "s", Schema: "x@1"})
	if err != nil {
		t.Fatal(err)
	}
	if out[0] != 0xa4 {
		t.Errorf("map head %#x, want 0xa4", out[0])
	}
}
