package resync

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/edgesync/edgesync/outbox"
	"github.com/edgesync/edgesync/transport"
	"github.com/edgesync/edgesync/transport/wire"
)

// Source is what Export needs of the outbox (*outbox.Outbox has it).
type Source interface {
	// Read appends records with seq >= from, at most maxRecords and about
	// maxBytes of data, and returns their epoch (outbox.Outbox.Read).
	Read(from outbox.Seq, maxRecords, maxBytes int, dst []outbox.Record) (outbox.Epoch, []outbox.Record, error)
	// Position returns the epoch, head, watermark, lowest readable seq and
	// the dropped ranges not yet acknowledged past.
	Position() outbox.Position
}

// ExportOptions cut the export into batches, like the agent's batch block.
// The zero value of every field means its default.
type ExportOptions struct {
	// MaxRecords per batch (batch.max_records); default 1000, at most
	// wire.MaxRecords.
	MaxRecords int
	// MaxBytes of record data per batch before compression
	// (batch.max_bytes); default 256 KiB. A batch whose payload would still
	// be over wire.MaxBatchBytes is split further.
	MaxBytes int
	// Compression is "zstd" (default) or "none" (batch.compression).
	Compression string
	// Now is the wall clock for the header's Created and each batch's
	// SentAt; default time.Now.
	Now func() time.Time
}

