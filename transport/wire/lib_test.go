package wire

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// Package cbor is the reference the hand-written codecs are tested against:
// the encoders must write what its core deterministic encoding writes, the
// decoders accept exactly what it decodes with the modes below, into the
// same values.
var (
	// encMode writes core deterministic CBOR (RFC 8949 section 4.2.1).
	encMode = func() cbor.UserBufferEncMode {
		em, err := cbor.CoreDetEncOptions().UserBufferEncMode()
		if err != nil {
			panic(err)
		}
		return em
	}()

	// dataDec is dataLimits.
	dataDec = mustDecMode(cbor.DecOptions{
		MaxNestedLevels:  MaxDataDepth,
		MaxArrayElements: math.MaxInt32,
		MaxMapPairs:      math.MaxInt32,
	}, true)
	// ackDec is ackLimits.
	ackDec = mustDecMode(cbor.DecOptions{MaxNestedLevels: 4, MaxArrayElements: MaxParked, MaxMapPairs: 64}, false)
	// controlDec is controlLimits.
	controlDec = mustDecMode(cbor.DecOptions{MaxNestedLevels: 4, MaxArrayElements: 16, MaxMapPairs: 64}, false)
)

// mustDecMode completes opts with the rules shared by every message:
// duplicate map keys refused, text strings must be valid UTF-8, byte strings
// never decode into text fields. Unless lenient, indefinite lengths and
// tags are refused too.
func mustDecMode(opts cbor.DecOptions, lenient bool) cbor.DecMode {
	opts.DupMapKey = cbor.DupMapKeyEnforcedAPF
	opts.UTF8 = cbor.UTF8RejectInvalid
	opts.ByteStringToString = cbor.ByteStringToStringForbidden
	opts.FieldNameByteString = cbor.FieldNameByteStringForbidden
	opts.IndefLength, opts.TagsMd = cbor.IndefLengthForbidden, cbor.TagsForbidden
	if lenient {
		opts.IndefLength, opts.TagsMd = cbor.IndefLengthAllowed, cbor.TagsAllowed
	}
	dm, err := opts.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}

// libDecode is how the decoders worked with package cbor: the reference
// for FuzzControlMatchesLibrary.
func libDecode(kind string, payload []byte) (any, error) {
	msg := newOf(kind)
	dm, limit, name := controlDec, MaxControlBytes, kind
	switch kind {
	case "ack":
		dm, limit = ackDec, MaxAckBytes
	case "config_status":
		name = "config status"
	}
	if len(payload) > limit {
		return nil, tooLarge(name, "", fmt.Sprintf("%d bytes, more than %d", len(payload), limit))
	}
	if len(payload) == 0 {
		return nil, malformed(name, fmt.Errorf("empty payload"))
	}
	if err := dm.Unmarshal(payload, msg); err != nil {
		var v struct {
			V *uint64 `cbor:"1,keyasint"`
		}
		if dm.Unmarshal(payload, &v) == nil && v.V != nil && *v.V != Version {
			return nil, versionError(name, *v.V)
		}
		var (
			arr   *cbor.MaxArrayElementsError
			pairs *cbor.MaxMapPairsError
			depth *cbor.MaxNestedLevelError
		)
		if errors.As(err, &arr) || errors.As(err, &pairs) || errors.As(err, &depth) {
			return nil, tooLarge(name, "", err.Error())
		}
		return nil, malformed(name, err)
	}
	if err := msg.(interface{ Validate() error }).Validate(); err != nil {
		return nil, err
	}
	return msg, nil
}

// FuzzControlMatchesLibrary: the hand-written decoders of acks and control
// messages accept exactly what package cbor decoded, into the same values,
// with the same errors.
func FuzzControlMatchesLibrary(f *testing.F) {
	for _, v := range testVectors(f) {
		if v.kind != "batch" {
			_, payload := readVector(f, v.name)
			f.Add(v.kind, payload)
		}
	}
	f.Fuzz(func(t *testing.T, kind string, payload []byte) {
		switch kind {
		case "ack", "state", "cmd", "config", "config_status":
		default:
			return
		}
		got, gerr := decodeAny(kind, payload)
		want, werr := libDecode(kind, payload)
		if fmt.Sprint(gerr) != fmt.Sprint(werr) {
			t.Fatalf("%s %x: got %v, package cbor %v", kind, payload, gerr, werr)
		}
		if werr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%s %x:\ngot  %+v\nwant %+v", kind, payload, got, want)
		}
		if werr != nil && !errors.Is(gerr, errors.Unwrap(werr)) {
			t.Fatalf("%s %x: %v does not match the same sentinel", kind, payload, gerr)
		}
	})
}
