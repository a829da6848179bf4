package outbox

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
)

// Outbox is a durable, bounded queue of records. All methods are safe for
// concurrent use.
type Outbox struct {
	opts Options
	dir  string
	fs   vfs.FS // opts.FS wrapped to release the ballast on ENOSPC

	lock  io.Closer
	db    *pebble.DB
	cache interface{ Unref() }

	reqs    chan *request
	quit    chan struct{}
	done    chan struct{}
	closing atomic.Bool
	closeMu sync.Mutex
	closed  bool

	changed chan struct{}

	// c is the committer's state. Only the committer goroutine touches it
	// (and Open, before the goroutine starts).
	c cstate

	mu         sync.Mutex
	v          view          // what readers and producers see
	pending    int64         // bytes admitted, not yet committed
	spaceFreed chan struct{} // closed and replaced whenever space is freed
	// refusing: in Block mode, the latest append found no room in max_bytes
	// and no space has been freed since (Stats.Full).
	refusing    atomic.Bool
	mem         []memRecord // spill: records after v.diskHead, in seq order
	memBytes    int64
	checkpoints []Checkpoint
	failed      error

	diskLow  atomic.Bool
	purgeAsk atomic.Bool

	// hints remembers the cumulative byte count of the last record of recent
	// reads: an ack is usually through such a record, and cumAt then need not
	// read it back from disk (a Pebble Get that walks every level when the
	// record sits behind a backlog).
	hintMu sync.Mutex
	hints  [cumHintSlots]cumHint

	// counters
	appended      atomic.Uint64
	ackedTotal    atomic.Uint64
	ackDuplicates atomic.Uint64
	ackStale      atomic.Uint64
	commits       atomic.Uint64
	chunkPurges   atomic.Uint64 // purgeIsolated runs (tests)
	corruptions   atomic.Uint64
	ballastOn     atomic.Bool
	deletedSince  int64 // bytes deleted since the last manual compaction (committer only)
	lastCompacted time.Time
	compactBusy   atomic.Bool
	openedAt      time.Time
}

// cstate is the committer's private state: the durable meta plus derived values.
type cstate struct {
	meta
	headMem    Seq    // highest seq handed out, including spill memory
	headMemCum uint64 // cum of headMem
	diskHead   Seq    // every seq in (deleted, diskHead] is on disk
	wmCum      uint64 // cum at max(watermark, deleted)
	ackMarks   []ackMark
	sources    map[string][]byte // spill: positions waiting for the next disk write
	dirty      bool              // meta changed since the last write: write it in the next batch
	metaStale  bool              // the watermark moved; housekeeping writes the meta if nothing else does

	kbuf, vbuf, mbuf []byte // scratch for keys, values and the meta (Batch.Set copies)
}

type ackMark struct {
	through Seq
	at      time.Time
}

// view is what readers and producers see, published by the committer.
type view struct {
	epoch       Epoch
	epochReason string
	head        Seq
	diskHead    Seq
	watermark   Seq
	deleted     Seq
	usedBytes   int64 // bytes held, including retained acknowledged records
	unacked     int64 // bytes not yet acknowledged
	drops       []Range
	dropped     uint64
	epochs      uint64
}

type memRecord struct {
	rec Record
	cum uint64
	at  time.Time // monotonic
}

// Checkpoint marks when the records up to Last were handed to the outbox and
// when they became durable (monotonic clock).
type Checkpoint struct {
	Last     Seq
	Enqueued time.Time
	Durable  time.Time
}

const maxCheckpoints = 4096

type reqKind uint8

const (
	reqAppend reqKind = iota
	reqAck
	reqPurge
)

type request struct {
	kind reqKind
	recs []Record
	src  *SourcePosition
	size int64
	enq  time.Time

	epoch   Epoch
	through Seq

	first, last Seq
	dup         bool
	err         error
	done        chan struct{}
}

var reqPool = sync.Pool{New: func() any { return &request{done: make(chan struct{}, 1)} }}

// SourcePosition is a capture source's position (for example a file offset),
// stored in the same batch as the records it covers, so that a crash neither
// loses nor repeats what the source read.
type SourcePosition struct {
	Name  string
	Value []byte
}

