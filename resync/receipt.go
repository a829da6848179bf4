package resync

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/edgesync/edgesync/internal/cbormsg"
	"github.com/edgesync/edgesync/outbox"
	"github.com/edgesync/edgesync/transport/wire"
)

// ReceiptVersion is the receipt version this package writes and reads.
const ReceiptVersion = 1

// MaxReceiptBytes bounds an encoded receipt (a valid one is under 300 bytes).
const MaxReceiptBytes = 1 << 10

// receiptDomain starts every signed receipt message, so that a signature
// over a receipt can never be taken for one over anything else (a config).
const receiptDomain = "edgesync-receipt-v1\n"

// Receipt is the sink's signed statement that it applied a bundle: for
// (Device, Epoch), every seq through AppliedThrough is applied, parked,
// a duplicate or counted as lost. On the device, ack-import treats it as an
// acknowledgement. Encoded as a CBOR map with the integer keys below, in
// canonical form (see docs/RESYNC.md).
type Receipt struct {
	V              uint64       `cbor:"1,keyasint"`  // ReceiptVersion
	Device         string       `cbor:"2,keyasint"`  // the device id
	Epoch          outbox.Epoch `cbor:"3,keyasint"`  // 1..2^63-1
	AppliedThrough outbox.Seq   `cbor:"4,keyasint"`  // the sink's applied_through after the import
	Status         uint8        `cbor:"5,keyasint"`  // of the last batch: wire.StatusOK, StatusGap, StatusPaused
	SinkID         string       `cbor:"6,keyasint"`  // the sink_id of the importing sink: 1..64 of [A-Za-z0-9._-]
	Time           int64        `cbor:"7,keyasint"`  // the sink's wall clock at import, unix ns
	BundleSHA256   []byte       `cbor:"8,keyasint"`  // SHA-256 of the bundle file it answers, 32 bytes
	KeyID          string       `cbor:"9,keyasint"`  // wire.KeyIDOf the signing key's public key
	Signature      []byte       `cbor:"10,keyasint"` // ed25519 over SigningMessage, 64 bytes
}

// SigningMessage returns the bytes a receipt's signature covers:
//
//	"edgesync-receipt-v1\n" Device "\n" Epoch "\n" AppliedThrough "\n"
//	Status "\n" Time "\n" hex(BundleSHA256) "\n" KeyID "\n" SinkID
//
// with the integers in decimal (Time with a leading "-" when negative) and
// the hash in lowercase hex. No field can hold a newline, so the message is
// unambiguous. Binding Device and Epoch keeps a receipt for one device (or
// epoch) from acknowledging another's records; binding KeyID keeps a
// signature from being presented under another key's name.
func (r *Receipt) SigningMessage() []byte {
	b := make([]byte, 0, len(receiptDomain)+len(r.Device)+len(r.SinkID)+len(r.KeyID)+2*len(r.BundleSHA256)+80)
	b = append(b, receiptDomain...)
	b = append(b, r.Device...)
	b = append(b, '\n')
	b = strconv.AppendUint(b, uint64(r.Epoch), 10)
	b = append(b, '\n')
	b = strconv.AppendUint(b, uint64(r.AppliedThrough), 10)
	b = append(b, '\n')
	b = strconv.AppendUint(b, uint64(r.Status), 10)
	b = append(b, '\n')
	b = strconv.AppendInt(b, r.Time, 10)
	b = append(b, '\n')
	b = hex.AppendEncode(b, r.BundleSHA256)
	b = append(b, '\n')
	b = append(b, r.KeyID...)
	b = append(b, '\n')
	return append(b, r.SinkID...)
}

