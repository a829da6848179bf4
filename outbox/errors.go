package outbox

import (
	"errors"
	"fmt"
)

// Sentinel errors. Each is documented with what the caller should do.
var (
	// ErrLocked: another process (or another Outbox in this process) has the
	// directory open. Retry later; the CLI exits 75.
	ErrLocked = errors.New("outbox: locked by another process")
	// ErrFull: the outbox holds max_bytes and when_full is block, or free disk
	// space is below the floor. Nothing of the request was stored; retry later.
	ErrFull = errors.New("outbox: full")
	// ErrTooLarge: the request alone is larger than the outbox may ever hold.
	ErrTooLarge = errors.New("outbox: request larger than max_bytes")
	// ErrRecordTooLarge: one record's data is over MaxRecordBytes; nothing of
	// the request was stored.
	ErrRecordTooLarge = errors.New("outbox: record too large")
	// ErrClosed: the outbox was closed.
	ErrClosed = errors.New("outbox: closed")
	// ErrStaleEpoch: an acknowledgement for an epoch that is not the current one.
	// Nothing changed.
	ErrStaleEpoch = errors.New("outbox: acknowledgement for another epoch")
	// ErrAckAboveHead: an acknowledgement above the head: the sink has records
	// this outbox never wrote, so the disk was restored or cloned. The outbox
	// has started a new epoch; unacknowledged records were moved into it.
	ErrAckAboveHead = errors.New("outbox: acknowledgement above the head; started a new epoch")
	// ErrFailed: Pebble reported an error it cannot continue from (for example
	// an I/O error writing its log). Every later call fails; the process must
	// restart, and reopening recovers every record that was acknowledged.
	ErrFailed = errors.New("outbox: storage failed; restart required")
)

// FormatError: the store was written by a newer edgesync with a format this
// binary does not know.
type FormatError struct {
	Have, Max uint64
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("outbox: on-disk format %d is newer than this binary understands (at most %d); upgrade edgesync", e.Have, e.Max)
}

// FullError says why an append found the outbox full. It matches ErrFull with errors.Is.
type FullError struct {
	Reason string // "max_bytes" or "disk"
}

func (e *FullError) Error() string {
	if e.Reason == "disk" {
		return "outbox: full: free disk space below the floor"
	}
	return "outbox: full: max_bytes reached"
}

// Is makes errors.Is(err, ErrFull) true.
func (e *FullError) Is(target error) bool { return target == ErrFull }
