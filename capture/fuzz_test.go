package capture

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/edgesync/edgesync/internal/jsoncbor"
	"github.com/edgesync/edgesync/outbox"
	"github.com/edgesync/edgesync/transport"
	"github.com/edgesync/edgesync/transport/wire"
)

var fuzzDefaults = PutDefaults{Stream: "dflt", Key: "k", Schema: "fz@7"}

// checkParse is the property every fuzz target checks: Parse does not panic;
// it refuses with a *RecordError (and no records) or accepts records that
// pass the wire's own validation, with canonical data within the limit; and
// FillDefaults agrees with ParseDefaults.
func checkParse(t *testing.T, ct string, body []byte) {
	recs, err := Parse(ct, body, testNow)
	if err != nil {
		var re *RecordError
		if !errors.As(err, &re) {
			t.Fatalf("error %T %v, want *RecordError", err, err)
		}
		if recs != nil || re.Index < -1 || !(errors.Is(err, ErrInvalid) || errors.Is(err, ErrTooLarge)) || re.Msg == "" {
			t.Fatalf("bad refusal: %d records, %#v", len(recs), re)
		}
	} else {
		if len(recs) == 0 {
			t.Fatal("accepted no records")
		}
		for i := range recs {
			checkRecord(t, &recs[i])
		}
		again, err := Parse(ct, body, testNow)
		if err != nil || !reflect.DeepEqual(again, recs) {
			t.Fatalf("Parse is not deterministic: %v", err)
		}
	}

	withDef, errDef := ParseDefaults(ct, body, testNow, fuzzDefaults)
	filled, errFill := FillDefaults(ct, body, fuzzDefaults)
	if (errDef == nil) != (errFill == nil) {
		t.Fatalf("ParseDefaults: %v; FillDefaults: %v", errDef, errFill)
	}
	if errDef != nil {
		if err == nil {
			t.Fatalf("defaults made an accepted body fail: %v", errDef)
		}
		return
	}
	fromFilled, err := Parse(ct, filled, testNow)
	if err != nil {
		t.Fatalf("Parse(FillDefaults(body)): %v\nfilled: %q", err, filled)
	}
	if !reflect.DeepEqual(fromFilled, withDef) {
		t.Fatalf("Parse(FillDefaults(body)) differs from ParseDefaults(body):\n%+v\n%+v", fromFilled, withDef)
	}
	for i := range withDef {
		checkRecord(t, &withDef[i])
	}
}

func checkRecord(t *testing.T, r *outbox.Record) {
	t.Helper()
	w := wire.Record{Seq: 1, Stream: r.Stream, Key: r.Key, ID: r.ID, Op: uint8(r.Op), Schema: r.Schema,
		SchemaVersion: r.SchemaVersion, CapturedAt: r.CapturedAt, Data: r.Data}
	if err := w.Validate(); err != nil {
		t.Fatalf("accepted a record the wire refuses: %v: %+v", err, r)
	}
	if len(r.Data) > transport.MaxDataBytes {
		t.Fatalf("data of %d bytes", len(r.Data))
	}
	canon, err := jsoncbor.FromCBOR(nil, r.Data)
	if err != nil || !bytes.Equal(canon, r.Data) {
		t.Fatalf("data not canonical CBOR: %x (%v)", r.Data, err)
	}
	if r.ID != "" && len([]rune(r.ID)) > wire.MaxIDRunes {
		t.Fatalf("id too long: %q", r.ID)
	}
}

func FuzzParseJSON(f *testing.F) {
	for _, s := range []string{
		`{"stream":"a","data":1}`,
		`[{"stream":"temps","key":"k","id":"i","op":"delete","schema":"r@1","ts":"2026-11-26T10:00:00Z","data":{"t":[1,2.5,"x"]}}]`,
		`{"data":{"a":"\u00e9\ud83d\ude00"},"key":null}`,
		`[{"stream":"a","data":1},{"data":2}]`,
		`{"str\u0065am":"a","data":"\"}"}`,
		`{}`, `[]`, `[{}]`, `{"stream":"a","data":1,"x":2}`,
	} {
		f.Add([]byte(s))
	}
	f.Add([]byte("[" + benchRecord(1) + "," + benchRecord(2) + "]"))
	f.Fuzz(func(t *testing.T, body []byte) { checkParse(t, ContentTypeJSON, body) })
}

func FuzzParseNDJSON(f *testing.F) {
	for _, s := range []string{
		"{\"stream\":\"a\",\"data\":1}\n",
		"{\"data\":1}\r\n\n{\"stream\":\"b\",\"data\":[{}],\"ts\":\"2026-11-26T10:00:00.5+01:00\"}",
		"\n\n", "{\"stream\":\"a\",\"data\":1} {}\n",
	} {
		f.Add([]byte(s))
	}
	f.Add([]byte(benchRecord(1) + "\n" + benchRecord(2) + "\n"))
	f.Fuzz(func(t *testing.T, body []byte) { checkParse(t, ContentTypeNDJSON, body) })
}

func FuzzParseCBOR(f *testing.F) {
	f.Add(cb(cmap(2), "stream", "a", "data", 1))
	f.Add(cb([]byte{0x9f, 0xbf}, "stream", "a", "data", []byte{0x43, 1, 2, 3}, []byte{0xff, 0xff}))
	f.Add(cb(cmap(2), []byte{0x7f}, "str", "eam", []byte{0xff}, "s", "data", []byte{0xc1, 0x01}))
	f.Add(cb(cmap(1), "data", []byte{0xf6}))
	f.Add(cb(cmap(3), "stream", "a", "key", []byte{0xf6}, "data", []byte{0xfa, 0x41, 0xac, 0, 0}))
	f.Add(append(append(carray(2), jsonCBOR(benchRecord(1))...), jsonCBOR(benchRecord(2))...))
	f.Fuzz(func(t *testing.T, body []byte) { checkParse(t, ContentTypeCBOR, body) })
}
