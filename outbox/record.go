package outbox

// Seq numbers records within an epoch: the first record is 1 and each record
// gets the next number. A Seq is never handed out twice within an epoch.
type Seq uint64

// Epoch identifies one unbroken sequence of a device's records. It is a random
// positive 63-bit integer chosen when the outbox is created, and anew whenever
// the outbox cannot prove that its sequence is intact.
type Epoch uint64

// Op is what a record does to its key at the sink.
type Op uint8

// The operations of a record.
const (
	OpUpsert Op = 0
	OpDelete Op = 1
)

func (o Op) String() string {
	switch o {
	case OpUpsert:
		return "upsert"
	case OpDelete:
		return "delete"
	}
	return "unknown"
}

// Record is one captured record. Append assigns Seq; everything else is the
// producer's.
type Record struct {
	Seq           Seq    // assigned by Append
	Stream        string // [A-Za-z0-9._-], 1..64
	Key           string // may be empty
	ID            string // the producer's idempotency key; may be empty
	Op            Op
	Schema        string // schema name; empty when the record has no schema
	SchemaVersion uint32 // > 0 when Schema is set
	CapturedAt    int64  // unix nanoseconds: the producer's time of the event
	Data          []byte // the data as one CBOR item
}

// Range is an inclusive range of sequence numbers.
type Range struct {
	First, Last Seq
}

// Len is the number of sequence numbers in r.
func (r Range) Len() uint64 {
	if r.Last < r.First {
		return 0
	}
	return uint64(r.Last-r.First) + 1
}
