package wire

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/edgesync/edgesync/internal/cbormsg"
)

// MaxDataDepth is how deeply arrays, maps and tags may nest inside
// Record.Data (a flat map is depth 1): the same as internal/jsoncbor's
// MaxDepth, so that whatever ingest accepts can be sent. Arrays and maps in
// Record.Data have no limit on their number of elements but the body's size.
const MaxDataDepth = 64

// zstdWindow is the encoder's window: batches are at most a few hundred KiB
// before compression, so a larger window gains nothing and costs memory.
const zstdWindow = 1 << 20

// zstdSlack is room past a frame's declared content size in a decode buffer,
// so that a frame that lies about its size fails at its first extra block
// without the buffer ever being reallocated: one decoded block (at most
// 128 KiB by the zstd format) plus the decoder's over-allocation.
const zstdSlack = 128<<10 + 64

// The limits of each message, as package cbor's DecOptions would set them.
var (
	// dataLimits check Record.Data, and the values of unknown keys of a
	// batch, which may hold anything well formed: indefinite lengths, tags.
	dataLimits = cbormsg.Limits{
		MaxNestedLevels:  MaxDataDepth,
		MaxArrayElements: math.MaxInt32,
		MaxMapPairs:      math.MaxInt32,
		Lenient:          true,
	}
	// ackLimits bound acks: a map holding an array of arrays.
	ackLimits = cbormsg.Limits{MaxNestedLevels: 4, MaxArrayElements: MaxParked, MaxMapPairs: 64}
	// controlLimits bound state, cmd, config and config status: flat maps,
	// except Cmd.Args, a map of strings.
	controlLimits = cbormsg.Limits{MaxNestedLevels: 4, MaxArrayElements: 16, MaxMapPairs: 64}
)

// ValidData reports whether data is exactly one well-formed CBOR data item
// nesting at most MaxDataDepth deep, with a *FieldError matching ErrInvalid
// when it is not. It does not look at what the item means: text that is not
// UTF-8, duplicate map keys or tags inside data are for the sink to park.
func ValidData(data []byte) error {
	if len(data) == 0 {
		return invalid("data", "", "missing")
	}
	if err := cbormsg.Wellformed(data, dataLimits); err != nil {
		return invalid("data", "", "not one well-formed CBOR item: "+err.Error())
	}
	return nil
}

// The zstd encoder and decoder are built on first use, so that a process
// that never compresses pays nothing for them.
var (
	zstdEncoder = sync.OnceValue(func() *zstd.Encoder {
		return mustEncoder(zstd.SpeedDefault)
	})
	zstdDecoder = sync.OnceValue(func() *zstd.Decoder {
		d, err := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(min(runtime.GOMAXPROCS(0), 4)),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxMemory(MaxDecodedBytes),
			zstd.WithDecoderMaxWindow(MaxDecodedBytes),
			zstd.WithDecodeAllCapLimit(true),
		)
		if err != nil {
			panic(err)
		}
		return d
	})
)

// mustEncoder builds the shared encoder: EncodeAll is safe for concurrent
// use; with concurrency 1 calls take turns, and memory stays at one
// encoder's worth (about 1 MiB with this window and lower memory).
func mustEncoder(level zstd.EncoderLevel) *zstd.Encoder {
	e, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(level),
		zstd.WithEncoderConcurrency(1),
		zstd.WithLowerEncoderMem(true),
		zstd.WithWindowSize(zstdWindow),
		// A single-segment frame always declares its content size, which
		// the decoder requires; it also saves the window byte.
		zstd.WithSingleSegment(true),
	)
	if err != nil {
		panic(err)
	}
	return e
}

// buffer is a pooled scratch buffer for batch bodies.
type buffer struct{ b []byte }

// maxPooled is the largest buffer kept for reuse; larger ones, needed only
// for unusually large batches, go to the garbage collector.
const maxPooled = 1 << 20

var bufPool = sync.Pool{New: func() any { return new(buffer) }}

func getBuffer(n int) *buffer {
	buf := bufPool.Get().(*buffer)
	if cap(buf.b) < n {
		buf.b = make([]byte, 0, n)
	}
	return buf
}

func putBuffer(buf *buffer) {
	if cap(buf.b) > maxPooled {
		return
	}
	buf.b = buf.b[:0]
	bufPool.Put(buf)
}

