package transport

import (
	"github.com/edgesync/edgesync/outbox"
	"github.com/edgesync/edgesync/transport/wire"
)

// FillRecords puts recs into b as wire records, with First and Last, reusing
// dst's memory; it returns the slice for the next call. Data is shared, not
// copied.
func FillRecords(b *wire.Batch, dst []wire.Record, recs []outbox.Record) []wire.Record {
	dst = dst[:0]
	for i := range recs {
		r := &recs[i]
		dst = append(dst, wire.Record{
			Seq: uint64(r.Seq), Stream: r.Stream, Key: r.Key, ID: r.ID, Op: uint8(r.Op),
			Schema: r.Schema, SchemaVersion: r.SchemaVersion, CapturedAt: r.CapturedAt,
			Data: r.Data,
		})
	}
	if len(recs) > 0 {
		b.Records = dst
		b.First, b.Last = uint64(recs[0].Seq), uint64(recs[len(recs)-1].Seq)
	}
	return dst
}

// CompressionByte maps batch.compression ("zstd", "none") to the wire's byte.
func CompressionByte(name string) byte {
	if name == "none" {
		return wire.CompressionNone
	}
	return wire.CompressionZstd
}
