package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Keys. Every key starts with one byte that names its kind:
//
//	'm'                          the format marker: a meta value holding only the
//	                             format version (in format 1, the meta itself)
//	'r' epoch(8, BE) seq(8, BE)  a record
//	's' name                     the saved position of a capture source
//	'z'                          the meta record (see meta)
//
// The meta sorts after every record. It is rewritten often (acks, drops,
// purges), so most memtables hold it: a memtable of new records and the
// meta then flushes into an sstable whose bounds start at the new records
// and overlap nothing of a backlog in the levels below. With the meta at
// 'm' (format 1, where every batch rewrote it) every flushed sstable
// spanned the whole backlog, and each compaction of one into the level
// below rewrote the backlog: write amplification that grew with the
// backlog. The marker stays at 'm' so that a binary that knows only
// format 1 refuses the store instead of taking it for a new one.
const (
	kindFormat = 'm'
	kindRecord = 'r'
	kindSource = 's'
	kindMeta   = 'z'
)

var (
	formatKey = []byte{kindFormat}
	metaKey   = []byte{kindMeta}
)

const recordKeyLen = 17

func appendRecordKey(dst []byte, e Epoch, s Seq) []byte {
	dst = append(dst, kindRecord)
	dst = binary.BigEndian.AppendUint64(dst, uint64(e))
	return binary.BigEndian.AppendUint64(dst, uint64(s))
}

func recordKey(e Epoch, s Seq) []byte {
	return appendRecordKey(make([]byte, 0, recordKeyLen), e, s)
}

func parseRecordKey(k []byte) (Epoch, Seq, bool) {
	if len(k) != recordKeyLen || k[0] != kindRecord {
		return 0, 0, false
	}
	return Epoch(binary.BigEndian.Uint64(k[1:9])), Seq(binary.BigEndian.Uint64(k[9:])), true
}

func sourceKey(name string) []byte {
	return append([]byte{kindSource}, name...)
}

// The value of a record key:
//
//	uvarint cum          bytes appended in this epoch up to and including this record
//	varint  appendedAt   unix ns of the wall clock when the record was appended
//	varint  capturedAt   unix ns
//	byte    op
//	uvarint schemaVersion
//	4 × (uvarint len, bytes): stream, key, id, schema
//	rest: data
func appendRecordValue(dst []byte, r *Record, cum uint64, appendedAt int64) []byte {
	dst = binary.AppendUvarint(dst, cum)
	dst = binary.AppendVarint(dst, appendedAt)
	dst = binary.AppendVarint(dst, r.CapturedAt)
	dst = append(dst, byte(r.Op))
	dst = binary.AppendUvarint(dst, uint64(r.SchemaVersion))
	for _, s := range [...]string{r.Stream, r.Key, r.ID, r.Schema} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	return append(dst, r.Data...)
}

// recordSize is what a record counts against max_bytes: its key and value on disk.
func recordSize(r *Record) int64 {
	return int64(recordKeyLen + 3*binary.MaxVarintLen64 + 1 + binary.MaxVarintLen32 + 4*2 +
		len(r.Stream) + len(r.Key) + len(r.ID) + len(r.Schema) + len(r.Data))
}

var errBadValue = errors.New("outbox: malformed record value")

// decodeRecordValue fills r from v. Strings and Data are copied, so v may be reused.
func decodeRecordValue(v []byte, r *Record) (cum uint64, appendedAt int64, err error) {
	p := v
	uv := func() uint64 {
		x, n := binary.Uvarint(p)
		if n <= 0 {
			err = errBadValue
			return 0
		}
		p = p[n:]
		return x
	}
	sv := func() int64 {
		x, n := binary.Varint(p)
		if n <= 0 {
			err = errBadValue
			return 0
		}
		p = p[n:]
		return x
	}
	str := func() string {
		n := uv()
		if err != nil || n > uint64(len(p)) {
			err = errBadValue
			return ""
		}
		s := string(p[:n])
		p = p[n:]
		return s
	}
	cum = uv()
	appendedAt = sv()
	r.CapturedAt = sv()
	if err != nil || len(p) < 1 {
		return 0, 0, errBadValue
	}
	r.Op = Op(p[0])
	p = p[1:]
	r.SchemaVersion = uint32(uv())
	r.Stream = str()
	r.Key = str()
	r.ID = str()
	r.Schema = str()
	if err != nil {
		return 0, 0, err
	}
	r.Data = append([]byte(nil), p...)
	return cum, appendedAt, nil
}

// decodeCum reads only the cumulative byte count from a record value.
func decodeCum(v []byte) (uint64, error) {
	x, n := binary.Uvarint(v)
	if n <= 0 {
		return 0, errBadValue
	}
	return x, nil
}

