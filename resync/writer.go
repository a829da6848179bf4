package resync

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"

	"github.com/edgesync/edgesync/transport/wire"
)

// Writer writes a bundle: NewWriter writes the magic line and the header,
// WriteBatch one batch frame per call, Close the trailer. It refuses to
// write anything a Reader would refuse: every batch is decoded and checked
// against the header before it is written. A Writer is not safe for
// concurrent use.
//
// A Writer buffers; nothing is complete before Close returns nil. After an
// error every later call returns it: the output is then incomplete, and a
// Reader reports it as truncated. Write to a temporary file and rename it
// once Close succeeded.
type Writer struct {
	bw     *bufio.Writer
	h      hash.Hash // SHA-256 of every byte written so far
	hdr    Header
	n      int64
	chk    checker
	batch  wire.Batch // decode scratch
	err    error
	closed bool
	sum    [32]byte
}

// NewWriter validates h (filling in V when it is 0), and writes the magic
// line and the header frame to w.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	if h.V == 0 {
		h.V = FormatVersion
	}
	if err := h.Validate(); err != nil {
		return nil, err
	}
	body := appendHeader(nil, &h)
	if len(body) > MaxHeaderBytes {
		// Cannot happen with valid fields; kept so the limit is enforced on both sides.
		return nil, fmt.Errorf("bundle: header of %d bytes, more than %d", len(body), MaxHeaderBytes)
	}
	wr := &Writer{bw: bufio.NewWriterSize(w, 64<<10), h: sha256.New(), hdr: h}
	wr.chk.h = &wr.hdr
	wr.write([]byte(Magic))
	wr.writeFrame(frameHeader, body)
	if wr.err != nil {
		return nil, wr.err
	}
	return wr, nil
}

// Header returns the header the Writer wrote.
func (w *Writer) Header() Header { return w.hdr }

func (w *Writer) write(p []byte) {
	if w.err != nil {
		return
	}
	n, err := w.bw.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	if err != nil {
		w.err = fmt.Errorf("bundle: write: %w", err)
	}
}

func (w *Writer) writeFrame(typ byte, payload []byte) {
	head := frameHead(typ, len(payload))
	var crc [4]byte
	binary.BigEndian.PutUint32(crc[:], frameCRC(head, payload))
	w.write(head[:])
	w.write(payload)
	w.write(crc[:])
}

// WriteBatch writes one batch payload, exactly as published on {p}/{d}/up
// (wire.EncodeBatch). It returns an error matching ErrInvalid, and writes
// nothing, when the payload does not decode or breaks a rule of the bundle:
// another device or epoch than the header's, an acked watermark other than
// the header's Acked, records outside [From, Through] or not above those of
// the previous batch, a dropped range above Through.
func (w *Writer) WriteBatch(payload []byte) error {
	if w.closed {
		return ErrClosed
	}
	if w.err != nil {
		return w.err
	}
	where := frameName(frameBatch, w.chk.batches+1)
	if err := wire.DecodeBatchInto(payload, &w.batch); err != nil {
		return &BundleError{Where: where, Offset: w.n, Reason: err.Error(), Err: ErrInvalid, Cause: err}
	}
	if reason := w.chk.check(&w.batch); reason != "" {
		return &BundleError{Where: where, Offset: w.n, Reason: reason, Err: ErrInvalid}
	}
	w.writeFrame(frameBatch, payload)
	if w.err != nil {
		return w.err
	}
	w.chk.accept(&w.batch)
	return nil
}

// Batches returns the number of batches written.
func (w *Writer) Batches() uint64 { return w.chk.batches }

// Records returns the number of records in the batches written.
func (w *Writer) Records() uint64 { return w.chk.records }

// Close writes the trailer and flushes. It does not close the underlying
// io.Writer. Calling it again returns the first call's result.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	tr := Trailer{Batches: w.chk.batches, Records: w.chk.records, SHA256: w.h.Sum(nil)}
	w.writeFrame(frameTrailer, appendTrailer(nil, &tr))
	if w.err == nil {
		if err := w.bw.Flush(); err != nil {
			w.err = fmt.Errorf("bundle: write: %w", err)
		}
	}
	if w.err != nil {
		return w.err
	}
	w.h.Sum(w.sum[:0])
	return nil
}

// Sum returns the SHA-256 of the whole bundle (what sha256sum prints), once
// Close has returned nil; the zero array before.
func (w *Writer) Sum() [32]byte { return w.sum }

// Bytes returns the number of bytes written so far (the bundle's size after
// Close).
func (w *Writer) Bytes() int64 { return w.n }
