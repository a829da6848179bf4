package outbox

import (
	"fmt"

	"github.com/cockroachdb/pebble"
)

// Read appends to dst the records with seq >= from, in order and without
// holes, at most maxRecords of them and stopping before their Data exceeds
// maxBytes (but always at least one record when there is one). Records below
// from that were acknowledged or dropped are skipped, so the first record
// returned may be above from. It returns the epoch the records belong to.
//
// Read never scans from the start of the store: its iterator is bounded by
// the lowest live record and the head.
func (o *Outbox) Read(from Seq, maxRecords, maxBytes int, dst []Record) (Epoch, []Record, error) {
	if from == 0 {
		from = 1
	}
	o.mu.Lock()
	if o.failed != nil {
		err := o.failed
		o.mu.Unlock()
		return 0, dst, err
	}
	v := o.v
	if from <= v.deleted {
		from = v.deleted + 1
	}
	if from > v.head || maxRecords <= 0 {
		o.mu.Unlock()
		return v.epoch, dst, nil
	}
	var it *pebble.Iterator
	if from <= v.diskHead {
		var err error
		// Created under o.mu, so that its view of the disk matches v.diskHead
		// and the spill memory below.
		it, err = o.db.NewIter(&pebble.IterOptions{
			LowerBound: recordKey(v.epoch, from),
			UpperBound: recordKey(v.epoch, min(v.diskHead, from+Seq(maxRecords)-1)+1),
		})
		if err != nil {
			o.mu.Unlock()
			return v.epoch, dst, fmt.Errorf("outbox: read: %w", err)
		}
	}
	var mem []memRecord
	if v.head > v.diskHead && len(o.mem) > 0 {
		// Copy the part of spill memory the read can use.
		start := 0
		for start < len(o.mem) && o.mem[start].rec.Seq < from {
			start++
		}
		end := start
		// Only what is published: records appended to memory by a batch
		// whose sequence reservation is not yet synced stay invisible.
		for end < len(o.mem) && end-start < maxRecords && o.mem[end].rec.Seq <= v.head {
			end++
		}
		mem = append(mem, o.mem[start:end]...)
	}
	o.mu.Unlock()

	n, bytes := 0, 0
	next := Seq(0)
	var lastCum uint64
	full := func(size int) bool {
		return n >= maxRecords || (n > 0 && bytes+size > maxBytes)
	}
	if it != nil {
		for ok := it.First(); ok; ok = it.Next() {
			_, s, _ := parseRecordKey(it.Key())
			if next != 0 && s != next {
				break // a hole: stop at the contiguous prefix
			}
			if full(len(it.Value())) {
				break
			}
			var r Record
			cum, _, err := decodeRecordValue(it.Value(), &r)
			if err != nil {
				_ = it.Close()
				return v.epoch, dst, fmt.Errorf("outbox: read record %d: %w", s, err)
			}
			r.Seq = s
			lastCum = cum
			dst = append(dst, r)
			n++
			bytes += len(r.Data)
			next = s + 1
		}
		if err := it.Close(); err != nil {
			return v.epoch, dst, fmt.Errorf("outbox: read: %w", err)
		}
		if n > 0 && next <= v.diskHead {
			o.hint(v.epoch, next-1, lastCum)
			return v.epoch, dst, nil // stopped early on disk
		}
	}
	for i := range mem {
		r := mem[i].rec
		if next != 0 && r.Seq != next {
			break
		}
		if full(len(r.Data)) {
			break
		}
		dst = append(dst, r)
		n++
		bytes += len(r.Data)
		next = r.Seq + 1
		lastCum = mem[i].cum
	}
	if n > 0 {
		o.hint(v.epoch, next-1, lastCum)
	}
	return v.epoch, dst, nil
}
