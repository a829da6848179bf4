package outbox

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/cockroachdb/pebble"
)

// run is the committer: the only goroutine that writes to Pebble. Producers
// and acks queue requests; the committer takes every request waiting, builds
// one batch, commits it with one sync, and answers them all (group commit).
func (o *Outbox) run() {
	defer close(o.done)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	group := make([]*request, 0, 256)
	for {
		select {
		case r := <-o.reqs:
			group = o.gather(append(group[:0], r))
			o.commitGroup(group)
		case <-tick.C:
			o.housekeeping()
		case <-o.quit:
			// Answer what is queued, then stop.
			for {
				select {
				case r := <-o.reqs:
					o.commitGroup([]*request{r})
				default:
					return
				}
			}
		}
	}
}

// gather adds to group every request that is waiting or about to be
// submitted, up to MaxBatchRecords records and maxGroup requests.
//
// Producers answered by the previous commit are runnable but have not run
// yet: the first of them to submit wakes the committer, which would commit
// it alone while the others queue behind a whole sync (the group commit
// splits into two alternating halves). So after draining the queue the
// committer yields (runtime.Gosched puts it behind every runnable
// goroutine) and drains again, for as long as yielding brings new requests.
// A lone producer costs one Gosched per commit; nothing waits on a timer.
func (o *Outbox) gather(group []*request) []*request {
	n := 0
	for _, r := range group {
		n += len(r.recs)
	}
	for round := 0; ; round++ {
		before := len(group)
	drain:
		for n < o.opts.MaxBatchRecords && len(group) < maxGroup {
			select {
			case r := <-o.reqs:
				group = append(group, r)
				n += len(r.recs)
			default:
				break drain
			}
		}
		if n >= o.opts.MaxBatchRecords || len(group) >= maxGroup || round == maxGatherRounds ||
			round > 0 && len(group) == before {
			break
		}
		runtime.Gosched()
	}
	return group
}

const (
	maxGroup        = 4096 // requests in one group commit
	maxGatherRounds = 8    // yields while gathering one group
)

func (o *Outbox) fail(err error) {
	o.mu.Lock()
	if o.failed == nil {
		o.failed = fmt.Errorf("%w: %v", ErrFailed, err)
		o.log().Error("outbox: storage failed; the process must restart", "err", err)
	}
	close(o.spaceFreed)
	o.spaceFreed = make(chan struct{})
	o.refusing.Store(false)
	o.mu.Unlock()
}

// recoverFatal turns a panic from Pebble's fatal-error path, or an error
// from a write, into the outbox's terminal failure (ErrFailed). Use it as
// `defer o.recoverFatal(&err)`.
func (o *Outbox) recoverFatal(err *error) {
	if p := recover(); p != nil {
		if fp, ok := p.(fatalPanic); ok {
			*err = errors.New(fp.msg)
		} else {
			*err = fmt.Errorf("pebble: %v", p)
		}
	}
	if *err != nil {
		o.fail(*err)
		*err = o.failedErr()
	}
}

// apply commits b, turning Pebble's fatal errors into ErrFailed.
func (o *Outbox) apply(b *pebble.Batch, wo *pebble.WriteOptions) (err error) {
	defer o.recoverFatal(&err)
	if err := o.failedErr(); err != nil {
		return err
	}
	return o.db.Apply(b, wo)
}

