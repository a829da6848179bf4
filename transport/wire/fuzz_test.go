package wire

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// sentinels are the errors every error of the package must match one of.
var sentinels = []error{ErrTooLarge, ErrVersion, ErrCompression, ErrMalformed, ErrInvalid}

// checkDecodeError fails unless err is a *FieldError matching one sentinel.
func checkDecodeError(t *testing.T, err error) {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *FieldError", err, err)
	}
	n := 0
	for _, s := range sentinels {
		if errors.Is(err, s) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("error %v matches %d sentinels, want 1", err, n)
	}
}

// seed adds the vectors of one kind to a fuzz corpus.
func seed(f *testing.F, kind string) {
	for _, v := range testVectors(f) {
		if v.kind == kind {
			_, payload := readVector(f, v.name)
			f.Add(payload)
		}
	}
}

// FuzzDecodeBatch: DecodeBatch never panics; it returns a batch or a
// *FieldError; a batch it returns is what package cbor decodes from the
// same body, re-encodes (unless the re-encoding is too large), and decodes
// again to itself; and re-encoding is stable.
func FuzzDecodeBatch(f *testing.F) {
	seed(f, "batch")
	f.Add([]byte{CompressionNone})
	f.Add(append([]byte{CompressionNone}, batchHead(8).uint(8).uint(0).uint(9).uint(0)...))
	f.Fuzz(func(t *testing.T, payload []byte) {
		b, err := DecodeBatch(payload)
		if err != nil {
			if b != nil {
				t.Fatalf("a batch and an error: %v", err)
			}
			checkDecodeError(t, err)
			return
		}
		body := payload[1:]
		if payload[0] == CompressionZstd {
			out, buf, err := unzstd(body)
			if err != nil {
				t.Fatalf("DecodeBatch accepted a body unzstd refuses: %v", err)
			}
			body = bytes.Clone(out)
			putBuffer(buf)
		}
		var lib Batch
		if err := libBatchDec.Unmarshal(body, &lib); err != nil {
			// Package cbor checks the content of tags 0 to 3 even inside a
			// cbor.RawMessage; the protocol leaves tags in data to the sink.
			var tagErr *cbor.InadmissibleTagContentTypeError
			if !errors.As(err, &tagErr) {
				t.Fatalf("package cbor refuses what DecodeBatch accepted: %v", err)
			}
			lib = *b
		}
		if !reflect.DeepEqual(normalize(&lib), normalize(b)) {
			t.Fatalf("package cbor decodes\n%+v\nDecodeBatch\n%+v", lib, b)
		}
		for _, c := range []byte{CompressionNone, CompressionZstd} {
			again, err := EncodeBatch(nil, b, c)
			if errors.Is(err, ErrTooLarge) {
				continue // the input was denser than our encoding
			}
			if err != nil {
				t.Fatalf("re-encoding a decoded batch: %v", err)
			}
			b2, err := DecodeBatch(again)
			if err != nil {
				t.Fatalf("decoding a re-encoded batch: %v", err)
			}
			if !reflect.DeepEqual(normalize(b2), normalize(b)) {
				t.Fatalf("round trip:\ngot  %+v\nwant %+v", b2, b)
			}
			third, err := EncodeBatch(nil, b2, c)
			if err != nil || !bytes.Equal(third, again) {
				t.Fatalf("encoding is not stable: %v\n%x\n%x", err, third, again)
			}
		}
	})
}