// formatVersion is the on-disk format this code writes and the newest it
// reads. Format 1 kept the meta at 'm' and had no purged position; Open
// upgrades it in place.
const formatVersion = 2

// meta is everything needed to reopen the outbox in constant time. It is
// rewritten in every batch that changes it, except for the head in Fsync
// mode: a batch of records does not rewrite it, and Open finds the records
// after meta.head with one bounded seek (findHead).
type meta struct {
	format      uint64
	epoch       Epoch
	epochReason string
	head        Seq    // highest seq on disk (fsync: records after it may exist, see findHead)
	headCum     uint64 // cum of head
	watermark   Seq    // the sink's applied_through, as last acknowledged
	deleted     Seq    // every seq <= deleted is gone for readers (acknowledged and purged, or dropped)
	deletedCum  uint64 // cum of deleted
	reserved    Seq    // spill: seqs up to here may have been handed out
	dropped     uint64 // records dropped in this store's life (all epochs)
	drops       []dropRange
	epochs      uint64 // epochs started in this store's life, including the first
	// A move of unacknowledged records into a new epoch, in progress: records
	// migNext..migLast of epoch migEpoch still have to be copied.
	migEpoch Epoch
	migNext  Seq
	migLast  Seq
	// Every seq <= purged is gone from disk too (purged <= deleted): behind a
	// backlog, records are deleted from disk later than for readers, in
	// chunks (see purgeIsolated). It may lag after a crash, never lead.
	// Format 2.
	purged    Seq
	purgedCum uint64
}

// dropRange is a range of records deleted by drop_oldest (or lost in a crash
// in spill mode) that the sink has not yet acknowledged past.
type dropRange struct {
	Range
	lastCum uint64
}

func (m *meta) encode(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, m.format)
	dst = binary.AppendUvarint(dst, uint64(m.epoch))
	dst = binary.AppendUvarint(dst, uint64(len(m.epochReason)))
	dst = append(dst, m.epochReason...)
	for _, x := range [...]uint64{uint64(m.head), m.headCum, uint64(m.watermark), uint64(m.deleted), m.deletedCum,
		uint64(m.reserved), m.dropped, m.epochs, uint64(m.migEpoch), uint64(m.migNext), uint64(m.migLast),
		uint64(len(m.drops))} {
		dst = binary.AppendUvarint(dst, x)
	}
	for _, d := range m.drops {
		dst = binary.AppendUvarint(dst, uint64(d.First))
		dst = binary.AppendUvarint(dst, uint64(d.Last))
		dst = binary.AppendUvarint(dst, d.lastCum)
	}
	dst = binary.AppendUvarint(dst, uint64(m.purged))
	return binary.AppendUvarint(dst, m.purgedCum)
}

func decodeMeta(v []byte) (meta, error) {
	var m meta
	p := v
	var bad bool
	uv := func() uint64 {
		x, n := binary.Uvarint(p)
		if n <= 0 {
			bad = true
			return 0
		}
		p = p[n:]
		return x
	}
	m.format = uv()
	if bad {
		return m, fmt.Errorf("outbox: malformed meta record")
	}
	if m.format > formatVersion {
		return m, &FormatError{Have: m.format, Max: formatVersion}
	}
	m.epoch = Epoch(uv())
	n := uv()
	if bad || n > uint64(len(p)) {
		return m, fmt.Errorf("outbox: malformed meta record")
	}
	m.epochReason = string(p[:n])
	p = p[n:]
	m.head = Seq(uv())
	m.headCum = uv()
	m.watermark = Seq(uv())
	m.deleted = Seq(uv())
	m.deletedCum = uv()
	m.reserved = Seq(uv())
	m.dropped = uv()
	m.epochs = uv()
	m.migEpoch = Epoch(uv())
	m.migNext = Seq(uv())
	m.migLast = Seq(uv())
	nd := uv()
	if bad || nd > uint64(len(p)) {
		return m, fmt.Errorf("outbox: malformed meta record")
	}
	m.drops = make([]dropRange, 0, nd)
	for i := uint64(0); i < nd; i++ {
		d := dropRange{Range: Range{First: Seq(uv()), Last: Seq(uv())}, lastCum: uv()}
		m.drops = append(m.drops, d)
	}
	if m.format >= 2 {
		m.purged = Seq(uv())
		m.purgedCum = uv()
	} else {
		m.purged, m.purgedCum = m.deleted, m.deletedCum
	}
	if bad || m.purged > m.deleted {
		return m, fmt.Errorf("outbox: malformed meta record")
	}
	return m, nil
}