func (o *Outbox) commitGroup(group []*request) {
	c := &o.c
	b := o.db.NewBatch()
	defer b.Close()
	sync := false
	now := o.opts.Now().UnixNano()
	var enq time.Time
	var admitted int64
	var newEpochReason string
	var failedErr = o.failedErr()
	appendedAny := false
	buf := c.vbuf[:0]

	for _, r := range group {
		if failedErr != nil {
			r.err = failedErr
			admitted += r.size
			continue
		}
		switch r.kind {
		case reqAppend:
			admitted += r.size
			if o.opts.WhenFull == DropOldest {
				if err := o.makeRoom(b, r.size); err != nil {
					r.err = err
					continue
				}
			}
			if enq.IsZero() || r.enq.Before(enq) {
				enq = r.enq
			}
			if len(r.recs) > 0 {
				appendedAny = true
				r.first = c.headMem + 1
			}
			if o.opts.Durability == Fsync {
				for i := range r.recs {
					rec := &r.recs[i]
					c.headMem++
					rec.Seq = c.headMem
					c.headMemCum += uint64(recordSize(rec))
					buf = appendRecordValue(buf[:0], rec, c.headMemCum, now)
					c.kbuf = appendRecordKey(c.kbuf[:0], c.epoch, rec.Seq)
					if err := b.Set(c.kbuf, buf, nil); err != nil {
						r.err = err
					}
				}
				c.head, c.headCum, c.diskHead, c.reserved = c.headMem, c.headMemCum, c.headMem, c.headMem
				if r.src != nil {
					_ = b.Set(sourceKey(r.src.Name), r.src.Value, nil)
				}
				// No meta: Open finds the head from the last record.
				sync = true
			} else {
				o.appendSpill(b, r, &sync)
			}
			r.last = c.headMem
			if len(r.recs) == 0 {
				r.first, r.last = 0, 0
			}
		case reqAck:
			if reason := o.ack(b, r); reason != "" {
				newEpochReason = reason
			}
		case reqPurge:
			o.purgeAsk.Store(false)
			o.purge(b, c.watermark)
		}
	}
	c.vbuf = buf
	if c.dirty || !b.Empty() {
		if c.dirty {
			for name, v := range c.sources {
				if o.opts.Durability == Spill {
					_ = b.Set(sourceKey(name), v, nil)
					delete(c.sources, name)
				}
			}
			c.mbuf = c.meta.encode(c.mbuf[:0])
			_ = b.Set(metaKey, c.mbuf, nil)
			c.dirty, c.metaStale = false, false
		}
		wo := pebble.NoSync
		if sync {
			wo = pebble.Sync
		}
		if err := o.apply(b, wo); err != nil {
			for _, r := range group {
				if r.err == nil {
					r.err = err
				}
			}
		}
		o.commits.Add(1)
	}
	if appendedAny {
		o.addCheckpoint(c.headMem, enq, time.Now())
	}
	o.mu.Lock()
	o.pending -= admitted
	o.mu.Unlock()
	o.publish()
	if appendedAny || len(c.drops) > 0 {
		o.signal()
	}
	if newEpochReason != "" {
		o.startNewEpoch(newEpochReason)
	}
	for _, r := range group {
		r.done <- struct{}{}
	}
	if o.purgeDue() {
		o.purgeIsolated()
	}
	o.maybeCompact()
}