// Open opens (or creates) the outbox in dir.
func Open(dir string, opts Options) (*Outbox, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	o := &Outbox{
		opts:       opts,
		dir:        dir,
		reqs:       make(chan *request, 1024),
		quit:       make(chan struct{}),
		done:       make(chan struct{}),
		changed:    make(chan struct{}, 1),
		spaceFreed: make(chan struct{}),
		openedAt:   time.Now(),
	}
	if err := o.open(); err != nil {
		return nil, err
	}
	go o.run()
	return o, nil
}

func (o *Outbox) log() *slog.Logger { return o.opts.Logger }

func (o *Outbox) open() error {
	fs := o.opts.FS
	if err := fs.MkdirAll(o.dir, 0o700); err != nil {
		return fmt.Errorf("outbox: create %s: %w", o.dir, err)
	}
	if err := syncDir(fs, fs.PathDir(o.dir)); err != nil {
		return fmt.Errorf("outbox: sync %s: %w", fs.PathDir(o.dir), err)
	}
	lock, err := fs.Lock(fs.PathJoin(o.dir, "LOCK.edgesync"))
	if err != nil {
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EWOULDBLOCK) ||
			isHeldByProcess(err) {
			return ErrLocked
		}
		return fmt.Errorf("outbox: lock %s: %w", o.dir, err)
	}
	o.lock = lock
	ok := false
	defer func() {
		if !ok {
			if o.db != nil {
				_ = o.db.Close()
			}
			if o.cache != nil {
				o.cache.Unref()
			}
			_ = o.lock.Close()
		}
	}()

	o.checkDisk(true)
	o.fs = vfs.OnDiskFull(fs, o.onDiskFull)
	dbDir := fs.PathJoin(o.dir, "db")
	if err := fs.MkdirAll(dbDir, 0o700); err != nil {
		return fmt.Errorf("outbox: create %s: %w", dbDir, err)
	}
	if err := syncDir(fs, o.dir); err != nil {
		return fmt.Errorf("outbox: sync %s: %w", o.dir, err)
	}
	reason := "new outbox"
	db, err := o.openPebble(dbDir)
	if err != nil && pebble.IsCorruptionError(err) {
		aside := fs.PathJoin(o.dir, "db.corrupt-"+time.Now().UTC().Format("20060102T150405Z"))
		o.log().Error("outbox: store is corrupted; moving it aside and starting a new epoch",
			"dir", dbDir, "moved_to", aside, "err", err)
		o.corruptions.Add(1)
		if rerr := fs.Rename(dbDir, aside); rerr != nil {
			return fmt.Errorf("outbox: corrupted store %s could not be moved aside: %v (open: %w)", dbDir, rerr, err)
		}
		reason = "store was corrupted and moved aside to " + aside
		if err := fs.MkdirAll(dbDir, 0o700); err != nil {
			return fmt.Errorf("outbox: create %s: %w", dbDir, err)
		}
		if err := syncDir(fs, o.dir); err != nil {
			return fmt.Errorf("outbox: sync %s: %w", o.dir, err)
		}
		db, err = o.openPebble(dbDir)
	}
	if err != nil {
		return fmt.Errorf("outbox: open %s: %w", dbDir, err)
	}
	o.db = db
	if err := o.load(reason); err != nil {
		return err
	}
	ok = true
	return nil
}

