// Package outbox is edgesync's durable queue of captured records, kept in
// Pebble on the gateway's own disk.
//
// # Identity
//
// Every record is identified by (epoch, seq). seq starts at 1 and grows by one
// per record; it is written in the same batch as the record and never handed
// out twice within an epoch, also across crashes. The epoch is a random
// positive 63-bit integer chosen when the store is created, and again when the
// outbox cannot prove that its sequence is intact: a corrupted store (moved
// aside to db.corrupt-<time>), or an acknowledgement above the head (the disk
// was restored or cloned). In the latter case the unacknowledged records are
// moved into the new epoch, renumbered from 1 in their order.
//
// # Durability: what a crash loses
//
// In Fsync mode Append returns only after its batch is synced (group commit:
// every append waiting at that moment shares one synced batch). A process
// kill or a power cut loses nothing that Append acknowledged. An append that
// returned an error may still be stored: producers that retry should set a
// record ID, which the sink applies at most once.
//
// Acknowledgements are written without a sync of their own (the next synced
// append makes them durable), within 250 ms. A crash may therefore lose the
// newest acknowledgements: those records are sent again and the sink skips
// them as duplicates.
//
// In Spill mode records stay in memory and are handed to readers at once; they
// are written to disk only when not acknowledged within SpillDelay, when
// memory exceeds SpillMemory, or at Close. Sequence numbers come from blocks
// reserved on disk (synced) before use. A crash or power cut loses every
// record that was only in memory; after the restart the unused remainder of
// the reserved block (which includes them) becomes a dropped range, so the
// sink counts the loss instead of waiting for it. The loss count is therefore
// an upper bound: numbers reserved but never handed out count too.
//
// # Bounds
//
// The outbox holds at most MaxBytes (keys and values of records, including
// acknowledged records retained for RetainAcked). When full, Block makes
// Append wait (until its context ends: ErrFull) and DropOldest deletes the
// oldest unacknowledged records, keeping their range (persisted) until the
// sink acknowledges past it, so that every batch tells the sink of the loss.
// Free disk space below MinFreeDisk counts as full. A ballast file is deleted
// when the disk fills up so that acknowledgements, deletes and compactions
// still work, and recreated when space returns. If Pebble itself fails to
// write (ENOSPC, EIO), the outbox fails every later call with ErrFailed; a
// restart recovers everything that was acknowledged.
//
// # Reading and acknowledging
//
// Read returns records from any seq, bounded by count and bytes, through
// iterators bounded below by the lowest live record and above by the head:
// nothing seeks from the start of the store, so acknowledged ranges (deleted
// with one DeleteRange each, and compacted in the background) cost nothing.
// Ack is cumulative and idempotent. Acknowledged records leave reads at
// once. They leave the disk with the ack when they are near the head (still
// in the memtable, so that they are never flushed); behind a backlog, in
// chunks of about a memtable, each range tombstone in a memtable of its own,
// so that deleting never makes Pebble rewrite the backlog below it.
// Reopening reads the meta record and seeks once to the last record: head,
// watermark and epoch come back in constant time whatever the backlog.
//
// # Concurrency
//
// Every method is safe for concurrent use. One committer goroutine owns all
// writes; Read and Stats take a short lock and never wait for a commit.
package outbox
