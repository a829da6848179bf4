package resync

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strings"

	"github.com/edgesync/edgesync/transport/wire"
)

// readChunk is how much of a frame a Reader reads (and allocates) at a time,
// so that a length in a truncated file costs no more memory than the bytes
// that are really there.
const readChunk = 64 << 10

// Reader reads a bundle as a stream: NewReader reads the magic line and the
// header, Next returns the batches in order and io.EOF once it has read and
// verified the trailer. It holds at most one batch in memory. A Reader is
// not safe for concurrent use.
//
// Every batch frame's CRC-32C is verified before Next returns it, and every
// batch is decoded, validated (wire.DecodeBatch) and checked against the
// header (device, epoch, acked, seq order and range), so a damaged or foreign
// batch is never returned. The SHA-256 of the whole stream and the counts are
// verified against the trailer only at the end: a bundle whose tail is
// missing or damaged yields its intact batches first and then an error, never
// io.EOF. See Import for what that means for applying.
type Reader struct {
	br    *bufio.Reader
	h     hash.Hash // SHA-256 of every byte consumed
	n     int64     // bytes consumed
	hdr   Header
	buf   []byte // the current frame's payload
	batch wire.Batch
	chk   checker
	tr    Trailer
	err   error // sticky: io.EOF once done
	sum   [32]byte
}

// NewReader reads and checks the magic line and the header frame.
func NewReader(r io.Reader) (*Reader, error) {
	rd := &Reader{br: bufio.NewReaderSize(r, readChunk), h: sha256.New()}
	rd.chk.h = &rd.hdr
	if err := rd.readMagic(); err != nil {
		return nil, err
	}
	if err := rd.readHeader(); err != nil {
		return nil, err
	}
	return rd, nil
}

func (r *Reader) consumed(p []byte) {
	r.h.Write(p)
	r.n += int64(len(p))
}

func (r *Reader) readMagic() error {
	buf := make([]byte, len(Magic))
	k, err := io.ReadFull(r.br, buf)
	got := buf[:k]
	r.consumed(got)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return &BundleError{Reason: "read: " + err.Error(), Err: ErrTruncated, Cause: err}
	}
	if string(got) == Magic {
		return nil
	}
	switch {
	case k == 0:
		return &BundleError{Reason: "empty file: the copy is incomplete", Err: ErrTruncated}
	case k < len(Magic) && strings.HasPrefix(Magic, string(got)):
		return &BundleError{Reason: fmt.Sprintf("file of %d bytes ends inside the magic line: the copy is incomplete", k), Err: ErrTruncated}
	case bytes.HasPrefix(got, []byte(magicPrefix)):
		v := got[len(magicPrefix):]
		if i := bytes.IndexByte(v, '\n'); i >= 0 && i > 0 && isDigits(v[:i]) {
			return &BundleError{Reason: fmt.Sprintf("format version %s; this edgesync reads version %d: upgrade edgesync", v[:i], FormatVersion), Err: ErrVersion}
		}
		return &BundleError{Where: "magic", Offset: 0, Reason: "the magic line is damaged", Err: ErrDamaged}
	}
	return &BundleError{Reason: fmt.Sprintf("not an edgesync bundle: the file does not start with %q", strings.TrimSuffix(Magic, "\n")), Err: ErrNotBundle}
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// errNoFrame: the stream ended exactly where a frame would start.
var errNoFrame = errors.New("no frame")

