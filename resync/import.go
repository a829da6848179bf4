package resync

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/edgesync/edgesync/outbox"
	"github.com/edgesync/edgesync/transport/wire"
)

// ApplyFunc applies one batch at the sink, idempotently, as if it had
// arrived on {p}/{device}/up, and returns what the ack would say: the
// cumulative applied_through of (device, batch epoch) after the batch and
// the status (wire.StatusOK, StatusGap, StatusPaused). b is only valid
// during the call.
type ApplyFunc func(device string, b *wire.Batch) (appliedThrough uint64, status uint8, err error)

// ImportResult says what Import did.
type ImportResult struct {
	Header Header
	Device string
	Epoch  outbox.Epoch
	// AppliedThrough is the sink's applied_through for (Device, Epoch) after
	// the last batch: the value a receipt acknowledges. 0 when the bundle
	// held no batch.
	AppliedThrough outbox.Seq
	// Status is what apply returned for the last batch: wire.StatusOK, or
	// StatusGap when the sink misses records before the bundle's (exported
	// with --from above the watermark, or an earlier bundle not imported),
	// or StatusPaused when it holds the device for an unknown schema.
	Status uint8
	// SHA256 of the whole bundle (what sha256sum prints); the receipt names it.
	SHA256  [32]byte
	Batches uint64 // batches applied
	Records uint64 // records in them (applied, duplicates and parked alike)
	Bytes   int64  // bundle bytes read
}

// Receipt returns the unsigned receipt for res: sign it with SignReceipt.
func (res *ImportResult) Receipt(sinkID string, now time.Time) *Receipt {
	return &Receipt{
		V:              ReceiptVersion,
		Device:         res.Device,
		Epoch:          res.Epoch,
		AppliedThrough: res.AppliedThrough,
		Status:         res.Status,
		SinkID:         sinkID,
		Time:           now.UnixNano(),
		BundleSHA256:   res.SHA256[:],
	}
}

// Import reads a bundle from r as a stream and calls apply for each batch,
// in order. It holds one batch in memory at a time, whatever the size of
// the bundle.
//
// Before apply sees a batch, its frame's CRC-32C has been verified, it has
// been decoded and validated like a batch from MQTT, and it has been checked
// to be of the header's device and epoch: a batch of another device stops
// the import with an error matching ErrInvalid that names the batch, before
// that batch is applied.
//
// The SHA-256 over the whole bundle is known only at its end. When the end
// is missing or damaged (ErrTruncated, ErrDamaged), or the trailer's counts
// disagree (ErrInvalid), the batches before the problem have already been
// applied. That is harmless: each of them was intact (its CRC matched), the
// sink applies idempotently and its watermark is the truth, so importing a
// good copy later applies the rest and skips what is there. But the import
// returns the error, with the result so far, and the caller must then not
// write a receipt: a receipt vouches for a whole, verified bundle. An error
// from apply stops the import the same way.
func Import(r io.Reader, apply ApplyFunc) (ImportResult, error) {
	rd, err := NewReader(r)
	if err != nil {
		return ImportResult{}, err
	}
	h := rd.Header()
	res := ImportResult{Header: h, Device: h.Device, Epoch: h.Epoch}
	for {
		_, err := rd.Next()
		res.Bytes = rd.Bytes()
		if errors.Is(err, io.EOF) {
			res.SHA256 = rd.Sum()
			return res, nil
		}
		if err != nil {
			return res, err
		}
		b := rd.Batch()
		through, status, err := apply(h.Device, b)
		if err != nil {
			return res, fmt.Errorf("resync: import: batch %d (records %d..%d): %w", rd.Batches(), b.First, b.Last, err)
		}
		res.AppliedThrough, res.Status = outbox.Seq(through), status
		res.Batches++
		res.Records += uint64(len(b.Records))
	}
}