// unzstd decompresses a batch body. The body must be one zstd frame that
// declares its content size, at most MaxDecodedBytes: the size is checked
// from the frame header before anything is allocated, and the output buffer
// is sized to it, so a zip bomb fails without allocating more than
// MaxDecodedBytes plus one block. The caller releases the buffer.
func unzstd(in []byte) ([]byte, *buffer, error) {
	var h zstd.Header
	if err := h.Decode(in); err != nil {
		return nil, nil, malformed("batch", fmt.Errorf("zstd: %w", err))
	}
	switch {
	case h.Skippable:
		return nil, nil, malformed("batch", fmt.Errorf("zstd: skippable frame"))
	case h.DictionaryID != 0:
		return nil, nil, malformed("batch", fmt.Errorf("zstd: dictionary %d", h.DictionaryID))
	case !h.HasFCS || h.FrameContentSize == 0:
		return nil, nil, malformed("batch", fmt.Errorf("zstd: frame does not declare its content size"))
	case h.FrameContentSize > MaxDecodedBytes:
		return nil, nil, tooLarge("batch", "", fmt.Sprintf("decodes to %d bytes, more than %d", h.FrameContentSize, MaxDecodedBytes))
	}
	n := int(h.FrameContentSize)
	buf := getBuffer(n + zstdSlack)
	out, err := zstdDecoder().DecodeAll(in, buf.b[:0:n+zstdSlack])
	if err != nil {
		putBuffer(buf)
		if err == zstd.ErrDecoderSizeExceeded || err == zstd.ErrFrameSizeExceeded {
			return nil, nil, tooLarge("batch", "", "decodes to more than it declares")
		}
		return nil, nil, malformed("batch", fmt.Errorf("zstd: %w", err))
	}
	if len(out) != n {
		putBuffer(buf)
		return nil, nil, malformed("batch", fmt.Errorf("zstd: %d bytes after the frame", len(out)-n))
	}
	return out, buf, nil
}

// version peeks at key 1 of a CBOR map, to tell a message of another
// protocol version from a malformed one: it succeeds where package cbor
// would decode the map into struct{ V *uint64 `cbor:"1,keyasint"` }.
func version(l cbormsg.Limits, data []byte) (uint64, bool) {
	var v *uint64
	if cbormsg.Unmarshal(data, l, "", []cbormsg.Field{{Key: 1, Dest: &v}}) != nil || v == nil {
		return 0, false
	}
	return *v, true
}

func versionError(msg string, v uint64) *FieldError {
	return &FieldError{Message: msg, Field: "v", Reason: "version " + utoa(v) + ", want " + itoa(Version), Err: ErrVersion}
}

// decodeCBOR bounds, decodes and reports errors for every plain CBOR
// message: data must be a map, whose keys go to fields, as package cbor
// would decode it into the struct of Go type name.
func decodeCBOR(msg string, l cbormsg.Limits, data []byte, limit int, name string, fields []cbormsg.Field) error {
	if len(data) > limit {
		return tooLarge(msg, "", fmt.Sprintf("%d bytes, more than %d", len(data), limit))
	}
	if len(data) == 0 {
		return malformed(msg, fmt.Errorf("empty payload"))
	}
	if err := cbormsg.Unmarshal(data, l, name, fields); err != nil {
		if ver, ok := version(l, data); ok && ver != Version {
			return versionError(msg, ver)
		}
		return decodeError(msg, err)
	}
	return nil
}

// decodeError tells a CBOR limit (ErrTooLarge) from other decoding errors
// (ErrMalformed).
func decodeError(msg string, err error) *FieldError {
	var limit *cbormsg.LimitError
	if errors.As(err, &limit) {
		return tooLarge(msg, "", err.Error())
	}
	return malformed(msg, err)
}

// checkSize returns out, a message appended to dst[:n0], or dst[:n0] and
// ErrTooLarge when the message is over limit.
func checkSize(msg string, out []byte, n0, limit int) ([]byte, error) {
	if len(out)-n0 > limit {
		return out[:n0], tooLarge(msg, "", fmt.Sprintf("%d bytes, more than %d", len(out)-n0, limit))
	}
	return out, nil
}

// key appends a map key below 24 (every key of the protocol's messages).
func key(dst []byte, k byte) []byte { return append(dst, cbormsg.MajorUint|k) }