// readFrame reads one frame and verifies its CRC. For a trailer frame it
// also returns the SHA-256 of every byte before the frame. The payload is
// valid until the next call.
func (r *Reader) readFrame() (typ byte, off int64, payload []byte, prefix []byte, err error) {
	off = r.n
	var head [5]byte
	k, err := io.ReadFull(r.br, head[:])
	if k == 0 && errors.Is(err, io.EOF) {
		return 0, off, nil, nil, errNoFrame
	}
	if err != nil {
		r.consumed(head[:k])
		return 0, off, nil, nil, r.readError("frame", off, "frame head", err)
	}
	typ = head[0]
	limit, ok := frameLimit(typ)
	if !ok {
		return 0, off, nil, nil, &BundleError{Where: "frame", Offset: off,
			Reason: fmt.Sprintf("unknown frame type 0x%02x: the file is damaged", typ), Err: ErrDamaged}
	}
	where := frameName(typ, r.chk.batches+1)
	if typ == frameTrailer {
		prefix = r.h.Sum(nil)
	}
	r.consumed(head[:])
	size := binary.BigEndian.Uint32(head[1:])
	if uint64(size) > uint64(limit) {
		return 0, off, nil, nil, &BundleError{Where: where, Offset: off,
			Reason: fmt.Sprintf("frame length %d is over the limit of %d: the file is damaged", size, limit), Err: ErrDamaged}
	}
	if err := r.readPayload(int(size)); err != nil {
		return 0, off, nil, nil, r.readError(where, off, "payload", err)
	}
	var crc [4]byte
	k, err = io.ReadFull(r.br, crc[:])
	r.consumed(crc[:k])
	if err != nil {
		return 0, off, nil, nil, r.readError(where, off, "checksum", err)
	}
	if binary.BigEndian.Uint32(crc[:]) != frameCRC(head, r.buf) {
		return 0, off, nil, nil, &BundleError{Where: where, Offset: off,
			Reason: "checksum mismatch: the file is damaged", Err: ErrDamaged}
	}
	return typ, off, r.buf, prefix, nil
}

// readPayload reads n bytes into r.buf, growing it a chunk at a time.
func (r *Reader) readPayload(n int) error {
	r.buf = r.buf[:0]
	for len(r.buf) < n {
		start := len(r.buf)
		chunk := min(n-start, readChunk)
		r.buf = slices.Grow(r.buf, chunk)[:start+chunk]
		k, err := io.ReadFull(r.br, r.buf[start:])
		r.consumed(r.buf[start : start+k])
		if err != nil {
			r.buf = r.buf[:start+k]
			return err
		}
	}
	return nil
}

func (r *Reader) readError(where string, off int64, part string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &BundleError{Where: where, Offset: off,
			Reason: fmt.Sprintf("file ends at byte %d inside the %s: truncated: the copy is incomplete", r.n, part), Err: ErrTruncated}
	}
	return &BundleError{Where: where, Offset: off, Reason: "read: " + err.Error(), Err: ErrTruncated, Cause: err}
}

func (r *Reader) readHeader() error {
	typ, off, payload, _, err := r.readFrame()
	if errors.Is(err, errNoFrame) {
		return &BundleError{Where: "header", Offset: off, Reason: "file ends after the magic line: truncated: the copy is incomplete", Err: ErrTruncated}
	}
	if err != nil {
		return err
	}
	if typ != frameHeader {
		return &BundleError{Where: "header", Offset: off, Reason: fmt.Sprintf("the first frame is a %s, not the header: the file is damaged", frameName(typ, 1)), Err: ErrDamaged}
	}
	if err := decodeHeader(payload, &r.hdr); err != nil {
		if v, ok := version(payload); ok && v > FormatVersion {
			return &BundleError{Where: "header", Offset: off,
				Reason: fmt.Sprintf("format version %d; this edgesync reads version %d: upgrade edgesync", v, FormatVersion), Err: ErrVersion}
		}
		return &BundleError{Where: "header", Offset: off, Reason: "malformed: " + err.Error(), Err: ErrInvalid, Cause: err}
	}
	if err := r.hdr.Validate(); err != nil {
		return err
	}
	return nil
}

// Header returns the bundle's header.
func (r *Reader) Header() Header { return r.hdr }

// Next returns the payload of the next batch, exactly as it was published
// on {p}/{d}/up; Batch returns it decoded. The payload is valid until the
// next call. After the last batch Next verifies the trailer (the SHA-256 of
// the stream, the batch and record counts) and that nothing follows it, and
// returns io.EOF; any problem is an error matching ErrTruncated, ErrDamaged
// or ErrInvalid instead. Errors are sticky.
func (r *Reader) Next() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	p, err := r.next()
	if err != nil {
		r.err = err
		return nil, err
	}
	return p, nil
}