// syncDir makes the entries of a directory durable (new files and subdirectories).
func syncDir(fs vfs.FS, dir string) error {
	f, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func isHeldByProcess(err error) bool {
	return err != nil && (errors.Is(err, os.ErrExist) || containsStr(err.Error(), "lock held by current process") ||
		containsStr(err.Error(), "already locked"))
}

func containsStr(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

type fatalPanic struct{ msg string }

type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	// Pebble's informational messages are not interesting on a gateway.
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error("outbox: pebble fatal error", "err", msg)
	panic(fatalPanic{msg})
}

func (o *Outbox) openPebble(dir string) (*pebble.DB, error) {
	cache := pebble.NewCache(o.opts.CacheSize)
	po := &pebble.Options{
		FS:                          o.fs,
		Cache:                       cache,
		MemTableSize:                o.opts.MemTableSize,
		MemTableStopWritesThreshold: 4,
		MaxOpenFiles:                o.opts.MaxOpenFiles,
		MaxConcurrentCompactions:    func() int { return 1 },
		L0CompactionThreshold:       2,
		L0StopWritesThreshold:       1000,
		LBaseMaxBytes:               16 << 20,
		BytesPerSync:                512 << 10,
		WALBytesPerSync:             0,
		Logger:                      pebbleLogger{o.opts.Logger},
		FormatMajorVersion:          pebble.FormatNewest,
	}
	po.Levels = make([]pebble.LevelOptions, 7)
	for i := range po.Levels {
		po.Levels[i].TargetFileSize = 2 << 20
		po.Levels[i].BlockSize = 16 << 10
	}
	po.EnsureDefaults()
	db, err := pebble.Open(dir, po)
	if err != nil {
		cache.Unref()
		return nil, err
	}
	o.cache = cache
	return db, nil
}

// load reads the meta record (or creates the store) and finishes any
// interrupted work: a spill-mode crash, or a move to a new epoch.
func (o *Outbox) load(reason string) error {
	v, closer, err := o.db.Get(formatKey)
	c := &o.c
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		c.meta = meta{format: formatVersion, epochs: 1}
		c.epoch = newEpoch(0)
		c.epochReason = reason
		o.log().Info("outbox: new epoch", "epoch", c.epoch, "reason", reason)
		if err := o.writeFormat(); err != nil {
			return fmt.Errorf("outbox: initialise: %w", err)
		}
	case err != nil:
		return fmt.Errorf("outbox: read meta: %w", err)
	default:
		m, derr := decodeMeta(v)
		_ = closer.Close()
		if derr != nil {
			return derr
		}
		if m.format < formatVersion {
			// Format 1: the marker is the meta. Move it above the records.
			o.log().Info("outbox: upgrading the on-disk format", "from", m.format, "to", formatVersion)
			m.format = formatVersion
			c.meta = m
			if err := o.writeFormat(); err != nil {
				return fmt.Errorf("outbox: upgrade format: %w", err)
			}
			break
		}
		v, closer, err := o.db.Get(metaKey)
		if err != nil {
			return fmt.Errorf("outbox: read meta: %w", err)
		}
		m, derr = decodeMeta(v)
		_ = closer.Close()
		if derr != nil {
			return derr
		}
		c.meta = m
	}
	if err := o.findHead(); err != nil {
		return err
	}
	c.headMem, c.headMemCum, c.diskHead = c.head, c.headCum, c.head
	c.sources = map[string][]byte{}
	// A spill-mode crash: sequence numbers up to reserved may have been handed
	// out and lost with memory. Tell the sink.
	if c.reserved > c.head {
		lost := Range{First: c.head + 1, Last: c.reserved}
		o.log().Warn("outbox: records held only in memory were lost in a crash (spill mode)",
			"first", lost.First, "last", lost.Last)
		c.addDrop(lost, c.headCum)
		c.dropped += lost.Len()
		// Records spilled to disk before the crash stay readable; the lost
		// range is a hole after them that every batch reports until the
		// sink acknowledges past it. It holds no bytes.
		c.head, c.headMem, c.diskHead = c.reserved, c.reserved, c.reserved
		c.dirty = true
	}
	c.reserved = c.head
	if c.migEpoch != 0 {
		if err := o.migrate(); err != nil {
			return err
		}
	}
	o.publish()
	c.wmCum = c.deletedCum
	if c.watermark > c.deleted {
		cum, err := o.cumAt(c.watermark)
		if err != nil {
			return err
		}
		c.wmCum = cum
	}
	if c.dirty {
		if err := o.writeMeta(pebble.Sync); err != nil {
			return err
		}
	}
	// Checkpoint for what was already there: its age from the stored wall clock.
	if c.head > c.deleted {
		at := time.Now()
		if old, err := o.appendedAtWall(c.deleted + 1); err == nil {
			age := o.opts.Now().Sub(time.Unix(0, old))
			if age > 0 && age < 365*24*time.Hour {
				at = at.Add(-age)
			}
		}
		o.checkpoints = append(o.checkpoints, Checkpoint{Last: c.head, Enqueued: at, Durable: at})
	}
	o.publish()
	return nil
}

