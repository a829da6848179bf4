package wire

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

func TestRecordRoundTripMatchesLibrary(t *testing.T) {
	r := Record{Seq: 42, Stream: "temps", Key: "k", ID: "id-1", Op: OpDelete, Schema: "reading", SchemaVersion: 3,
		CapturedAt: -5, Data: []byte{0xa1, 0x61, 'a', 0x01}}
	b := EncodeRecord(nil, &r)
	lib, err := cbor.Marshal(&r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, lib) {
		t.Fatalf("EncodeRecord %x, library %x", b, lib)
	}
	got, err := DecodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, r) {
		t.Fatalf("decoded %+v, want %+v", *got, r)
	}
	if _, err := DecodeRecord(append(b, 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
	if _, err := DecodeRecord(b[:len(b)-1]); err == nil {
		t.Fatal("truncated record accepted")
	}
}
