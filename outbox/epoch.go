package outbox

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble"
)

// startNewEpoch moves every unacknowledged record into a new epoch, numbered
// from 1 in the same order. It runs on the committer and blocks appends until
// done; the move is resumable after a crash (meta.migEpoch).
func (o *Outbox) startNewEpoch(reason string) {
	c := &o.c
	old := c.epoch
	from := max(c.watermark, c.deleted) + 1
	o.log().Warn("outbox: starting a new epoch", "old_epoch", old, "reason", reason)
	o.mu.Lock()
	mem := append([]memRecord(nil), o.mem...)
	o.mu.Unlock()

	c.epoch = newEpoch(old)
	c.epochs++
	c.epochReason = reason
	if from <= c.diskHead {
		c.migEpoch, c.migNext, c.migLast = old, from, c.diskHead
	} else {
		c.migEpoch, c.migNext, c.migLast = old, 1, 0 // nothing to copy; still delete the old keys
	}
	c.head, c.headCum, c.watermark, c.deleted, c.deletedCum, c.wmCum = 0, 0, 0, 0, 0, 0
	c.purged, c.purgedCum = 0, 0
	c.diskHead, c.reserved, c.headMem, c.headMemCum = 0, 0, 0, 0
	c.drops = nil
	c.ackMarks = nil
	o.mu.Lock()
	o.mem = nil
	o.memBytes = 0
	var oldest time.Time
	if len(o.checkpoints) > 0 {
		oldest = o.checkpoints[0].Enqueued
	}
	o.checkpoints = nil
	o.mu.Unlock()
	if err := o.migrate(); err != nil {
		o.fail(fmt.Errorf("move records into the new epoch: %w", err))
		return
	}
	// Records that were only in memory (spill) follow, renumbered.
	if len(mem) > 0 {
		o.mu.Lock()
		for _, m := range mem {
			if m.rec.Seq < from {
				continue
			}
			c.headMem++
			m.rec.Seq = c.headMem
			c.headMemCum += uint64(recordSize(&m.rec))
			m.cum = c.headMemCum
			o.mem = append(o.mem, m)
			o.memBytes += recordSize(&m.rec)
		}
		o.mu.Unlock()
		c.reserved = c.headMem + Seq(o.opts.SeqBlock)
		if err := o.writeMeta(pebble.Sync); err != nil {
			o.fail(err)
			return
		}
	}
	if c.headMem > 0 {
		if oldest.IsZero() {
			oldest = time.Now()
		}
		o.addCheckpoint(c.headMem, oldest, oldest)
	}
	o.publish()
	o.signal()
}

func epochPrefix(e Epoch) []byte {
	return binary.BigEndian.AppendUint64([]byte{kindRecord}, uint64(e))
}

// migrate copies records migNext..migLast of epoch migEpoch into the current
// epoch after its head, a chunk per synced batch, then deletes the old epoch.
func (o *Outbox) migrate() error {
	c := &o.c
	const chunk = 1024
	buf := make([]byte, 0, 512)
	for {
		b := o.db.NewBatch()
		n := 0
		if c.migNext <= c.migLast {
			it, err := o.db.NewIter(&pebble.IterOptions{
				LowerBound: recordKey(c.migEpoch, c.migNext),
				UpperBound: recordKey(c.migEpoch, c.migLast+1),
			})
			if err != nil {
				b.Close()
				return err
			}
			for ok := it.First(); ok && n < chunk; ok = it.Next() {
				var rec Record
				_, at, err := decodeRecordValue(it.Value(), &rec)
				if err != nil {
					_ = it.Close()
					b.Close()
					return err
				}
				_, s, _ := parseRecordKey(it.Key())
				c.head++
				rec.Seq = c.head
				c.headCum += uint64(recordSize(&rec))
				buf = appendRecordValue(buf[:0], &rec, c.headCum, at)
				_ = b.Set(recordKey(c.epoch, c.head), buf, nil)
				c.migNext = s + 1
				n++
			}
			if err := it.Close(); err != nil {
				b.Close()
				return err
			}
			if n < chunk {
				c.migNext = c.migLast + 1
			}
		}
		done := c.migNext > c.migLast
		if done {
			_ = b.DeleteRange(epochPrefix(c.migEpoch), epochPrefix(c.migEpoch+1), nil)
			c.migEpoch, c.migNext, c.migLast = 0, 0, 0
		}
		c.headMem, c.headMemCum, c.diskHead, c.reserved = c.head, c.headCum, c.head, c.head
		_ = b.Set(metaKey, c.meta.encode(nil), nil)
		err := o.apply(b, pebble.Sync)
		b.Close()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}