// findHead moves the head past the records written after the meta: in
// Fsync mode a batch of records does not rewrite the meta (a key rewritten
// in every batch glues each flushed sstable to the previous one, so that
// none can be moved down the levels without a rewrite). One bounded seek,
// whatever the backlog. Records above meta.head are never deleted before
// a meta with a head at least as high is written (see purgeIsolated).
func (o *Outbox) findHead() error {
	c := &o.c
	it, err := o.db.NewIter(&pebble.IterOptions{
		LowerBound: recordKey(c.epoch, c.head+1),
		UpperBound: epochPrefix(c.epoch + 1),
	})
	if err != nil {
		return fmt.Errorf("outbox: find head: %w", err)
	}
	if it.Last() {
		_, s, ok := parseRecordKey(it.Key())
		cum, err := decodeCum(it.Value())
		if !ok || err != nil {
			_ = it.Close()
			return fmt.Errorf("outbox: find head: malformed record %x", it.Key())
		}
		c.head, c.headCum = s, cum
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("outbox: find head: %w", err)
	}
	return nil
}

// writeFormat writes the format marker and the meta in one synced batch.
func (o *Outbox) writeFormat() error {
	b := o.db.NewBatch()
	defer b.Close()
	marker := meta{format: formatVersion}
	if err := b.Set(formatKey, marker.encode(nil), nil); err != nil {
		return err
	}
	if err := b.Set(metaKey, o.c.meta.encode(nil), nil); err != nil {
		return err
	}
	return o.db.Apply(b, pebble.Sync)
}

func (o *Outbox) writeMeta(wo *pebble.WriteOptions) error {
	b := o.db.NewBatch()
	defer b.Close()
	if err := b.Set(metaKey, o.c.meta.encode(nil), nil); err != nil {
		return err
	}
	o.c.dirty, o.c.metaStale = false, false
	return o.db.Apply(b, wo)
}

// newEpoch returns a random positive 63-bit integer other than old.
func newEpoch(old Epoch) Epoch {
	for {
		var b [8]byte
		if _, err := crand.Read(b[:]); err != nil {
			panic(err)
		}
		e := Epoch(binary.BigEndian.Uint64(b[:]) &^ (1 << 63))
		if e != 0 && e != old {
			return e
		}
	}
}

func (c *cstate) addDrop(r Range, lastCum uint64) {
	if n := len(c.drops); n > 0 && c.drops[n-1].Last+1 == r.First {
		c.drops[n-1].Last = r.Last
		c.drops[n-1].lastCum = lastCum
		return
	}
	c.drops = append(c.drops, dropRange{Range: r, lastCum: lastCum})
}

const cumHintSlots = 64

type cumHint struct {
	epoch Epoch
	seq   Seq
	cum   uint64
}

// hint remembers the cum of record s of epoch e.
func (o *Outbox) hint(e Epoch, s Seq, cum uint64) {
	o.hintMu.Lock()
	o.hints[s%cumHintSlots] = cumHint{epoch: e, seq: s, cum: cum}
	o.hintMu.Unlock()
}

// cumAt returns the cumulative byte count of record s, which must be on disk
// or in spill memory.
func (o *Outbox) cumAt(s Seq) (uint64, error) {
	c := &o.c
	if s == c.headMem {
		return c.headMemCum, nil
	}
	o.hintMu.Lock()
	h := o.hints[s%cumHintSlots]
	o.hintMu.Unlock()
	if h.epoch == c.epoch && h.seq == s && s != 0 {
		return h.cum, nil
	}
	o.mu.Lock()
	if s > o.v.diskHead {
		defer o.mu.Unlock()
		for i := range o.mem {
			if o.mem[i].rec.Seq == s {
				return o.mem[i].cum, nil
			}
		}
		return 0, fmt.Errorf("outbox: record %d not in memory", s)
	}
	o.mu.Unlock()
	// A seq in a dropped range has no record: its cum is the range's (lost
	// records in spill mode hold no bytes; dropped ones were freed).
	for _, d := range c.drops {
		if d.First <= s && s <= d.Last {
			return d.lastCum, nil
		}
	}
	v, closer, err := o.db.Get(recordKey(c.epoch, s))
	if err != nil {
		return 0, fmt.Errorf("outbox: read record %d: %w", s, err)
	}
	defer closer.Close()
	return decodeCum(v)
}

func (o *Outbox) appendedAtWall(s Seq) (int64, error) {
	v, closer, err := o.db.Get(recordKey(o.c.epoch, s))
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	var r Record
	_, at, err := decodeRecordValue(v, &r)
	return at, err
}