// EnsureDefaults fills zero fields with their defaults and returns o.
func (o *ExportOptions) EnsureDefaults() *ExportOptions {
	if o.MaxRecords == 0 {
		o.MaxRecords = 1000
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = 256 << 10
	}
	if o.Compression == "" {
		o.Compression = "zstd"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Validate reports every problem at once, naming the agent config key.
func (o *ExportOptions) Validate() error {
	var errs []error
	if o.MaxRecords < 1 || o.MaxRecords > wire.MaxRecords {
		errs = append(errs, fmt.Errorf("batch.max_records: must be 1..%d, got %d", wire.MaxRecords, o.MaxRecords))
	}
	if o.MaxBytes < 1 || o.MaxBytes > wire.MaxDecodedBytes {
		errs = append(errs, fmt.Errorf("batch.max_bytes: must be 1..%d, got %d", wire.MaxDecodedBytes, o.MaxBytes))
	}
	switch o.Compression {
	case "zstd", "none":
	default:
		errs = append(errs, fmt.Errorf("batch.compression: must be zstd or none, got %q", o.Compression))
	}
	return errors.Join(errs...)
}

// Summary says what Export wrote.
type Summary struct {
	Device string
	Epoch  outbox.Epoch
	// First and Last are the seqs of the first and last record in the
	// bundle; both 0 when it holds none.
	First, Last outbox.Seq
	Records     uint64
	Batches     uint64
	Bytes       int64 // the bundle's size
	// From and Through are the header's: the range the export covered.
	From, Through outbox.Seq
	// Watermark is the agent's acknowledged watermark at export; Acked the
	// acked watermark the batches carry (see Header.Acked).
	Watermark, Acked outbox.Seq
	// Dropped is the number of records in the dropped ranges the bundle
	// reports (records lost to drop_oldest, counted as lost at the sink).
	Dropped uint64
	// SHA256 of the whole bundle; the receipt names it.
	SHA256 [32]byte
}

// ErrEpochChanged: the outbox started a new epoch while Export read it. The
// output is incomplete; export again.
var ErrEpochChanged = errors.New("resync: the outbox started a new epoch during the export; export again")

// ErrDropping: the outbox (full, with drop_oldest) kept dropping the records
// Export was reading, again and again. The output is incomplete; stop the
// agent, or export again.
var ErrDropping = errors.New("resync: the outbox keeps dropping the records being exported (full, drop_oldest); stop the agent or export again")

// Export writes to w a bundle of every record src holds from
// max(from, watermark+1) through its head (as of the start of the export),
// cut into batches as the uplink cuts them and encoded as it publishes them.
// from 0 means the watermark + 1. When from is at or below the watermark,
// the export starts at from (or at the lowest record still held, when the
// outbox kept acknowledged records for retain_acked but not that far back),
// and the batches carry from-1 as their acked watermark instead of the
// watermark, so that the sink does not count those records as lost. A from
// above head+1 is an error.
//
// Every batch carries the dropped ranges the outbox reports (drop_oldest),
// so the sink counts them as lost and moves past them. A bundle always holds
// at least one batch: with nothing to send, one batch without records tells
// the sink the acked watermark and the drops, and its receipt acknowledges
// what the sink already has.
//
// Export reads the outbox a batch at a time (it never holds more than one
// batch) and is safe while the agent runs: records appended meanwhile are
// left for the uplink or the next export. Write to a temporary file and
// rename it once Export returned nil: on error the output is incomplete.
func Export(w io.Writer, src Source, device string, from outbox.Seq, opts ExportOptions) (Summary, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return Summary{}, err
	}
	if !wire.ValidDeviceID(device) {
		return Summary{}, fmt.Errorf("resync: export: device id %q is not valid", cut(device))
	}
	pos := src.Position()
	if !wire.ValidEpoch(uint64(pos.Epoch)) {
		return Summary{}, fmt.Errorf("resync: export: the outbox has no valid epoch (%d)", pos.Epoch)
	}
	start, acked := pos.Watermark+1, pos.Watermark
	switch {
	case from == 0 || from == pos.Watermark+1:
	case from <= pos.Watermark:
		if s := max(from, pos.Low); s <= pos.Watermark {
			start, acked = s, s-1
		}
	case from > pos.Head+1:
		return Summary{}, fmt.Errorf("resync: export: from %d is past the head %d: nothing to export", from, pos.Head)
	default:
		start = from
	}
	now := opts.Now()
	bw, err := NewWriter(w, Header{
		Device:    device,
		Epoch:     pos.Epoch,
		From:      start,
		Through:   pos.Head,
		Created:   now.UnixNano(),
		Watermark: pos.Watermark,
		Acked:     acked,
	})
	if err != nil {
		return Summary{}, err
	}
	e := exporter{src: src, bw: bw, opts: &opts, hdr: bw.Header()}
	e.sum = Summary{Device: device, Epoch: pos.Epoch, From: start, Through: pos.Head, Watermark: pos.Watermark, Acked: acked}
	if err := e.run(); err != nil {
		return e.sum, err
	}
	if err := bw.Close(); err != nil {
		return e.sum, err
	}
	e.sum.Bytes, e.sum.SHA256 = bw.Bytes(), bw.Sum()
	return e.sum, nil
}

type exporter struct {
	src   Source
	bw    *Writer
	opts  *ExportOptions
	hdr   Header
	sum   Summary
	recs  []outbox.Record
	wrecs []wire.Record
	buf   []byte
	sent  uint64 // send_id of the last batch

	droppedThrough uint64 // the highest dropped seq counted in sum.Dropped
}

func (e *exporter) run() error {
	through := e.hdr.Through
	next := e.hdr.From
	for next <= through {
		want := int(min(uint64(through-next)+1, uint64(e.opts.MaxRecords)))
		recs, drops, err := e.read(next, want)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			break // the rest was dropped or acknowledged meanwhile
		}
		// Split like the uplink: halve until the payload fits.
		for {
			err := e.write(recs, drops)
			if errors.Is(err, wire.ErrTooLarge) && len(recs) > 1 {
				recs = recs[:len(recs)/2]
				continue
			}
			if err != nil {
				return err
			}
			break
		}
		next = recs[len(recs)-1].Seq + 1
	}
	if e.sum.Batches == 0 {
		// Nothing to send: one batch tells the sink the acked watermark
		// and the drops, so the receipt still says where the sink is.
		return e.write(nil, e.drops(e.src.Position()))
	}
	return nil
}

