package wire

import "unicode/utf8"

// EncodeAck validates a and appends its payload (plain CBOR, never
// compressed) to dst. It returns dst unchanged and an error matching
// ErrTooLarge when the payload would be over MaxAckBytes or a has more than
// MaxParked parked ranges.
func EncodeAck(dst []byte, a *Ack) ([]byte, error) {
	if err := a.Validate(); err != nil {
		return dst, err
	}
	return encodeCBOR("ack", dst, a, MaxAckBytes)
}

// DecodeAck decodes and validates a payload published on {p}/{d}/ack. The
// caller still has to check that Device is its own.
func DecodeAck(payload []byte) (*Ack, error) {
	a := new(Ack)
	if err := decodeCBOR("ack", ackDec, payload, MaxAckBytes, a); err != nil {
		return nil, err
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	return a, nil
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