// publish copies the committer's state into the view. Callers other than
// load hold no lock; publish takes o.mu.
func (o *Outbox) publish() {
	c := &o.c
	drops := make([]Range, len(c.drops))
	for i, d := range c.drops {
		drops[i] = d.Range
	}
	o.mu.Lock()
	freed := int64(c.headMemCum-c.deletedCum) < o.v.usedBytes
	// Records spilled to disk or deleted leave memory now, together with the
	// new diskHead, so readers always see each record in one place.
	i := 0
	for i < len(o.mem) && o.mem[i].rec.Seq <= c.diskHead {
		o.memBytes -= recordSize(&o.mem[i].rec)
		i++
	}
	if i > 0 {
		o.mem = o.mem[i:]
		if len(o.mem) == 0 {
			o.mem = nil
		}
	}
	o.v = view{
		epoch:       c.epoch,
		epochReason: c.epochReason,
		head:        c.headMem,
		diskHead:    c.diskHead,
		watermark:   c.watermark,
		deleted:     c.deleted,
		usedBytes:   int64(c.headMemCum - c.deletedCum),
		unacked:     int64(c.headMemCum - c.wmCum),
		drops:       drops,
		dropped:     c.dropped,
		epochs:      c.epochs,
	}
	if freed {
		close(o.spaceFreed)
		o.spaceFreed = make(chan struct{})
		o.refusing.Store(false)
	}
	o.mu.Unlock()
}

func (o *Outbox) signal() {
	select {
	case o.changed <- struct{}{}:
	default:
	}
}

// Changed returns a channel that receives a value whenever records are
// appended or the dropped ranges change. It is meant for one consumer (the
// uplink); values are coalesced.
func (o *Outbox) Changed() <-chan struct{} { return o.changed }

// Epoch returns the current epoch.
func (o *Outbox) Epoch() Epoch {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.v.epoch
}

// Append stores recs (their Seq fields are ignored) and returns the sequence
// numbers they got. In Fsync mode it returns only once they are synced to
// disk. A request is all or nothing. When the outbox is full and WhenFull is
// Block, Append waits for space until ctx ends, then returns an error matching
// ErrFull.
func (o *Outbox) Append(ctx context.Context, recs []Record) (first, last Seq, err error) {
	return o.AppendWithSource(ctx, recs, nil)
}

// AppendWithSource is Append that also stores src in the same batch.
func (o *Outbox) AppendWithSource(ctx context.Context, recs []Record, src *SourcePosition) (first, last Seq, err error) {
	if len(recs) == 0 && src == nil {
		return 0, 0, nil
	}
	var size int64
	for i := range recs {
		if n := len(recs[i].Data); n > o.opts.MaxRecordBytes {
			return 0, 0, fmt.Errorf("%w: record %d: data is %d bytes, at most %d", ErrRecordTooLarge, i, n, o.opts.MaxRecordBytes)
		}
		size += recordSize(&recs[i])
	}
	if err := o.admit(ctx, size); err != nil {
		return 0, 0, err
	}
	r := reqPool.Get().(*request)
	*r = request{kind: reqAppend, recs: recs, src: src, size: size, enq: time.Now(), done: r.done}
	if err := o.submit(r); err != nil {
		o.unadmit(size)
		reqPool.Put(r)
		return 0, 0, err
	}
	<-r.done
	first, last, err = r.first, r.last, r.err
	r.recs, r.src = nil, nil
	reqPool.Put(r)
	if err == nil {
		o.appended.Add(uint64(len(recs)))
	}
	return first, last, err
}

func (o *Outbox) submit(r *request) error {
	if o.closing.Load() {
		return ErrClosed
	}
	select {
	case o.reqs <- r:
		return nil
	case <-o.done:
		return ErrClosed
	}
}

func (o *Outbox) unadmit(size int64) {
	o.mu.Lock()
	o.pending -= size
	o.mu.Unlock()
}