func (r *Reader) next() ([]byte, error) {
	typ, off, payload, prefix, err := r.readFrame()
	if errors.Is(err, errNoFrame) {
		return nil, &BundleError{Where: "trailer", Offset: off,
			Reason: fmt.Sprintf("file ends after %d batches without a trailer: truncated: the copy is incomplete", r.chk.batches), Err: ErrTruncated}
	}
	if err != nil {
		return nil, err
	}
	switch typ {
	case frameHeader:
		return nil, &BundleError{Where: "header", Offset: off, Reason: "a second header: the file is damaged", Err: ErrDamaged}
	case frameTrailer:
		if err := r.finish(off, payload, prefix); err != nil {
			return nil, err
		}
		return nil, io.EOF
	}
	where := frameName(frameBatch, r.chk.batches+1)
	if err := wire.DecodeBatchInto(payload, &r.batch); err != nil {
		return nil, &BundleError{Where: where, Offset: off, Reason: err.Error(), Err: ErrInvalid, Cause: err}
	}
	if reason := r.chk.check(&r.batch); reason != "" {
		return nil, &BundleError{Where: where, Offset: off, Reason: reason, Err: ErrInvalid}
	}
	r.chk.accept(&r.batch)
	return payload, nil
}

func (r *Reader) finish(off int64, payload, prefix []byte) error {
	bad := func(sentinel error, format string, args ...any) error {
		return &BundleError{Where: "trailer", Offset: off, Reason: fmt.Sprintf(format, args...), Err: sentinel}
	}
	var tr Trailer
	if err := decodeTrailer(payload, &tr); err != nil {
		return bad(ErrInvalid, "malformed: %v", err)
	}
	if len(tr.SHA256) != sha256.Size {
		return bad(ErrInvalid, "SHA-256 of %d bytes, want %d", len(tr.SHA256), sha256.Size)
	}
	if !bytes.Equal(tr.SHA256, prefix) {
		return bad(ErrDamaged, "checksum mismatch: the file is damaged (the SHA-256 of the %d bytes before the trailer is %x, the trailer says %x)", off, prefix, tr.SHA256)
	}
	if tr.Batches != r.chk.batches || tr.Records != r.chk.records {
		return bad(ErrInvalid, "the trailer counts %d batches and %d records; the bundle holds %d and %d", tr.Batches, tr.Records, r.chk.batches, r.chk.records)
	}
	var one [1]byte
	if k, err := io.ReadFull(r.br, one[:]); k > 0 {
		return &BundleError{Where: "trailer", Offset: off, Reason: "bytes follow the trailer: the file is damaged", Err: ErrDamaged}
	} else if err != nil && !errors.Is(err, io.EOF) {
		return &BundleError{Where: "trailer", Offset: off, Reason: "read: " + err.Error(), Err: ErrTruncated, Cause: err}
	}
	r.tr = tr
	r.h.Sum(r.sum[:0])
	return nil
}

// Batch returns the batch Next returned last, decoded. It is overwritten by
// the next call to Next.
func (r *Reader) Batch() *wire.Batch { return &r.batch }

// Batches returns the number of batches returned so far.
func (r *Reader) Batches() uint64 { return r.chk.batches }

// Records returns the number of records in the batches returned so far.
func (r *Reader) Records() uint64 { return r.chk.records }

// Trailer returns the trailer once Next has returned io.EOF.
func (r *Reader) Trailer() Trailer { return r.tr }

// Sum returns the SHA-256 of the whole bundle (what sha256sum prints) once
// Next has returned io.EOF; the zero array before.
func (r *Reader) Sum() [32]byte { return r.sum }

// Bytes returns the number of bytes read so far.
func (r *Reader) Bytes() int64 { return r.n }
