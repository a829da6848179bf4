package outbox

import (
	"time"

	"github.com/cockroachdb/pebble"
)

// appendSpill hands sequence numbers out of a durable reservation and keeps
// the records in memory.
func (o *Outbox) appendSpill(b *pebble.Batch, r *request, sync *bool) {
	c := &o.c
	n := Seq(len(r.recs))
	if c.headMem+n > c.reserved {
		// Reserve a block on disk before handing any of it out, so that a
		// crash never lets a sequence number be used twice.
		c.reserved = c.headMem + n + Seq(o.opts.SeqBlock)
		c.dirty = true
		*sync = true
	}
	now := time.Now()
	o.mu.Lock()
	for i := range r.recs {
		rec := r.recs[i]
		rec.Data = append([]byte(nil), rec.Data...) // the producer may reuse its buffer
		c.headMem++
		rec.Seq = c.headMem
		r.recs[i].Seq = rec.Seq
		size := recordSize(&rec)
		c.headMemCum += uint64(size)
		o.mem = append(o.mem, memRecord{rec: rec, cum: c.headMemCum, at: now})
		o.memBytes += size
	}
	over := o.memBytes > o.opts.SpillMemory
	o.mu.Unlock()
	if r.src != nil {
		c.sources[r.src.Name] = append([]byte(nil), r.src.Value...)
	}
	if over {
		o.spillDue(b, sync)
	}
}

// spillDue writes to disk the records that waited in memory longer than
// SpillDelay, and enough of the oldest to bring memory under half of
// SpillMemory when it is over budget.
func (o *Outbox) spillDue(b *pebble.Batch, sync *bool) {
	cutoff := time.Now().Add(-o.opts.SpillDelay)
	var through Seq
	o.mu.Lock()
	bytes := o.memBytes
	for i := range o.mem {
		m := &o.mem[i]
		if m.rec.Seq <= o.c.diskHead {
			continue
		}
		if m.at.Before(cutoff) || bytes > o.opts.SpillMemory/2 && o.memBytes > o.opts.SpillMemory {
			through = m.rec.Seq
			bytes -= recordSize(&m.rec)
			continue
		}
		break
	}
	o.mu.Unlock()
	if through > 0 {
		o.spillUpTo(b, through)
		*sync = true
	}
}

// spillUpTo adds the memory records up to through to b. They leave memory
// when the batch is committed and published.
func (o *Outbox) spillUpTo(b *pebble.Batch, through Seq) {
	c := &o.c
	if through <= c.diskHead {
		return
	}
	now := o.opts.Now().UnixNano()
	buf := make([]byte, 0, 512)
	var last Seq
	var lastCum uint64
	o.mu.Lock()
	for i := range o.mem {
		m := &o.mem[i]
		if m.rec.Seq <= c.diskHead {
			continue
		}
		if m.rec.Seq > through {
			break
		}
		buf = appendRecordValue(buf[:0], &m.rec, m.cum, now)
		_ = b.Set(recordKey(c.epoch, m.rec.Seq), buf, nil)
		last, lastCum = m.rec.Seq, m.cum
	}
	o.mu.Unlock()
	if last == 0 {
		return
	}
	c.diskHead = last
	c.head, c.headCum = last, lastCum
	c.dirty = true
}
