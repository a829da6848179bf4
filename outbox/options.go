package outbox

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/vfs"
)

// Durability says when an append is acknowledged to its producer.
type Durability string

// The durability modes.
const (
	// Fsync acknowledges an append only once it is synced to disk: a power cut
	// loses nothing that was acknowledged.
	Fsync Durability = "fsync"
	// Spill keeps records in memory and writes them to disk only when the link
	// does not keep up (not acknowledged within SpillDelay), when memory runs
	// over SpillMemory, or at Close. A crash or power cut loses what was only in
	// memory; the sink is told of the loss as a dropped range.
	Spill Durability = "spill"
)

// WhenFull says what an append does when the outbox holds MaxBytes.
type WhenFull string

// The policies when full.
const (
	// Block makes the append wait for acknowledgements to free space, until its
	// context ends (then ErrFull).
	Block WhenFull = "block"
	// DropOldest deletes the oldest unacknowledged records to make room. The
	// dropped range is kept and reported to the sink, so loss is never silent.
	DropOldest WhenFull = "drop_oldest"
)

// Options configure an outbox. The zero value of every field means its default.
type Options struct {
	// MaxBytes bounds the bytes the outbox holds (records' keys and values,
	// including acknowledged records kept for RetainAcked). Default 1 GiB.
	MaxBytes int64
	// WhenFull is Block (default) or DropOldest.
	WhenFull WhenFull
	// Durability is Fsync (default) or Spill.
	Durability Durability
	// RetainAcked keeps acknowledged records this long before deleting them, for
	// resend-from and export --from. Zero deletes them at once. Retained records
	// are deleted early when space is needed.
	RetainAcked time.Duration
	// SpillDelay is how long a record may stay only in memory in Spill mode
	// before it is written to disk. Default 2s.
	SpillDelay time.Duration
	// SpillMemory bounds the record bytes held only in memory in Spill mode.
	// Default 8 MiB.
	SpillMemory int64
	// SeqBlock is how many sequence numbers Spill mode reserves on disk at a
	// time. Default 4096.
	SeqBlock uint64
	// MinFreeDisk is the free disk space below which the outbox counts as full.
	// Default 64 MiB; negative disables the check.
	MinFreeDisk int64
	// Ballast is the size of a file kept in the outbox directory and deleted
	// when the disk fills up, so that acknowledgements, deletes and compactions
	// still have room. Default 16 MiB; negative disables it.
	Ballast int64
	// CacheSize is Pebble's block cache. Default 4 MiB.
	CacheSize int64
	// MemTableSize is Pebble's memtable size. Default 4 MiB.
	MemTableSize uint64
	// MaxOpenFiles bounds Pebble's open files. Default 64.
	MaxOpenFiles int
	// MaxRecordBytes bounds one record's data, so that every record fits in a
	// batch on the wire. Default 768 KiB.
	MaxRecordBytes int
	// MaxBatchRecords bounds the records committed in one group commit. Default 8192.
	MaxBatchRecords int
	// FS is the filesystem; default the OS's. Tests use vfs.NewStrictMem or errorfs.
	FS vfs.FS
	// DiskFree reports the free bytes of the filesystem holding the outbox.
	// Default: statfs through FS.GetDiskUsage.
	DiskFree func() (uint64, error)
	// Logger receives rare events (new epoch, corruption, disk full). Default slog.Default().
	Logger *slog.Logger
	// Now is the wall clock. Default time.Now.
	Now func() time.Time
}

// EnsureDefaults fills zero fields with their defaults and returns o.
func (o *Options) EnsureDefaults() *Options {
	if o.MaxBytes == 0 {
		o.MaxBytes = 1 << 30
	}
	if o.WhenFull == "" {
		o.WhenFull = Block
	}
	if o.Durability == "" {
		o.Durability = Fsync
	}
	if o.SpillDelay == 0 {
		o.SpillDelay = 2 * time.Second
	}
	if o.SpillMemory == 0 {
		o.SpillMemory = 8 << 20
	}
	if o.SeqBlock == 0 {
		o.SeqBlock = 4096
	}
	if o.MinFreeDisk == 0 {
		o.MinFreeDisk = 64 << 20
	}
	if o.Ballast == 0 {
		o.Ballast = 16 << 20
	}
	if o.CacheSize == 0 {
		o.CacheSize = 4 << 20
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = 4 << 20
	}
	if o.MaxOpenFiles == 0 {
		o.MaxOpenFiles = 64
	}
	if o.MaxRecordBytes == 0 {
		o.MaxRecordBytes = 768 << 10
	}
	if o.MaxBatchRecords == 0 {
		o.MaxBatchRecords = 8192
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Validate reports every problem at once.
func (o *Options) Validate() error {
	var errs []error
	if o.MaxBytes < 64<<10 {
		errs = append(errs, fmt.Errorf("outbox.max_bytes: must be at least 64KiB, got %d", o.MaxBytes))
	}
	switch o.WhenFull {
	case Block, DropOldest:
	default:
		errs = append(errs, fmt.Errorf("outbox.when_full: must be block or drop_oldest, got %q", o.WhenFull))
	}
	switch o.Durability {
	case Fsync, Spill:
	default:
		errs = append(errs, fmt.Errorf("outbox.durability: must be fsync or spill, got %q", o.Durability))
	}
	if o.RetainAcked < 0 {
		errs = append(errs, fmt.Errorf("outbox.retain_acked: must be >= 0, got %v", o.RetainAcked))
	}
	if o.SpillDelay < 0 {
		errs = append(errs, fmt.Errorf("outbox.spill_delay: must be > 0, got %v", o.SpillDelay))
	}
	if o.SpillMemory < 0 {
		errs = append(errs, fmt.Errorf("outbox.spill_memory: must be > 0, got %d", o.SpillMemory))
	}
	if o.MaxBatchRecords < 0 {
		errs = append(errs, fmt.Errorf("outbox: MaxBatchRecords must be > 0"))
	}
	return errors.Join(errs...)
}