// admit reserves size bytes, waiting for space in Block mode.
func (o *Outbox) admit(ctx context.Context, size int64) error {
	if size > o.opts.MaxBytes {
		return fmt.Errorf("%w: %d bytes, max_bytes is %d", ErrTooLarge, size, o.opts.MaxBytes)
	}
	for {
		o.mu.Lock()
		if o.failed != nil {
			err := o.failed
			o.mu.Unlock()
			return err
		}
		if o.closing.Load() {
			o.mu.Unlock()
			return ErrClosed
		}
		var full error
		if o.diskLow.Load() {
			full = &FullError{Reason: "disk"}
		} else if o.opts.WhenFull == Block && o.v.usedBytes+o.pending+size > o.opts.MaxBytes {
			full = &FullError{Reason: "max_bytes"}
			o.refusing.Store(true)
			if o.v.deleted < o.v.watermark || o.v.usedBytes > o.v.unacked {
				// Acknowledged records are retained: delete them early.
				o.purgeAsk.Store(true)
			}
		}
		if full == nil {
			o.pending += size
			o.refusing.Store(false)
			o.mu.Unlock()
			return nil
		}
		wait := o.spaceFreed
		o.mu.Unlock()
		if o.purgeAsk.Load() {
			o.askPurge()
		}
		if o.opts.WhenFull == DropOldest && o.diskLow.Load() {
			return full
		}
		var tick <-chan time.Time
		if o.diskLow.Load() {
			t := time.NewTimer(250 * time.Millisecond)
			defer t.Stop()
			tick = t.C
		}
		select {
		case <-wait:
		case <-tick:
		case <-ctx.Done():
			return full
		case <-o.done:
			return ErrClosed
		}
	}
}

func (o *Outbox) askPurge() {
	r := &request{kind: reqPurge, done: make(chan struct{}, 1)}
	select {
	case o.reqs <- r:
	default:
	}
}

// AckResult says what an acknowledgement changed.
type AckResult struct {
	// Advanced is true when the watermark moved.
	Advanced bool
	// Watermark is the acknowledged watermark after the ack.
	Watermark Seq
}

// Ack records that the sink applied every record of epoch e through seq
// through. It is cumulative and idempotent: an ack at or below the watermark
// changes nothing. An ack for another epoch returns ErrStaleEpoch. An ack
// above the head returns ErrAckAboveHead after starting a new epoch.
func (o *Outbox) Ack(e Epoch, through Seq) (AckResult, error) {
	r := reqPool.Get().(*request)
	*r = request{kind: reqAck, epoch: e, through: through, done: r.done}
	if err := o.submit(r); err != nil {
		reqPool.Put(r)
		return AckResult{}, err
	}
	<-r.done
	err, dup := r.err, r.dup
	reqPool.Put(r)
	o.mu.Lock()
	wm := o.v.watermark
	o.mu.Unlock()
	switch {
	case errors.Is(err, ErrStaleEpoch):
		o.ackStale.Add(1)
	case err == nil && dup:
		o.ackDuplicates.Add(1)
	}
	return AckResult{Advanced: err == nil && !dup, Watermark: wm}, err
}

// Close spills what is in memory (spill mode), writes the state, and closes
// Pebble. It is safe to call more than once.
func (o *Outbox) Close() error {
	o.closeMu.Lock()
	defer o.closeMu.Unlock()
	if o.closed {
		return nil
	}
	o.closed = true
	o.closing.Store(true)
	close(o.quit)
	<-o.done
	var errs []error
	if o.failedErr() == nil {
		if err := o.flushOnClose(); err != nil {
			errs = append(errs, err)
		}
	}
	// After a storage failure Pebble may panic or hang in Close: give it a
	// little time, then leave it (the process is expected to restart).
	closed := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				closed <- fmt.Errorf("outbox: close: %v", p)
			}
		}()
		closed <- o.db.Close()
	}()
	wait := time.Duration(1<<63 - 1)
	if o.failedErr() != nil {
		wait = 2 * time.Second
	}
	select {
	case err := <-closed:
		if err != nil && o.failedErr() == nil {
			errs = append(errs, fmt.Errorf("outbox: close: %w", err))
		}
	case <-time.After(wait):
		errs = append(errs, fmt.Errorf("outbox: close: pebble did not close after a storage failure"))
	}
	if o.cache != nil {
		o.cache.Unref()
	}
	if err := o.lock.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (o *Outbox) failedErr() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.failed
}

// SourcePosition returns the stored position of the named capture source, or
// nil when there is none.
func (o *Outbox) SourcePosition(name string) ([]byte, error) {
	v, closer, err := o.db.Get(sourceKey(name))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return append([]byte(nil), v...), nil
}
