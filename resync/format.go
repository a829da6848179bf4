package resync

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/edgesync/edgesync/internal/cbormsg"
	"github.com/edgesync/edgesync/outbox"
	"github.com/edgesync/edgesync/transport/wire"
)

// Magic is the first line of every bundle of format version 1.
const Magic = "EDGESYNC-BUNDLE/1\n"

// magicPrefix is Magic without its version, to tell a bundle of another
// format version from a file that is no bundle at all.
const magicPrefix = "EDGESYNC-BUNDLE/"

// FormatVersion is the bundle format this package writes and reads, also
// carried in the header (key 1).
const FormatVersion = 1

// Frame types (the first byte of a frame).
const (
	frameHeader  byte = 'H'
	frameBatch   byte = 'B'
	frameTrailer byte = 'T'
)

// Limits on frames. A reader refuses a frame over its limit before reading
// it, so no length from the file ever makes it allocate more than
// wire.MaxBatchBytes (plus its growth slack).
const (
	// MaxHeaderBytes bounds the header frame's CBOR.
	MaxHeaderBytes = 4 << 10
	// MaxTrailerBytes bounds the trailer frame's CBOR.
	MaxTrailerBytes = 256
	// frameOverhead is a frame's type, length and CRC.
	frameOverhead = 1 + 4 + 4
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// frameLimit returns the largest payload of a frame of type typ, and false
// for an unknown type.
func frameLimit(typ byte) (int, bool) {
	switch typ {
	case frameHeader:
		return MaxHeaderBytes, true
	case frameBatch:
		return wire.MaxBatchBytes, true
	case frameTrailer:
		return MaxTrailerBytes, true
	}
	return 0, false
}

func frameName(typ byte, batch uint64) string {
	switch typ {
	case frameHeader:
		return "header"
	case frameTrailer:
		return "trailer"
	}
	return fmt.Sprintf("batch %d", batch)
}

// frameHead returns a frame's first five bytes: type and big-endian length.
func frameHead(typ byte, n int) [5]byte {
	var h [5]byte
	h[0] = typ
	binary.BigEndian.PutUint32(h[1:], uint32(n))
	return h
}

// frameCRC is the CRC-32C (Castagnoli) of a frame's head and payload.
func frameCRC(head [5]byte, payload []byte) uint32 {
	c := crc32.Update(0, crcTable, head[:])
	return crc32.Update(c, crcTable, payload)
}

// Header is the first frame of a bundle: what it holds and where it came
// from. Every batch of the bundle is of Device and Epoch, carries Acked as
// its acked watermark, and holds only records in [From, Through].
type Header struct {
	// V is the format version, FormatVersion; NewWriter fills in 0.
	V uint64 `cbor:"1,keyasint"`
	// Device is the device id of every batch.
	Device string `cbor:"2,keyasint"`
	// Epoch is the outbox epoch of every batch, 1..2^63-1.
	Epoch outbox.Epoch `cbor:"3,keyasint"`
	// From is the first seq the export asked the outbox for, >= 1.
	From outbox.Seq `cbor:"4,keyasint"`
	// Through is the outbox's head when the export started: no record is
	// above it. Through == From-1 when there was nothing to export.
	Through outbox.Seq `cbor:"5,keyasint"`
	// Created is the device's wall clock at export, unix nanoseconds.
	Created int64 `cbor:"6,keyasint"`
	// Watermark is the agent's acknowledged watermark at export.
	Watermark outbox.Seq `cbor:"7,keyasint"`
	// Acked is the acked watermark every batch carries: Watermark, or From-1
	// when the export started below the watermark (records kept by
	// retain_acked), so that the sink does not count those records as lost.
	Acked outbox.Seq `cbor:"8,keyasint"`
}

// Validate reports the first rule h breaks, as a *BundleError matching
// ErrVersion or ErrInvalid.
func (h *Header) Validate() error {
	bad := func(format string, args ...any) error {
		return &BundleError{Where: "header", Offset: int64(len(Magic)), Reason: fmt.Sprintf(format, args...), Err: ErrInvalid}
	}
	switch {
	case h.V == 0:
		return bad("v is missing, want %d", FormatVersion)
	case h.V != FormatVersion:
		return &BundleError{Where: "header", Offset: int64(len(Magic)),
			Reason: fmt.Sprintf("format version %d; this edgesync reads version %d: upgrade edgesync", h.V, FormatVersion), Err: ErrVersion}
	case !wire.ValidDeviceID(h.Device):
		return bad("device %q is not a valid device id", cut(h.Device))
	case !wire.ValidEpoch(uint64(h.Epoch)):
		return bad("epoch %d is not in 1..2^63-1", h.Epoch)
	case h.From < 1:
		return bad("from is 0, want >= 1")
	case h.Through < h.From-1:
		return bad("through %d is below from %d - 1", h.Through, h.From)
	case h.Watermark > h.Through:
		return bad("watermark %d is above through %d", h.Watermark, h.Through)
	case h.Acked > h.Watermark:
		return bad("acked %d is above the watermark %d", h.Acked, h.Watermark)
	case h.Acked >= h.From:
		return bad("acked %d is not below from %d", h.Acked, h.From)
	}
	return nil
}

// Trailer is the last frame of a bundle.
type Trailer struct {
	Batches uint64 `cbor:"1,keyasint"` // batch frames in the bundle
	Records uint64 `cbor:"2,keyasint"` // records in those batches
	SHA256  []byte `cbor:"3,keyasint"` // of every byte before the trailer frame: magic, header and batch frames
}

// msgLimits bound headers, trailers and receipts: flat maps with few keys.
// Unmarshal also refuses indefinite lengths, tags, duplicate keys, text
// that is not UTF-8 and byte strings where text belongs.
var msgLimits = cbormsg.Limits{MaxNestedLevels: 4, MaxArrayElements: 16, MaxMapPairs: 32}

// version peeks at key 1 of a CBOR map, to tell a header or receipt of
// another version from a malformed one: it succeeds where package cbor
// would decode the map into struct{ V *uint64 `cbor:"1,keyasint"` }.
func version(data []byte) (uint64, bool) {
	var v *uint64
	if cbormsg.Unmarshal(data, msgLimits, "", []cbormsg.Field{{Key: 1, Dest: &v}}) != nil || v == nil {
		return 0, false
	}
	return *v, true
}

// key appends a map key below 24 (every key of the bundle's messages).
func key(dst []byte, k byte) []byte { return append(dst, cbormsg.MajorUint|k) }

// appendHeader writes h as package cbor's core deterministic encoding of
// the Header struct would: every key, in ascending order.
func appendHeader(dst []byte, h *Header) []byte {
	dst = cbormsg.AppendHead(dst, cbormsg.MajorMap, 8)
	dst = cbormsg.AppendUint(key(dst, 1), h.V)
	dst = cbormsg.AppendText(key(dst, 2), h.Device)
	dst = cbormsg.AppendUint(key(dst, 3), uint64(h.Epoch))
	dst = cbormsg.AppendUint(key(dst, 4), uint64(h.From))
	dst = cbormsg.AppendUint(key(dst, 5), uint64(h.Through))
	dst = cbormsg.AppendInt(key(dst, 6), h.Created)
	dst = cbormsg.AppendUint(key(dst, 7), uint64(h.Watermark))
	return cbormsg.AppendUint(key(dst, 8), uint64(h.Acked))
}

// decodeHeader decodes a header frame's payload into h, as package cbor
// would decode it into the Header struct.
func decodeHeader(data []byte, h *Header) error {
	return cbormsg.Unmarshal(data, msgLimits, "resync.Header", []cbormsg.Field{
		{Key: 1, Dest: &h.V},
		{Key: 2, Dest: &h.Device},
		{Key: 3, Dest: (*uint64)(&h.Epoch), Type: "outbox.Epoch"},
		{Key: 4, Dest: (*uint64)(&h.From), Type: "outbox.Seq"},
		{Key: 5, Dest: (*uint64)(&h.Through), Type: "outbox.Seq"},
		{Key: 6, Dest: &h.Created},
		{Key: 7, Dest: (*uint64)(&h.Watermark), Type: "outbox.Seq"},
		{Key: 8, Dest: (*uint64)(&h.Acked), Type: "outbox.Seq"},
	})
}

// appendTrailer writes t as package cbor's core deterministic encoding of
// the Trailer struct would (a nil SHA256 as null).
func appendTrailer(dst []byte, t *Trailer) []byte {
	dst = cbormsg.AppendHead(dst, cbormsg.MajorMap, 3)
	dst = cbormsg.AppendUint(key(dst, 1), t.Batches)
	dst = cbormsg.AppendUint(key(dst, 2), t.Records)
	return cbormsg.AppendBytes(key(dst, 3), t.SHA256)
}

// decodeTrailer decodes a trailer frame's payload into t, as package cbor
// would decode it into the Trailer struct.
func decodeTrailer(data []byte, t *Trailer) error {
	return cbormsg.Unmarshal(data, msgLimits, "resync.Trailer", []cbormsg.Field{
		{Key: 1, Dest: &t.Batches},
		{Key: 2, Dest: &t.Records},
		{Key: 3, Dest: &t.SHA256},
	})
}

// checker applies the rules every batch of a bundle must follow, for the
// Writer (which refuses to write what a Reader would refuse) and the Reader.
type checker struct {
	h       *Header
	batches uint64 // batches accepted so far
	records uint64
	last    uint64 // seq of the last record accepted; 0 when none
}

// check returns the reason b may not be the next batch, or "".
func (c *checker) check(b *wire.Batch) string {
	switch {
	case b.Device != c.h.Device:
		return fmt.Sprintf("device %q is not the bundle's device %q; refusing the bundle", cut(b.Device), c.h.Device)
	case b.Epoch != uint64(c.h.Epoch):
		return fmt.Sprintf("epoch %d is not the bundle's epoch %d", b.Epoch, c.h.Epoch)
	case b.Acked != uint64(c.h.Acked):
		return fmt.Sprintf("acked %d is not the header's acked %d", b.Acked, c.h.Acked)
	}
	if len(b.Records) > 0 {
		if b.First < uint64(c.h.From) || b.Last > uint64(c.h.Through) {
			return fmt.Sprintf("records %d..%d are outside the header's %d..%d", b.First, b.Last, c.h.From, c.h.Through)
		}
		if b.First <= c.last {
			return fmt.Sprintf("records start at %d, not above the previous batch's last record %d", b.First, c.last)
		}
	}
	for _, d := range b.Drops {
		if d.Last > uint64(c.h.Through) {
			return fmt.Sprintf("dropped range %d..%d is above the header's through %d", d.First, d.Last, c.h.Through)
		}
	}
	return ""
}

// accept counts b, which check accepted.
func (c *checker) accept(b *wire.Batch) {
	c.batches++
	c.records += uint64(len(b.Records))
	if len(b.Records) > 0 {
		c.last = b.Last
	}
}

// cut quotes nothing but shortens s to 80 bytes, so that a hostile file
// cannot flood a log line.
func cut(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
