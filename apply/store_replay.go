package apply

import (
	"context"
	"fmt"
	"time"

	"github.com/edgesync/edgesync/transport/wire"
)

// replayChunk is how many parked rows one ReplayParked transaction reads.
const replayChunk = 500

// ReplayParked applies the parked records that policy p (nil:
// DefaultPolicy) now accepts, into edgesync_log or edgesync_state as their
// stream's mode under p says, and deletes them from edgesync_parked in the
// same transaction. Records still not accepted, or still not storable
// (undecodable data), stay parked.
//
// It is idempotent: a replayed record is deleted from edgesync_parked when
// it is applied, so running it twice, or in two processes at once
// (PostgreSQL skips rows another replay holds), applies nothing twice. A
// replayed record whose producer id was applied meanwhile is deleted as a
// duplicate. Watermarks and device counters do not change: parked records
// already count as applied for the watermark.
//
// replayed counts the rows resolved (applied or found duplicate), remaining
// the rows left in edgesync_parked afterwards. It works through the table in
// transactions of up to 500 rows; after an error, those committed stay
// replayed and running it again carries on.
func (s *Store) ReplayParked(ctx context.Context, p *Policy) (replayed, remaining int, err error) {
	if s.closed.Load() {
		return 0, 0, ErrClosed
	}
	var cur parkedRow // the last row seen; the zero key sorts before every row
	for {
		var (
			n, conflicts int
			last         parkedRow
			more         bool
		)
		for {
			n, last, more, err = s.replayOnce(ctx, p, cur)
			if err == nil || !s.be.retryable(err) || conflicts >= maxConflictRetries {
				break
			}
			conflicts++
			time.Sleep(firstRetryDelay)
		}
		if err != nil {
			return replayed, 0, err
		}
		replayed += n
		if !more {
			break
		}
		cur = last
	}
	remaining, err = s.be.countParked(ctx)
	return replayed, remaining, err
}

// replayOnce replays the parked rows after cur, up to replayChunk of them,
// in one transaction.
func (s *Store) replayOnce(ctx context.Context, p *Policy, cur parkedRow) (n int, last parkedRow, more bool, err error) {
	tx, err := s.be.beginReplay(ctx)
	if err != nil {
		return 0, cur, false, err
	}
	defer tx.rollback()
	parked, err := tx.parkedAfter(ctx, cur.device, cur.epoch, cur.seq, replayChunk)
	if err != nil || len(parked) == 0 {
		return 0, cur, false, err
	}
	last = parked[len(parked)-1]

	// Decode; rows whose raw does not decode stay parked.
	recs := make([]wire.Record, len(parked))
	ok := make([]bool, len(parked))
	for i := range parked {
		if rec, err := wire.DecodeRecord(parked[i].raw); err == nil {
			recs[i] = *rec
			ok[i] = rec.Seq == uint64(parked[i].seq)
		}
	}
	now := time.Now().UTC()
	var done []parkedRow
	// parked is ordered by (device, epoch, seq): walk it group by group.
	for lo := 0; lo < len(parked); {
		hi := lo + 1
		for hi < len(parked) && parked[hi].device == parked[lo].device && parked[hi].epoch == parked[lo].epoch {
			hi++
		}
		var rows []row
		var idx []int
		for i := lo; i < hi; i++ {
			if ok[i] {
				rows = append(rows, row{rec: &recs[i]})
				idx = append(idx, i)
			}
		}
		s.classify(rows, p)
		var logRows, stateRows []*row
		for j := range rows {
			switch rows[j].kind {
			case kindLog:
				logRows = append(logRows, &rows[j])
			case kindState:
				stateRows = append(stateRows, &rows[j])
			default:
				continue
			}
			done = append(done, parked[idx[j]])
		}
		g := &group{device: parked[lo].device, epoch: parked[lo].epoch, epochGen: parked[lo].epochGen, now: now}
		if _, _, err := writeRows(ctx, tx, g, logRows, stateRows); err != nil {
			return 0, cur, false, err
		}
		lo = hi
	}
	if len(done) > 0 {
		if err := tx.deleteParked(ctx, done); err != nil {
			return 0, cur, false, err
		}
	}
	if err := tx.commit(ctx); err != nil {
		return 0, cur, false, err
	}
	return len(done), last, len(parked) == replayChunk, nil
}

// rowScanner is what scanParked needs of *sql.Rows and *pgwire.Rows.
type rowScanner interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// scanParked reads edgesync_parked rows selected by sqlParkedAfter/pgParkedAfter.
func scanParked(rows rowScanner) ([]parkedRow, error) {
	var out []parkedRow
	for rows.Next() {
		var p parkedRow
		if err := rows.Scan(&p.device, &p.epoch, &p.seq, &p.stream, &p.schema, &p.reason, &p.raw, &p.epochGen); err != nil {
			return nil, fmt.Errorf("read edgesync_parked: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read edgesync_parked: %w", err)
	}
	return out, nil
}