// read reads up to want records from next, with the dropped ranges the
// outbox reports after the read. While the agent runs, the outbox may drop
// (drop_oldest) or trim (acknowledgements) the very records being read, and
// a deletion can be visible to Read before Position reports it. So records
// that lie inside a dropped range are left out (the batch announces them
// as lost), and a read is only taken when every seq it skips (from next up
// to its first record, or through the head when it returns none) is a
// dropped or acknowledged one; otherwise it is repeated. When everything
// read was dropped meanwhile, the next read starts past those drops: with a
// full drop_oldest outbox the export chases the dropping front and
// overtakes it, instead of starting over.
func (e *exporter) read(next outbox.Seq, want int) ([]outbox.Record, []wire.Range, error) {
	const attempts = 64
	for range attempts {
		epoch, recs, err := e.src.Read(next, want, e.opts.MaxBytes, e.recs[:0])
		if err != nil {
			return nil, nil, fmt.Errorf("resync: export: %w", err)
		}
		e.recs = recs
		if epoch != e.hdr.Epoch {
			return nil, nil, ErrEpochChanged
		}
		for len(recs) > 0 && recs[len(recs)-1].Seq > e.hdr.Through {
			recs = recs[:len(recs)-1]
		}
		pos := e.src.Position()
		drops := e.drops(pos)
		read := len(recs)
		recs = slices.DeleteFunc(recs, func(r outbox.Record) bool { return inDrops(r.Seq, drops) })
		skipTo := e.hdr.Through
		if len(recs) > 0 {
			skipTo = recs[0].Seq - 1
		}
		if e.hdr.Acked < e.hdr.Watermark && next <= e.hdr.Watermark && next <= skipTo {
			// Exporting acknowledged records kept by retain_acked, and they
			// went meanwhile: the sink would stop at the hole.
			return nil, nil, fmt.Errorf("resync: export: acknowledged records from %d were deleted while being exported (outbox.retain_acked expired); export again from a higher seq", next)
		}
		if read > 0 && len(recs) == 0 {
			// All of it was dropped while being read: go on past the drops.
			if past := coveredThrough(next, drops, pos.Watermark) + 1; past > next {
				next = past
			}
			continue
		}
		if !covered(next, skipTo, drops, pos.Watermark) {
			continue
		}
		return recs, drops, nil
	}
	return nil, nil, ErrDropping
}

// inDrops reports whether seq lies inside one of the drops.
func inDrops(seq outbox.Seq, drops []wire.Range) bool {
	for _, d := range drops {
		if d.First <= uint64(seq) && uint64(seq) <= d.Last {
			return true
		}
	}
	return false
}

// coveredThrough returns the highest seq h such that every seq in
// [lo, h] is at or below the watermark or inside one of the drops
// (ascending, not overlapping); lo-1 when lo itself is not.
func coveredThrough(lo outbox.Seq, drops []wire.Range, watermark outbox.Seq) outbox.Seq {
	lo = max(lo, watermark+1)
	for _, d := range drops {
		if d.First <= uint64(lo) && uint64(lo) <= d.Last {
			lo = outbox.Seq(d.Last) + 1
		}
	}
	return lo - 1
}

// covered reports whether every seq in [lo, hi] is at or below the
// watermark or inside one of the drops (ascending, not overlapping).
func covered(lo, hi outbox.Seq, drops []wire.Range, watermark outbox.Seq) bool {
	return lo > hi || coveredThrough(lo, drops, watermark) >= hi
}

// drops returns the dropped ranges a batch carries: those above the
// header's acked watermark, cut at Through.
func (e *exporter) drops(pos outbox.Position) []wire.Range {
	var out []wire.Range
	for _, d := range pos.Drops {
		if uint64(d.Last) <= uint64(e.hdr.Acked) || d.First > e.hdr.Through {
			continue
		}
		out = append(out, wire.Range{First: uint64(d.First), Last: uint64(min(d.Last, e.hdr.Through))})
	}
	return out
}

// write encodes one batch and writes it. It returns an error matching
// wire.ErrTooLarge, having written nothing, when the batch must be split.
func (e *exporter) write(recs []outbox.Record, drops []wire.Range) error {
	b := wire.Batch{
		V:      wire.Version,
		Device: e.hdr.Device,
		Epoch:  uint64(e.hdr.Epoch),
		Acked:  uint64(e.hdr.Acked),
		Drops:  drops,
		SentAt: e.opts.Now().UnixNano(),
		SendID: e.sent + 1,
	}
	e.wrecs = transport.FillRecords(&b, e.wrecs, recs)
	comp := transport.CompressionByte(e.opts.Compression)
	payload, err := wire.EncodeBatch(e.buf[:0], &b, comp)
	if err != nil {
		if errors.Is(err, wire.ErrTooLarge) && len(recs) > 1 {
			return err
		}
		return fmt.Errorf("resync: export: batch of records %d..%d: %w", b.First, b.Last, err)
	}
	e.buf = payload
	if err := e.bw.WriteBatch(payload); err != nil {
		return err
	}
	e.sent = b.SendID
	e.sum.Batches++
	e.sum.Records += uint64(len(recs))
	if len(recs) > 0 {
		if e.sum.First == 0 {
			e.sum.First = recs[0].Seq
		}
		e.sum.Last = recs[len(recs)-1].Seq
	}
	for _, d := range drops {
		// Count each dropped seq once, although every batch repeats the drops.
		lo := max(d.First, e.droppedThrough+1)
		if lo <= d.Last {
			e.sum.Dropped += d.Last - lo + 1
			e.droppedThrough = d.Last
		}
	}
	return nil
}
