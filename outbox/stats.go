package outbox

import (
	"sort"
	"time"
)

// Stats describe the outbox at one moment.
type Stats struct {
	Epoch       Epoch
	EpochReason string // why the current epoch started
	Epochs      uint64 // epochs this store has had
	Head        Seq    // highest seq handed out
	Watermark   Seq    // acknowledged by the sink through here
	Depth       uint64 // records not yet acknowledged (dropped ones excluded)
	DepthBytes  int64  // their bytes
	UsedBytes   int64  // bytes held, including retained acknowledged records
	MaxBytes    int64
	// OldestSeq is the oldest unacknowledged record still held; 0 when empty.
	OldestSeq Seq
	// OldestAge is how long ago (monotonic clock) the oldest unacknowledged
	// record was handed to the outbox; 0 when empty.
	OldestAge time.Duration
	// OldestCapturedAt is the producer's capture time of the oldest
	// unacknowledged record (unix ns); 0 when empty or unknown.
	OldestCapturedAt int64
	Dropped          uint64  // records dropped (drop_oldest, spill crash) in the store's life
	Drops            []Range // dropped ranges not yet acknowledged past by the sink
	MemoryRecords    int     // spill: records held only in memory
	MemoryBytes      int64
	DiskBytesWritten uint64 // by Pebble in this process: WAL, flushes, compactions
	DiskLow          bool   // free disk space is below the floor
	// Full: in Block mode, appends are being refused for want of room in
	// max_bytes: the latest one found none and no space has been freed
	// since, or not even an empty record would fit.
	Full          bool
	Appended      uint64 // records appended by this process
	Acked         uint64 // records acknowledged in this process
	AckDuplicates uint64 // acks at or below the watermark
	AckStale      uint64 // acks for another epoch
	Commits       uint64 // group commits
	Corruptions   uint64 // corrupted stores moved aside at open
	Failed        error  // non-nil once storage failed
}

// Stats returns the current statistics. It is cheap: no disk access except
// for OldestCapturedAt, which reads one record.
func (o *Outbox) Stats() Stats {
	o.mu.Lock()
	v := o.v
	st := Stats{
		Epoch:         v.epoch,
		EpochReason:   v.epochReason,
		Epochs:        v.epochs,
		Head:          v.head,
		Watermark:     v.watermark,
		UsedBytes:     v.usedBytes,
		DepthBytes:    v.unacked,
		MaxBytes:      o.opts.MaxBytes,
		Dropped:       v.dropped,
		Drops:         append([]Range(nil), v.drops...),
		MemoryRecords: len(o.mem),
		MemoryBytes:   o.memBytes,
		Failed:        o.failed,
	}
	if o.opts.WhenFull == Block {
		st.Full = o.refusing.Load() || o.opts.MaxBytes-v.usedBytes-o.pending < recordSize(&Record{})
	}
	low := max(v.watermark, v.deleted)
	if v.head > low {
		st.Depth = uint64(v.head - low)
		st.OldestSeq = low + 1
		if i := sort.Search(len(o.checkpoints), func(i int) bool { return o.checkpoints[i].Last > low }); i < len(o.checkpoints) {
			st.OldestAge = time.Since(o.checkpoints[i].Enqueued)
		}
	}
	o.mu.Unlock()
	if st.OldestSeq != 0 {
		if _, recs, err := o.Read(st.OldestSeq, 1, 1<<30, nil); err == nil && len(recs) == 1 {
			st.OldestCapturedAt = recs[0].CapturedAt
		}
	}
	st.DiskLow = o.diskLow.Load()
	st.Appended = o.appended.Load()
	st.Acked = o.ackedTotal.Load()
	st.AckDuplicates = o.ackDuplicates.Load()
	st.AckStale = o.ackStale.Load()
	st.Commits = o.commits.Load()
	st.Corruptions = o.corruptions.Load()
	if st.Failed == nil && !o.closing.Load() {
		m := o.db.Metrics()
		st.DiskBytesWritten = m.WAL.BytesWritten
		for _, l := range m.Levels {
			st.DiskBytesWritten += l.BytesFlushed + l.BytesCompacted
		}
	}
	return st
}

// CheckpointFor returns when the record s was handed to the outbox and when it
// became durable (monotonic clock); ok is false when that is no longer known.
func (o *Outbox) CheckpointFor(s Seq) (Checkpoint, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	i := sort.Search(len(o.checkpoints), func(i int) bool { return o.checkpoints[i].Last >= s })
	if i == len(o.checkpoints) {
		return Checkpoint{}, false
	}
	return o.checkpoints[i], true
}

// Position is the cheap part of Stats that the uplink needs on every batch.
type Position struct {
	Epoch     Epoch
	Head      Seq
	Watermark Seq
	// Low is the lowest seq that can still be read (acknowledged records
	// retained for RetainAcked included); every seq below it is gone.
	Low   Seq
	Drops []Range // dropped ranges not yet acknowledged past
}

// Position returns the current position without touching the disk.
func (o *Outbox) Position() Position {
	o.mu.Lock()
	defer o.mu.Unlock()
	return Position{
		Epoch:     o.v.epoch,
		Head:      o.v.head,
		Watermark: o.v.watermark,
		Low:       o.v.deleted + 1,
		Drops:     append([]Range(nil), o.v.drops...),
	}
}

// Failed returns the storage failure once the outbox has failed (see
// ErrFailed), or nil. It is cheap.
func (o *Outbox) Failed() error { return o.failedErr() }