// validName reports whether s is 1..64 characters of [A-Za-z0-9._-].
func validName(s string) bool {
	if len(s) == 0 || len(s) > wire.MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validateFields checks every field but the signature: the fields SignReceipt
// needs. It returns a *ReceiptError.
func (r *Receipt) validateFields() error {
	bad := func(field, format string, args ...any) error {
		return &ReceiptError{Field: field, Reason: fmt.Sprintf(format, args...), Err: ErrReceiptInvalid}
	}
	switch {
	case r.V == 0:
		return bad("v", "missing, want %d", ReceiptVersion)
	case r.V != ReceiptVersion:
		return &ReceiptError{Field: "v", Reason: fmt.Sprintf("version %d; this edgesync reads version %d: upgrade edgesync", r.V, ReceiptVersion), Err: ErrReceiptVersion}
	case !wire.ValidDeviceID(r.Device):
		return bad("device", "%q is not a valid device id", cut(r.Device))
	case !wire.ValidEpoch(uint64(r.Epoch)):
		return bad("epoch", "%d is not in 1..2^63-1", r.Epoch)
	case r.Status > wire.StatusPaused:
		return bad("status", "%d is not 0 (ok), 1 (gap) or 2 (paused)", r.Status)
	case !validName(r.SinkID):
		return bad("sink_id", "%q is not 1..64 characters of [A-Za-z0-9._-]", cut(r.SinkID))
	case len(r.BundleSHA256) != sha256.Size:
		return bad("bundle_sha256", "%d bytes, want %d", len(r.BundleSHA256), sha256.Size)
	}
	return nil
}

// Validate reports the first rule r breaks: the fields must be valid and
// the receipt signed (a key id and a 64-byte signature; whether it verifies
// is VerifyReceipt's business). It returns a *ReceiptError, or ErrUnsigned.
func (r *Receipt) Validate() error {
	if err := r.validateFields(); err != nil {
		return err
	}
	if r.KeyID == "" && len(r.Signature) == 0 {
		return ErrUnsigned
	}
	if !wire.ValidKeyID(r.KeyID) {
		return &ReceiptError{Field: "key_id", Reason: fmt.Sprintf("%q is not a valid key id", cut(r.KeyID)), Err: ErrReceiptInvalid}
	}
	if len(r.Signature) != ed25519.SignatureSize {
		return &ReceiptError{Field: "signature", Reason: fmt.Sprintf("%d bytes, want %d", len(r.Signature), ed25519.SignatureSize), Err: ErrReceiptInvalid}
	}
	return nil
}

// SignReceipt sets r.V (when 0), r.KeyID to wire.KeyIDOf(key's public key)
// and r.Signature to the ed25519 signature of r.SigningMessage().
func SignReceipt(r *Receipt, key ed25519.PrivateKey) error {
	if len(key) != ed25519.PrivateKeySize {
		return fmt.Errorf("receipt: sign: private key of %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	if r.V == 0 {
		r.V = ReceiptVersion
	}
	if err := r.validateFields(); err != nil {
		return err
	}
	r.KeyID = wire.KeyIDOf(key.Public().(ed25519.PublicKey))
	r.Signature = ed25519.Sign(key, r.SigningMessage())
	return nil
}

// VerifyReceipt checks that r is valid and signed by one of the trusted
// keys: the one its KeyID names (wire.KeyIDOf). It returns ErrUnsigned,
// an error matching ErrUnknownKey when no trusted key has that id, or
// ErrBadSignature when the signature does not verify.
func VerifyReceipt(r *Receipt, trusted []ed25519.PublicKey) error {
	if err := r.Validate(); err != nil {
		return err
	}
	known := false
	msg := r.SigningMessage()
	for _, k := range trusted {
		if len(k) != ed25519.PublicKeySize || wire.KeyIDOf(k) != r.KeyID {
			continue
		}
		known = true
		if ed25519.Verify(k, msg, r.Signature) {
			return nil
		}
	}
	if known {
		return ErrBadSignature
	}
	ids := make([]string, 0, len(trusted))
	for _, k := range trusted {
		if len(k) == ed25519.PublicKeySize {
			ids = append(ids, wire.KeyIDOf(k))
		}
	}
	if len(ids) == 0 {
		return fmt.Errorf("%w: key %s (no key is trusted: set resync.trusted_keys)", ErrUnknownKey, r.KeyID)
	}
	return fmt.Errorf("%w: key %s, trusted keys: %s", ErrUnknownKey, r.KeyID, strings.Join(ids, ", "))
}

// EncodeReceipt validates r and returns its canonical CBOR encoding (core
// deterministic, every key present).
func EncodeReceipt(r *Receipt) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return appendReceipt(nil, r), nil
}

// appendReceipt writes r as package cbor's core deterministic encoding of
// the Receipt struct would: every key in ascending order, a nil byte slice
// as null.
func appendReceipt(dst []byte, r *Receipt) []byte {
	dst = cbormsg.AppendHead(dst, cbormsg.MajorMap, 10)
	dst = cbormsg.AppendUint(key(dst, 1), r.V)
	dst = cbormsg.AppendText(key(dst, 2), r.Device)
	dst = cbormsg.AppendUint(key(dst, 3), uint64(r.Epoch))
	dst = cbormsg.AppendUint(key(dst, 4), uint64(r.AppliedThrough))
	dst = cbormsg.AppendUint(key(dst, 5), uint64(r.Status))
	dst = cbormsg.AppendText(key(dst, 6), r.SinkID)
	dst = cbormsg.AppendInt(key(dst, 7), r.Time)
	dst = cbormsg.AppendBytes(key(dst, 8), r.BundleSHA256)
	dst = cbormsg.AppendText(key(dst, 9), r.KeyID)
	return cbormsg.AppendBytes(key(dst, 10), r.Signature)
}

// decodeReceipt decodes b into r as package cbor would decode it into the
// Receipt struct.
func decodeReceipt(b []byte, r *Receipt) error {
	return cbormsg.Unmarshal(b, msgLimits, "resync.Receipt", []cbormsg.Field{
		{Key: 1, Dest: &r.V},
		{Key: 2, Dest: &r.Device},
		{Key: 3, Dest: (*uint64)(&r.Epoch), Type: "outbox.Epoch"},
		{Key: 4, Dest: (*uint64)(&r.AppliedThrough), Type: "outbox.Seq"},
		{Key: 5, Dest: &r.Status},
		{Key: 6, Dest: &r.SinkID},
		{Key: 7, Dest: &r.Time},
		{Key: 8, Dest: &r.BundleSHA256},
		{Key: 9, Dest: &r.KeyID},
		{Key: 10, Dest: &r.Signature},
	})
}

// DecodeReceipt decodes and validates a receipt. It is strict: at most
// MaxReceiptBytes; a CBOR map with exactly the keys 1..10 in canonical form
// (what EncodeReceipt writes, so that one receipt has exactly one
// encoding), nothing after it; every field valid and a signature present.
// It does not verify the signature: VerifyReceipt does.
func DecodeReceipt(b []byte) (*Receipt, error) {
	if len(b) > MaxReceiptBytes {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrReceiptMalformed, len(b), MaxReceiptBytes)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrReceiptMalformed)
	}
	r := new(Receipt)
	if err := decodeReceipt(b, r); err != nil {
		if v, ok := version(b); ok && v > ReceiptVersion {
			return nil, &ReceiptError{Field: "v", Reason: fmt.Sprintf("version %d; this edgesync reads version %d: upgrade edgesync", v, ReceiptVersion), Err: ErrReceiptVersion}
		}
		return nil, fmt.Errorf("%w: %v", ErrReceiptMalformed, err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if canon := appendReceipt(nil, r); !bytes.Equal(canon, b) {
		return nil, fmt.Errorf("%w: not in canonical form (a key missing, unknown or out of order, or an integer not in its shortest form)", ErrReceiptMalformed)
	}
	return r, nil
}

// ParseReceipt decodes the receipt file that import writes (its binary CBOR
// form, exactly DecodeReceipt's input). Given the JSON rendering instead it
// says so.
func ParseReceipt(file []byte) (*Receipt, error) {
	if t := bytes.TrimLeft(file, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		return nil, fmt.Errorf("%w: this is the JSON rendering of a receipt, which is for reading only; give the binary receipt file that import wrote", ErrReceiptMalformed)
	}
	return DecodeReceipt(file)
}

// receiptJSON is the human-readable rendering of a receipt.
type receiptJSON struct {
	V              uint64 `json:"v"`
	Device         string `json:"device"`
	Epoch          string `json:"epoch"` // a string: JSON numbers lose precision above 2^53
	AppliedThrough uint64 `json:"applied_through"`
	Status         string `json:"status"`
	SinkID         string `json:"sink_id"`
	Time           string `json:"time"` // RFC 3339, UTC
	BundleSHA256   string `json:"bundle_sha256"`
	KeyID          string `json:"key_id"`
	Signature      string `json:"signature"` // standard base64
}

// StatusName returns "ok", "gap", "paused", or the number for another value.
func StatusName(s uint8) string {
	switch s {
	case wire.StatusOK:
		return "ok"
	case wire.StatusGap:
		return "gap"
	case wire.StatusPaused:
		return "paused"
	}
	return strconv.Itoa(int(s))
}

// JSON renders r for people (indented, epoch as a string, time in RFC 3339,
// hash in hex). It is not a format ParseReceipt reads: the binary receipt
// is the one that travels.
func (r *Receipt) JSON() []byte {
	out, err := json.MarshalIndent(receiptJSON{
		V:              r.V,
		Device:         r.Device,
		Epoch:          strconv.FormatUint(uint64(r.Epoch), 10),
		AppliedThrough: uint64(r.AppliedThrough),
		Status:         StatusName(r.Status),
		SinkID:         r.SinkID,
		Time:           time.Unix(0, r.Time).UTC().Format(time.RFC3339Nano),
		BundleSHA256:   hex.EncodeToString(r.BundleSHA256),
		KeyID:          r.KeyID,
		Signature:      base64.StdEncoding.EncodeToString(r.Signature),
	}, "", "  ")
	if err != nil {
		panic(err) // strings and integers only: cannot fail
	}
	return append(out, '\n')
}

// Acker is what Acknowledge needs of the outbox (*outbox.Outbox has it).
type Acker interface {
	Ack(e outbox.Epoch, through outbox.Seq) (outbox.AckResult, error)
}

// Acknowledge is ack-import: it verifies r against the trusted keys, checks
// that it is for device, and acknowledges r.AppliedThrough of r.Epoch to
// the outbox, exactly as an ack from the sink over MQTT would. Like an ack
// it is cumulative and idempotent: a receipt at or below the watermark
// changes nothing (AckResult.Advanced is false), and one for an older epoch
// returns an error matching outbox.ErrStaleEpoch and changes nothing. A
// receipt above the head means the device's disk was restored after the
// export: the outbox starts a new epoch (outbox.ErrAckAboveHead), as it
// would for such an ack.
func Acknowledge(ob Acker, device string, r *Receipt, trusted []ed25519.PublicKey) (outbox.AckResult, error) {
	if err := VerifyReceipt(r, trusted); err != nil {
		return outbox.AckResult{}, err
	}
	if r.Device != device {
		return outbox.AckResult{}, &ReceiptError{Field: "device",
			Reason: fmt.Sprintf("the receipt is for device %q, this is %q: nothing acknowledged", r.Device, device), Err: ErrReceiptInvalid}
	}
	res, err := ob.Ack(r.Epoch, r.AppliedThrough)
	if errors.Is(err, outbox.ErrStaleEpoch) {
		return res, fmt.Errorf("receipt: for epoch %d, which is not the outbox's epoch: nothing acknowledged: %w", r.Epoch, err)
	}
	if err != nil {
		return res, fmt.Errorf("receipt: acknowledge %d of epoch %d: %w", r.AppliedThrough, r.Epoch, err)
	}
	return res, nil
}
