// Package resync moves a device's unacknowledged records to the sink by hand
// when the link is down for long: `edgesync export` writes a bundle (to a USB
// stick), `edgesync import` applies it at the sink and writes a signed
// receipt, and `edgesync ack-import` verifies the receipt on the device and
// trims the outbox with it. The byte-level format is docs/RESYNC.md.
//
// # Bundles
//
// A bundle is a magic line, a header frame, the batches exactly as the
// uplink publishes them on {p}/{d}/up (wire.EncodeBatch payloads, each
// within wire.MaxBatchBytes), and a trailer frame with the counts and the
// SHA-256 of everything before it. Every frame carries its length and a
// CRC-32C.
//
// Guarantees:
//
//   - The sink applies a bundle with the same rules, and the same
//     idempotency, as batches from MQTT: importing a bundle twice, importing
//     overlapping bundles, or importing while the device also reaches the
//     broker applies every record at most once. Export of the records kept
//     by retain_acked (from below the watermark) carries from-1 as the acked
//     watermark, so the sink does not count them as lost.
//   - Export is consistent while the agent runs: it covers the records from
//     its start through the head as of its start; records the outbox drops
//     meanwhile (drop_oldest) are reported as dropped ranges, never as a
//     hole the sink would stop at, and never alongside the same seq as a
//     record.
//   - Nothing damaged is applied: a batch reaches the apply function only
//     after its frame's CRC-32C matched, it decoded and validated like a
//     batch from MQTT, and it was found to be of the header's device and
//     epoch and in seq order. A batch of another device refuses the bundle.
//   - A bundle is never taken as complete unless it is: Reader.Next returns
//     io.EOF only after the trailer's SHA-256 over the whole stream and its
//     counts match and nothing follows. A truncated or damaged bundle is an
//     error that says what and where (ErrTruncated, ErrDamaged, ErrInvalid).
//     Because Import streams, the intact batches before such a problem are
//     already applied when it is found; that is harmless (application is
//     idempotent and the sink's watermark is the truth) but Import returns
//     the error and no receipt may be written.
//   - Memory is bounded whatever the file says: Export and Import hold one
//     batch at a time; a Reader allocates at most wire.MaxBatchBytes (plus
//     growth slack) for a batch frame, MaxHeaderBytes and MaxTrailerBytes
//     for the others, reads a frame 64 KiB at a time (a length in a
//     truncated file costs only the bytes really there), and decodes
//     batches within the wire limits.
//   - Bundles are not signed: whoever can hand the sink a bundle can make it
//     apply records for the device it names, as whoever can publish on
//     {p}/{d}/up can. Keep bundles as you keep broker credentials.
//
// # Receipts
//
// A receipt says that a sink applied (device, epoch) through applied_through
// after importing the bundle with a given SHA-256. It is a CBOR map in
// canonical form, signed with the sink's ed25519 key over a domain-separated
// text message (Receipt.SigningMessage); DecodeReceipt accepts exactly one
// encoding per receipt. Acknowledge treats a verified receipt as an ack
// from the sink: cumulative, idempotent, ignored (with an error) for another
// epoch, refused for another device or a key not trusted.
//
// # Concurrency
//
// Export, Import, the receipt and key functions are safe for concurrent use
// (on different writers and readers). A Writer or a Reader is used by one
// goroutine at a time.
package resync
