package wire

import (
	"unicode/utf8"

	"github.com/edgesync/edgesync/internal/cbormsg"
)

// EncodeAck validates a and appends its payload (plain CBOR, never
// compressed) to dst. It returns dst unchanged and an error matching
// ErrTooLarge when the payload would be over MaxAckBytes or a has more than
// MaxParked parked ranges.
func EncodeAck(dst []byte, a *Ack) ([]byte, error) {
	if err := a.Validate(); err != nil {
		return dst, err
	}
	return checkSize("ack", appendAck(dst, a), len(dst), MaxAckBytes)
}

// appendAck writes a as package cbor's core deterministic encoding of the
// Ack struct would: keys in ascending order, Parked and InReplyTo left out
// when empty.
func appendAck(dst []byte, a *Ack) []byte {
	pairs := uint64(6)
	if len(a.Parked) > 0 {
		pairs++
	}
	if a.InReplyTo != 0 {
		pairs++
	}
	dst = cbormsg.AppendHead(dst, cbormsg.MajorMap, pairs)
	dst = cbormsg.AppendUint(key(dst, 1), uint64(a.V))
	dst = cbormsg.AppendText(key(dst, 2), a.Device)
	dst = cbormsg.AppendUint(key(dst, 3), a.Epoch)
	dst = cbormsg.AppendUint(key(dst, 4), a.AppliedThrough)
	dst = cbormsg.AppendUint(key(dst, 5), uint64(a.Status))
	if len(a.Parked) > 0 {
		dst = cbormsg.AppendHead(key(dst, 6), cbormsg.MajorArray, uint64(len(a.Parked)))
		for _, p := range a.Parked {
			dst = append(dst, cbormsg.MajorArray|3)
			dst = cbormsg.AppendUint(dst, p.First)
			dst = cbormsg.AppendUint(dst, p.Last)
			dst = cbormsg.AppendText(dst, p.Reason)
		}
	}
	dst = cbormsg.AppendText(key(dst, 7), a.SinkID)
	if a.InReplyTo != 0 {
		dst = cbormsg.AppendUint(key(dst, 8), a.InReplyTo)
	}
	return dst
}

// DecodeAck decodes and validates a payload published on {p}/{d}/ack. The
// caller still has to check that Device is its own.
func DecodeAck(payload []byte) (*Ack, error) {
	a := new(Ack)
	if err := decodeCBOR("ack", ackLimits, payload, MaxAckBytes, "wire.Ack", a.fields()); err != nil {
		return nil, err
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	return a, nil
}

// fields are where the decoder puts each key's value.
func (a *Ack) fields() []cbormsg.Field {
	parked := &cbormsg.Structs{
		Type: "[]wire.Parked", ElemType: "wire.Parked", NumField: 3,
		Make: func(n int) {
			a.Parked = nil
			if n >= 0 {
				a.Parked = make([]Parked, n)
			}
		},
		Field: func(i, j int) any {
			p := &a.Parked[i]
			switch j {
			case 0:
				return &p.First
			case 1:
				return &p.Last
			}
			return &p.Reason
		},
	}
	return []cbormsg.Field{
		{Key: 1, Dest: &a.V},
		{Key: 2, Dest: &a.Device},
		{Key: 3, Dest: &a.Epoch},
		{Key: 4, Dest: &a.AppliedThrough},
		{Key: 5, Dest: &a.Status},
		{Key: 6, Dest: parked},
		{Key: 7, Dest: &a.SinkID},
		{Key: 8, Dest: &a.InReplyTo},
	}
}

// Validate reports the first rule a breaks, as a *FieldError naming the
// field: V is Version; Device is a valid device id; Epoch is in 1..2^63-1;
// Status is StatusOK, StatusGap or StatusPaused; SinkID is valid UTF-8 of
// 1..MaxSinkIDBytes; at most MaxParked parked ranges, each with
// 1 <= First <= Last <= AppliedThrough (parked records count as applied),
// ascending and not overlapping, with a reason of at most MaxReasonBytes.
func (a *Ack) Validate() error {
	const m = "ack"
	if a.V != Version {
		return versionError(m, uint64(a.V))
	}
	if !ValidDeviceID(a.Device) {
		return invalidValue(m, "device", a.Device)
	}
	if !ValidEpoch(a.Epoch) {
		return invalid(m, "epoch", "must be in 1..2^63-1, got "+utoa(a.Epoch))
	}
	if a.Status > StatusPaused {
		return invalid(m, "status", "unknown status "+itoa(int(a.Status)))
	}
	if a.SinkID == "" || !validText(a.SinkID, MaxSinkIDBytes) {
		return invalid(m, "sink_id", "must be valid UTF-8 of 1.."+itoa(MaxSinkIDBytes)+" bytes")
	}
	if len(a.Parked) > MaxParked {
		return tooLarge(m, "parked", itoa(len(a.Parked))+" ranges, more than "+itoa(MaxParked))
	}
	var prev uint64
	for i, p := range a.Parked {
		f := "parked[" + itoa(i) + "]"
		if p.First == 0 || p.First > p.Last {
			return invalid(m, f, "bad range ["+utoa(p.First)+","+utoa(p.Last)+"]")
		}
		if i > 0 && p.First <= prev {
			return invalid(m, f, "range ["+utoa(p.First)+","+utoa(p.Last)+"] not after the previous one, which ends at "+utoa(prev))
		}
		if p.Last > a.AppliedThrough {
			return invalid(m, f, "range ["+utoa(p.First)+","+utoa(p.Last)+"] past applied_through "+utoa(a.AppliedThrough))
		}
		if len(p.Reason) > MaxReasonBytes || !utf8.ValidString(p.Reason) {
			return invalid(m, f+".reason", "must be valid UTF-8 of at most "+itoa(MaxReasonBytes)+" bytes")
		}
		prev = p.Last
	}
	return nil
}
