package wire

import "github.com/fxamacker/cbor/v2"

// Version is the protocol version this package writes. Decoders refuse any
// other version with ErrVersion.
const Version = 1

// Limits enforced by both encoder and decoder (see docs/PROTOCOL.md).
const (
	// MaxBatchBytes is the largest compressed (or uncompressed, for
	// compression none) batch payload on the wire: well under mosquitto's
	// default max_packet_size of 2,000,000 bytes.
	MaxBatchBytes = 1 << 20
	// MaxDecodedBytes is the largest CBOR body a batch may decompress to.
	MaxDecodedBytes = 8 << 20
	// MaxRecords is the largest number of records in one batch.
	MaxRecords = 10000
	// MaxDrops is the largest number of dropped ranges in one batch.
	MaxDrops = 1000
	// MaxParked is the largest number of parked ranges in one ack.
	MaxParked = 1000
	// MaxAckBytes is the largest ack payload.
	MaxAckBytes = 64 << 10
	// MaxControlBytes is the largest config, config status, state or cmd payload.
	MaxControlBytes = 256 << 10
)

// Compression of a batch body, written as the first byte of the payload.
const (
	CompressionNone byte = 0
	CompressionZstd byte = 1
)

// Op values on the wire.
const (
	OpUpsert uint8 = 0
	OpDelete uint8 = 1
)

// Range is an inclusive range of sequence numbers: [First, Last].
type Range struct {
	_     struct{} `cbor:",toarray"`
	First uint64   `json:"first"`
	Last  uint64   `json:"last"`
}

// Record is one record in a batch.
type Record struct {
	_             struct{}        `cbor:",toarray"`
	Seq           uint64          `json:"seq"`
	Stream        string          `json:"stream"`
	Key           string          `json:"key"`
	ID            string          `json:"id"` // the producer's idempotency key; "" when none
	Op            uint8           `json:"op"`
	Schema        string          `json:"schema"`         // name; "" when none
	SchemaVersion uint32          `json:"schema_version"` // 0 when Schema is ""
	CapturedAt    int64           `json:"captured_at"`    // unix nanoseconds
	Data          cbor.RawMessage `json:"data"`           // one CBOR data item (base64 in JSON)
}

// Batch is what the agent publishes on {p}/{d}/up.
type Batch struct {
	V       uint8    `cbor:"1,keyasint" json:"v"`
	Device  string   `cbor:"2,keyasint" json:"device"`
	Epoch   uint64   `cbor:"3,keyasint" json:"epoch"`
	First   uint64   `cbor:"4,keyasint" json:"first"` // seq of the first record; 0 when there are none
	Last    uint64   `cbor:"5,keyasint" json:"last"`  // seq of the last record; 0 when there are none
	Acked   uint64   `cbor:"6,keyasint" json:"acked"` // the agent's acknowledged watermark
	Drops   []Range  `cbor:"7,keyasint,omitempty" json:"drops,omitempty"`
	SentAt  int64    `cbor:"8,keyasint" json:"sent_at"` // unix nanoseconds, the agent's wall clock
	SendID  uint64   `cbor:"9,keyasint" json:"send_id"` // grows with every publish of this agent process; echoed in the ack
	Records []Record `cbor:"10,keyasint,omitempty" json:"records,omitempty"`
}

// Ack status values.
const (
	StatusOK     uint8 = 0
	StatusGap    uint8 = 1
	StatusPaused uint8 = 2
)

// Parked is a range of records the sink parked, with why.
type Parked struct {
	_      struct{} `cbor:",toarray"`
	First  uint64   `json:"first"`
	Last   uint64   `json:"last"`
	Reason string   `json:"reason"`
}

// Ack is what the sink publishes on {p}/{d}/ack.
type Ack struct {
	V              uint8    `cbor:"1,keyasint" json:"v"`
	Device         string   `cbor:"2,keyasint" json:"device"`
	Epoch          uint64   `cbor:"3,keyasint" json:"epoch"`
	AppliedThrough uint64   `cbor:"4,keyasint" json:"applied_through"` // cumulative: every seq <= it is applied (or parked, or lost)
	Status         uint8    `cbor:"5,keyasint" json:"status"`
	Parked         []Parked `cbor:"6,keyasint,omitempty" json:"parked,omitempty"`
	SinkID         string   `cbor:"7,keyasint" json:"sink_id"`
	InReplyTo      uint64   `cbor:"8,keyasint,omitempty" json:"in_reply_to,omitempty"` // the SendID of the batch this answers; 0 when unprompted
}
