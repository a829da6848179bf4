package wire

// EncodeRecord appends one record in its wire form (the 9-element array a
// batch holds), for storage outside a batch: the sink keeps parked records
// this way.
func EncodeRecord(dst []byte, r *Record) []byte { return appendRecord(dst, r) }

// DecodeRecord reads one record written by EncodeRecord; nothing may follow
// it. The record's Data is a copy.
func DecodeRecord(b []byte) (*Record, error) {
	r := bodyReader{b: b}
	var rec Record
	if !r.record(&rec) {
		return nil, r.err
	}
	if r.off != len(b) {
		return nil, invalid("record", "", "trailing bytes after the record")
	}
	return &rec, nil
}