func (o *Outbox) addCheckpoint(last Seq, enq, durable time.Time) {
	if enq.IsZero() {
		enq = durable
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.checkpoints = append(o.checkpoints, Checkpoint{Last: last, Enqueued: enq, Durable: durable})
	if len(o.checkpoints) >= maxCheckpoints {
		// Merge neighbours: each merged entry keeps the older times, so ages
		// are overestimated, never underestimated.
		cp := o.checkpoints
		j := 0
		for i := 0; i < len(cp); i += 2 {
			e := cp[i]
			if i+1 < len(cp) {
				e.Last = cp[i+1].Last
			}
			cp[j] = e
			j++
		}
		o.checkpoints = cp[:j]
	}
}

// ack applies an acknowledgement inside the current batch. It returns a
// reason when the outbox must start a new epoch.
func (o *Outbox) ack(b *pebble.Batch, r *request) string {
	c := &o.c
	if r.epoch != c.epoch {
		r.err = ErrStaleEpoch
		return ""
	}
	if r.through <= c.watermark {
		r.dup = true
		return ""
	}
	if r.through > c.headMem {
		r.err = fmt.Errorf("%w (ack through %d, head %d)", ErrAckAboveHead, r.through, c.headMem)
		return fmt.Sprintf("acknowledgement through %d above the head %d of epoch %d: the disk was restored or cloned",
			r.through, c.headMem, c.epoch)
	}
	o.ackedTotal.Add(uint64(r.through - c.watermark))
	c.watermark = r.through
	c.metaStale = true
	// The sink acknowledged past these dropped ranges: it knows of them.
	k := 0
	for _, d := range c.drops {
		if d.Last > r.through {
			c.drops[k] = d
			k++
		}
	}
	if k != len(c.drops) {
		c.drops = c.drops[:k]
		c.dirty = true
	}
	if c.watermark > c.deleted {
		if cum, err := o.cumAt(c.watermark); err == nil {
			c.wmCum = cum
		}
	} else {
		c.wmCum = c.deletedCum
	}
	if o.opts.RetainAcked > 0 {
		c.ackMarks = append(c.ackMarks, ackMark{through: r.through, at: time.Now()})
		if o.opts.Durability == Fsync {
			c.dirty = true // the watermark itself is worth keeping
		}
	} else {
		o.purge(b, c.watermark)
	}
	o.trimCheckpoints(c.watermark)
	return ""
}

func (o *Outbox) trimCheckpoints(wm Seq) {
	o.mu.Lock()
	defer o.mu.Unlock()
	i := 0
	for i < len(o.checkpoints) && o.checkpoints[i].Last <= wm {
		i++
	}
	if i > 0 {
		o.checkpoints = append(o.checkpoints[:0], o.checkpoints[i:]...)
	}
}

// purge deletes every record up to through (at most the watermark) from disk
// and memory.
func (o *Outbox) purge(b *pebble.Batch, through Seq) {
	c := &o.c
	if through > c.watermark {
		through = c.watermark
	}
	if through <= c.deleted {
		return
	}
	cum := c.wmCum
	if through != c.watermark {
		var err error
		if cum, err = o.cumAt(through); err != nil {
			o.log().Error("outbox: purge", "err", err)
			return
		}
	}
	o.deletePrefix(b, through, cum)
	// Forget ack marks that are covered.
	k := 0
	for _, m := range c.ackMarks {
		if m.through > through {
			c.ackMarks[k] = m
			k++
		}
	}
	c.ackMarks = c.ackMarks[:k]
}

// deletePrefix deletes every record in (deleted, through] for readers and
// from spill memory. cum is the cumulative byte count at through.
//
// On disk, records near the head (the healthy case: acknowledged moments
// after they were appended, still in the memtable) are deleted in b, so
// that the flush drops them. Records behind a backlog are deleted later,
// in chunks of at least a memtable, by purgeIsolated.
func (o *Outbox) deletePrefix(b *pebble.Batch, through Seq, cum uint64) {
	c := &o.c
	switch {
	case min(through, c.diskHead) <= c.purged:
		// Nothing of (purged, through] was ever on disk (spill memory).
		if c.purged == c.deleted {
			c.purged, c.purgedCum = through, cum
		}
	case c.headMemCum-c.purgedCum <= o.purgeWindow():
		d := min(through, c.diskHead)
		_ = b.DeleteRange(recordKey(c.epoch, c.purged+1), recordKey(c.epoch, d+1), nil)
		o.deletedSince += int64(cum - c.purgedCum)
		c.purged, c.purgedCum = through, cum
		c.dirty = true
	}
	if through > c.diskHead {
		c.diskHead = through // publish drops them from memory
	}
	if through > c.head {
		c.head, c.headCum = through, cum
	}
	c.deleted = through
	c.deletedCum = cum
	if c.watermark <= c.deleted {
		c.wmCum = c.deletedCum
	}
}

// purgeWindow: records deleted while fewer bytes than this were appended
// after them are deleted from disk at once (they are likely still in the
// memtable); a chunk of at least this many bytes deleted behind a backlog is
// deleted from disk by purgeIsolated.
func (o *Outbox) purgeWindow() uint64 { return o.opts.MemTableSize }

// purgeDue says whether enough was deleted behind a backlog to delete it
// from disk now.
func (o *Outbox) purgeDue() bool {
	c := &o.c
	return c.purged < c.deleted && c.deletedCum-c.purgedCum >= o.purgeWindow()
}

// purgeIsolated deletes from disk the records in (purged, deleted], which
// sat behind a backlog, so that the range tombstone gets an sstable of its
// own. Pebble rotates the memtable before the tombstone (the old memtable,
// new records and the meta, flushes without it) and after it (the tombstone
// flushes alone, its sstable bounded by the deleted range). A tombstone
// flushed together with new records makes an sstable that spans the whole
// backlog in between, and compacting that one into the level below rewrites
// the backlog: the cost of a delete would grow with the backlog.
//
// The meta goes first, with the current head (findHead relies on it), and
// records the new purged position in a later batch: after a crash purged
// may lag (the range is deleted again, which changes nothing), never lead.
func (o *Outbox) purgeIsolated() {
	c := &o.c
	if c.purged >= c.deleted {
		return
	}
	b := o.db.NewBatch()
	c.mbuf = c.meta.encode(c.mbuf[:0])
	_ = b.Set(metaKey, c.mbuf, nil)
	c.dirty, c.metaStale = false, false
	err := o.apply(b, pebble.NoSync)
	b.Close()
	if err != nil || o.rotate() != nil {
		return
	}
	b = o.db.NewBatch()
	_ = b.DeleteRange(recordKey(c.epoch, c.purged+1), recordKey(c.epoch, c.deleted+1), nil)
	err = o.apply(b, pebble.NoSync)
	b.Close()
	if err != nil || o.rotate() != nil {
		return
	}
	o.deletedSince += int64(c.deletedCum - c.purgedCum)
	c.purged, c.purgedCum = c.deleted, c.deletedCum
	c.dirty = true
	o.chunkPurges.Add(1)
}

// rotate makes Pebble switch to a new memtable (and WAL) and flush the old
// one in the background.
func (o *Outbox) rotate() (err error) {
	defer o.recoverFatal(&err)
	if err := o.failedErr(); err != nil {
		return err
	}
	_, err = o.db.AsyncFlush()
	return err
}

// makeRoom (drop_oldest) deletes acknowledged, then the oldest unacknowledged
// records until size more bytes fit.
func (o *Outbox) makeRoom(b *pebble.Batch, size int64) error {
	c := &o.c
	used := func() int64 { return int64(c.headMemCum - c.deletedCum) }
	if used()+size <= o.opts.MaxBytes {
		return nil
	}
	o.purge(b, c.watermark)
	need := used() + size - o.opts.MaxBytes
	if need <= 0 {
		return nil
	}
	target := c.deletedCum + uint64(need)
	// Find the smallest seq whose cum reaches target: on disk first, then memory.
	var upTo Seq
	var upToCum uint64
	if c.diskHead > c.deleted {
		it, err := o.db.NewIter(&pebble.IterOptions{
			LowerBound: recordKey(c.epoch, c.deleted+1),
			UpperBound: recordKey(c.epoch, c.diskHead+1),
		})
		if err != nil {
			return err
		}
		for ok := it.First(); ok; ok = it.Next() {
			cum, err := decodeCum(it.Value())
			if err != nil {
				break
			}
			_, s, _ := parseRecordKey(it.Key())
			upTo, upToCum = s, cum
			if cum >= target {
				break
			}
		}
		if err := it.Close(); err != nil {
			return err
		}
	}
	if upToCum < target {
		o.mu.Lock()
		for i := range o.mem {
			upTo, upToCum = o.mem[i].rec.Seq, o.mem[i].cum
			if upToCum >= target {
				break
			}
		}
		o.mu.Unlock()
	}
	if upTo <= c.deleted {
		return &FullError{Reason: "max_bytes"}
	}
	dr := Range{First: c.deleted + 1, Last: upTo}
	c.addDrop(dr, upToCum)
	c.dropped += dr.Len()
	o.deletePrefix(b, upTo, upToCum)
	if c.watermark < c.deleted {
		c.wmCum = c.deletedCum
	}
	c.dirty = true
	o.trimCheckpoints(upTo)
	return nil
}

// housekeeping runs on the committer's ticker: retention, spill, disk checks.
func (o *Outbox) housekeeping() {
	if o.failedErr() != nil {
		return
	}
	o.checkDisk(false)
	c := &o.c
	b := o.db.NewBatch()
	defer b.Close()
	sync := false
	if o.opts.RetainAcked > 0 && len(c.ackMarks) > 0 {
		cutoff := time.Now().Add(-o.opts.RetainAcked)
		var through Seq
		for _, m := range c.ackMarks {
			if m.at.Before(cutoff) {
				through = m.through
			}
		}
		if through > 0 {
			o.purge(b, through)
		}
	}
	if o.opts.Durability == Spill {
		o.spillDue(b, &sync)
	}
	if c.metaStale && o.opts.Durability == Fsync {
		c.dirty = true // an acknowledgement not yet written (see ack)
	}
	if c.dirty {
		_ = b.Set(metaKey, c.meta.encode(nil), nil)
		c.dirty, c.metaStale = false, false
		wo := pebble.NoSync
		if sync {
			wo = pebble.Sync
		}
		if err := o.apply(b, wo); err != nil {
			return
		}
		o.publish()
	}
	if o.purgeDue() {
		o.purgeIsolated()
	}
	o.maybeCompact()
}

// maybeCompact compacts the deleted key range in the background once enough
// was deleted, so that disk space comes back (pebble#3744).
func (o *Outbox) maybeCompact() {
	threshold := max(o.opts.MaxBytes/16, 4<<20)
	if o.deletedSince < threshold && (o.deletedSince == 0 || time.Since(o.lastCompacted) < 10*time.Minute) {
		return
	}
	if !o.compactBusy.CompareAndSwap(false, true) {
		return
	}
	o.deletedSince = 0
	o.lastCompacted = time.Now()
	epoch, deleted := o.c.epoch, o.c.purged
	go func() {
		defer o.compactBusy.Store(false)
		defer func() { _ = recover() }()
		if o.closing.Load() {
			return
		}
		start := []byte{kindRecord}
		end := recordKey(epoch, deleted+1)
		if err := o.db.Compact(start, end, false); err != nil && !errors.Is(err, pebble.ErrClosed) {
			o.log().Warn("outbox: compaction of acknowledged records failed", "err", err)
		}
	}()
}

// flushOnClose writes what only memory holds (spill mode) and releases the
// sequence reservation, so that a clean restart reports no loss.
func (o *Outbox) flushOnClose() error {
	for o.compactBusy.Load() {
		time.Sleep(5 * time.Millisecond)
	}
	c := &o.c
	b := o.db.NewBatch()
	defer b.Close()
	if o.opts.Durability == Spill {
		o.spillUpTo(b, c.headMem)
		for name, v := range c.sources {
			_ = b.Set(sourceKey(name), v, nil)
		}
	}
	c.reserved = c.head
	_ = b.Set(metaKey, c.meta.encode(nil), nil)
	return o.apply(b, pebble.Sync)
}