// fuzzControl is FuzzDecodeBatch for the plain CBOR messages.
func fuzzControl(f *testing.F, kind string) {
	seed(f, kind)
	f.Fuzz(func(t *testing.T, payload []byte) {
		msg, err := decodeAny(kind, payload)
		if err != nil {
			if !reflect.ValueOf(msg).IsNil() {
				t.Fatalf("a message and an error: %v", err)
			}
			checkDecodeError(t, err)
			return
		}
		again, err := encodeAny(nil, msg, 0)
		if err != nil {
			t.Fatalf("re-encoding a decoded %s: %v", kind, err)
		}
		if len(again) > len(payload) {
			t.Fatalf("re-encoding grew from %d to %d bytes", len(payload), len(again))
		}
		msg2, err := decodeAny(kind, again)
		if err != nil {
			t.Fatalf("decoding a re-encoded %s: %v", kind, err)
		}
		if !reflect.DeepEqual(normalize(msg2), normalize(msg)) {
			t.Fatalf("round trip:\ngot  %+v\nwant %+v", msg2, msg)
		}
		third, err := encodeAny(nil, msg2, 0)
		if err != nil || !bytes.Equal(third, again) {
			t.Fatalf("encoding is not stable: %v\n%x\n%x", err, third, again)
		}
	})
}

func FuzzDecodeAck(f *testing.F)          { fuzzControl(f, "ack") }
func FuzzDecodeState(f *testing.F)        { fuzzControl(f, "state") }
func FuzzDecodeCmd(f *testing.F)          { fuzzControl(f, "cmd") }
func FuzzDecodeConfig(f *testing.F)       { fuzzControl(f, "config") }
func FuzzDecodeConfigStatus(f *testing.F) { fuzzControl(f, "config_status") }

// FuzzValidData: ValidData agrees with the batch decoder on what data a
// record may hold.
func FuzzValidData(f *testing.F) {
	f.Add([]byte{0xa0})
	f.Add([]byte{0xf6})
	f.Add(nested(MaxDataDepth))
	f.Add(nested(MaxDataDepth + 1))
	f.Add([]byte{0xbf, 0x61, 'a', 0xc1, 0x9f, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 || len(data) > MaxRecordBytes/2 {
			return // missing data; data too large for a record
		}
		b := &Batch{V: Version, Device: testDevice, Epoch: 1, First: 1, Last: 1,
			Records: []Record{{Seq: 1, Stream: "s", Data: data}}}
		valid := ValidData(data) == nil
		payload, err := EncodeBatch(nil, b, CompressionNone)
		if (err == nil) != valid {
			t.Fatalf("ValidData says %v, EncodeBatch %v", valid, err)
		}
		if !valid {
			// The decoder refuses it too.
			payload = append([]byte{CompressionNone}, appendBatch(nil, b)...)
			if _, err := DecodeBatch(payload); err == nil {
				t.Fatalf("DecodeBatch accepts data ValidData refuses")
			}
			return
		}
		got, err := DecodeBatch(payload)
		if err != nil {
			t.Fatalf("DecodeBatch refuses valid data: %v", err)
		}
		if !bytes.Equal(got.Records[0].Data, data) {
			t.Fatalf("data: got %x, want %x", got.Records[0].Data, data)
		}
	})
}

// FuzzItemEnd: itemEnd finds the exact end of every item package cbor calls
// well formed, whatever follows it, and never reads past its input.
func FuzzItemEnd(f *testing.F) {
	f.Add([]byte{0xa0}, []byte{0})
	f.Add([]byte{0x5f, 0x41, 0, 0xff}, []byte{})
	f.Add(nested(MaxDataDepth), []byte{0xff})
	f.Add([]byte{0xd8, 0x20, 0x7f, 0x61, 'x', 0xff}, []byte{1, 2})
	f.Fuzz(func(t *testing.T, item, after []byte) {
		end := itemEnd(item, 0, 0)
		if end > len(item) {
			t.Fatalf("itemEnd = %d past the input of %d bytes", end, len(item))
		}
		if dataDec.Wellformed(item) != nil {
			return
		}
		if end != len(item) {
			t.Fatalf("itemEnd = %d, want %d", end, len(item))
		}
		if end := itemEnd(append(bytes.Clone(item), after...), 0, 0); end != len(item) {
			t.Fatalf("itemEnd with %x after = %d, want %d", after, end, len(item))
		}
	})
}
