package resync

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"pgregory.net/rapid"

	"github.com/edgesync/edgesync/outbox"
)

// Package cbor is the reference the hand-written codecs of headers,
// trailers and receipts are tested against: the encoders must write its
// core deterministic encoding, the decoders accept exactly what it decodes
// with decMode, into the same values, with the same error text.
var (
	encMode = func() cbor.EncMode {
		em, err := cbor.CoreDetEncOptions().EncMode()
		if err != nil {
			panic(err)
		}
		return em
	}()
	// decMode is msgLimits with the rules Unmarshal adds.
	decMode = func() cbor.DecMode {
		dm, err := cbor.DecOptions{
			DupMapKey:           cbor.DupMapKeyEnforcedAPF,
			IndefLength:         cbor.IndefLengthForbidden,
			TagsMd:              cbor.TagsForbidden,
			MaxNestedLevels:     4,
			MaxArrayElements:    16,
			MaxMapPairs:         32,
			UTF8:                cbor.UTF8RejectInvalid,
			ByteStringToString:  cbor.ByteStringToStringForbidden,
			FieldNameByteString: cbor.FieldNameByteStringForbidden,
		}.DecMode()
		if err != nil {
			panic(err)
		}
		return dm
	}()
)

var (
	genU64   = rapid.OneOf(rapid.Uint64(), rapid.Uint64Range(0, 1000))
	genI64   = rapid.OneOf(rapid.Int64(), rapid.Int64Range(-1000, 1000))
	genStr   = rapid.StringN(0, 70, 300)
	genBytes = rapid.OneOf(rapid.Just[[]byte](nil), rapid.SliceOfN(rapid.Byte(), 0, 70))
)

// TestEncodeMatchesLibrary: headers, trailers and receipts, valid or not,
// encode to package cbor's core deterministic encoding.
func TestEncodeMatchesLibrary(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := Header{V: genU64.Draw(t, "v"), Device: genStr.Draw(t, "device"), Epoch: outbox.Epoch(genU64.Draw(t, "epoch")),
			From: outbox.Seq(genU64.Draw(t, "from")), Through: outbox.Seq(genU64.Draw(t, "through")), Created: genI64.Draw(t, "created"),
			Watermark: outbox.Seq(genU64.Draw(t, "watermark")), Acked: outbox.Seq(genU64.Draw(t, "acked"))}
		tr := Trailer{Batches: genU64.Draw(t, "batches"), Records: genU64.Draw(t, "records"), SHA256: genBytes.Draw(t, "sha256")}
		r := Receipt{V: genU64.Draw(t, "rv"), Device: genStr.Draw(t, "rdevice"), Epoch: outbox.Epoch(genU64.Draw(t, "repoch")),
			AppliedThrough: outbox.Seq(genU64.Draw(t, "through")), Status: rapid.Uint8().Draw(t, "status"),
			SinkID: genStr.Draw(t, "sink"), Time: genI64.Draw(t, "time"), BundleSHA256: genBytes.Draw(t, "bundle"),
			KeyID: genStr.Draw(t, "key"), Signature: genBytes.Draw(t, "sig")}
		for _, c := range []struct {
			got []byte
			v   any
		}{{appendHeader(nil, &h), &h}, {appendTrailer(nil, &tr), &tr}, {appendReceipt(nil, &r), &r}} {
			want, err := encMode.Marshal(c.v)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(c.got, want) {
				t.Fatalf("%T:\ngot  %x\nwant %x", c.v, c.got, want)
			}
		}
	})
}

// checkDecodeMatchesLibrary decodes in as a header, a trailer, a receipt
// and a version peek, with the hand-written decoders and with package cbor.
func checkDecodeMatchesLibrary(t *testing.T, in []byte) {
	errText := func(err error) string {
		if err == nil {
			return "<nil>"
		}
		return err.Error()
	}
	var h, wh Header
	var tr, wtr Trailer
	var r, wr Receipt
	for _, c := range []struct {
		got, want any
		gerr      error
	}{
		{&h, &wh, decodeHeader(in, &h)},
		{&tr, &wtr, decodeTrailer(in, &tr)},
		{&r, &wr, decodeReceipt(in, &r)},
	} {
		werr := decMode.Unmarshal(in, c.want)
		if errText(c.gerr) != errText(werr) {
			t.Fatalf("%x into %T: got %v, package cbor says %v", in, c.got, c.gerr, werr)
		}
		if werr == nil && !reflect.DeepEqual(c.got, c.want) {
			t.Fatalf("%x into %T:\ngot  %+v\nwant %+v", in, c.got, c.got, c.want)
		}
	}
	var peek struct {
		V *uint64 `cbor:"1,keyasint"`
	}
	v, ok := version(in)
	wok := decMode.Unmarshal(in, &peek) == nil && peek.V != nil
	if ok != wok || ok && v != *peek.V {
		t.Fatalf("version(%x) = %d, %v; package cbor says %v, %v", in, v, ok, peek.V, wok)
	}
}

func FuzzDecodeMatchesLibrary(f *testing.F) {
	r := signedReceipt(f)
	rb, _ := EncodeReceipt(r)
	f.Add(rb)
	h := testHeader()
	h.V = FormatVersion
	f.Add(appendHeader(nil, &h))
	f.Add(appendTrailer(nil, &Trailer{Batches: 2, Records: 5, SHA256: make([]byte, 32)}))
	f.Add([]byte{0xa2, 0x01, 0x02, 0x02, 0x61, 'x'})
	f.Add([]byte{0xa2, 0x01, 0xf6, 0x61, 'x', 0x00})
	f.Fuzz(checkDecodeMatchesLibrary)
}
