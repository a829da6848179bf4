package resync

import (
	"errors"
	"fmt"
)

// Sentinel errors of bundles. Every error a Reader, a Writer or Import
// returns about the bundle itself matches exactly one of them with errors.Is,
// and most are a *BundleError saying where in the file the problem is.
var (
	// ErrNotBundle: the file does not start with the bundle magic line. It
	// is some other file; nothing was read from it.
	ErrNotBundle = errors.New("bundle: not an edgesync bundle")
	// ErrVersion: the bundle (or its header) is of a format version this
	// binary does not read. Upgrade edgesync where the bundle is imported.
	ErrVersion = errors.New("bundle: unsupported format version")
	// ErrTruncated: the file ends before its trailer: the copy is
	// incomplete. Copy the bundle again.
	ErrTruncated = errors.New("bundle: truncated: the copy is incomplete")
	// ErrDamaged: bytes of the file changed after it was written (a frame's
	// CRC-32C or the trailer's SHA-256 does not match, a frame type or length
	// is impossible). Copy the bundle again, or export again.
	ErrDamaged = errors.New("bundle: the file is damaged")
	// ErrInvalid: the bundle is intact (its checksums match) but breaks a
	// rule of the format: a batch of another device or epoch, records out of
	// order, counts that disagree with the trailer. The bundle was written
	// wrongly or forged; it is refused as a whole.
	ErrInvalid = errors.New("bundle: invalid")
	// ErrClosed: WriteBatch or Close after Close, or after an earlier error.
	ErrClosed = errors.New("bundle: writer closed")
)

// BundleError says what is wrong where in a bundle, for example
//
//	bundle: batch 3 at byte 1048601: checksum mismatch: the file is damaged
//
// Err is the sentinel it matches (ErrNotBundle, ErrVersion, ErrTruncated,
// ErrDamaged or ErrInvalid); Cause, when set, is the underlying error (an
// I/O error, a wire.FieldError).
type BundleError struct {
	Where  string // "magic", "header", "batch 3", "trailer", or "" for the file as a whole
	Offset int64  // the byte offset of the frame (or of the problem) in the file
	Reason string
	Err    error
	Cause  error
}

func (e *BundleError) Error() string {
	s := "bundle: "
	if e.Where != "" {
		s += fmt.Sprintf("%s at byte %d: ", e.Where, e.Offset)
	}
	return s + e.Reason
}

// Unwrap returns the sentinel and the cause.
func (e *BundleError) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Err, e.Cause}
	}
	return []error{e.Err}
}

// Sentinel errors of receipts. Every error of DecodeReceipt, ParseReceipt,
// SignReceipt, VerifyReceipt and Acknowledge about the receipt matches one
// of them.
var (
	// ErrReceiptMalformed: the bytes are not a receipt (not CBOR of the
	// receipt's shape, not in canonical form, too large, trailing bytes).
	ErrReceiptMalformed = errors.New("receipt: malformed")
	// ErrReceiptVersion: a receipt of a version this binary does not read.
	ErrReceiptVersion = errors.New("receipt: unsupported version")
	// ErrReceiptInvalid: a field breaks a rule (an invalid device id, a hash
	// of the wrong length, ...), or the receipt is for another device.
	ErrReceiptInvalid = errors.New("receipt: invalid")
	// ErrUnsigned: the receipt carries no signature.
	ErrUnsigned = errors.New("receipt: not signed")
	// ErrUnknownKey: the receipt's key_id names none of the trusted keys.
	// Add the sink's public key to resync.trusted_keys, or get a receipt
	// from a trusted sink.
	ErrUnknownKey = errors.New("receipt: signed by a key that is not trusted")
	// ErrBadSignature: the signature does not verify with the trusted key
	// its key_id names: the receipt was altered after signing.
	ErrBadSignature = errors.New("receipt: bad signature: the receipt was altered after it was signed")
)

// ReceiptError names the receipt field that is wrong. Err is
// ErrReceiptInvalid or ErrReceiptVersion.
type ReceiptError struct {
	Field  string // "device", "epoch", ...
	Reason string
	Err    error
}

func (e *ReceiptError) Error() string { return "receipt: " + e.Field + ": " + e.Reason }

// Unwrap returns the sentinel.
func (e *ReceiptError) Unwrap() error { return e.Err }
