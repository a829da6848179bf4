package outbox

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/vfs"
	"pgregory.net/rapid"
)

// model is the simplest queue that behaves like the outbox in fsync mode.
type model struct {
	max       int64
	dropOld   bool
	head      Seq
	watermark Seq
	live      []Record // unacknowledged, not dropped, in order
	drops     []Range
	dropped   uint64
}

func (m *model) used() int64 {
	var n int64
	for i := range m.live {
		n += recordSize(&m.live[i])
	}
	return n
}

func (m *model) append(recs []Record) (ok bool) {
	var size int64
	for i := range recs {
		size += recordSize(&recs[i])
	}
	if size > m.max {
		return false
	}
	if m.used()+size > m.max {
		if !m.dropOld {
			return false
		}
		for m.used()+size > m.max {
			r := m.live[0]
			m.live = m.live[1:]
			m.dropped++
			if n := len(m.drops); n > 0 && m.drops[n-1].Last+1 == r.Seq {
				m.drops[n-1].Last = r.Seq
			} else {
				m.drops = append(m.drops, Range{r.Seq, r.Seq})
			}
		}
	}
	for _, r := range recs {
		m.head++
		r.Seq = m.head
		m.live = append(m.live, r)
	}
	return true
}

func (m *model) ack(through Seq) {
	if through <= m.watermark || through > m.head {
		return
	}
	m.watermark = through
	for len(m.live) > 0 && m.live[0].Seq <= through {
		m.live = m.live[1:]
	}
	k := 0
	for _, d := range m.drops {
		if d.Last > through {
			m.drops[k] = d
			k++
		}
	}
	m.drops = m.drops[:k]
}

func TestModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		// An in-memory filesystem keeps a hundred runs fast; crash behaviour
		// is TestCrashConsistency's job.
		dir := "/model"
		fs := vfs.NewMem()
		dropOld := rapid.Bool().Draw(rt, "drop_oldest")
		opts := Options{MaxBytes: 64 << 10, WhenFull: Block, FS: fs}
		if dropOld {
			opts.WhenFull = DropOldest
		}
		m := &model{max: opts.MaxBytes, dropOld: dropOld}
		ob := mustOpen(t, dir, opts)
		defer func() { ob.Close() }()
		next := 0
		rt.Repeat(map[string]func(*rapid.T){
			"append": func(rt *rapid.T) {
				n := rapid.IntRange(1, 40).Draw(rt, "n")
				recs := make([]Record, n)
				for i := range recs {
					recs[i] = rec(next)
					pad := rapid.IntRange(0, 2000).Draw(rt, "pad")
					recs[i].Data = append([]byte(nil), make([]byte, pad)...)
					next++
				}
				wantOK := m.append(append([]Record(nil), recs...))
				ctx, cancel := context.WithCancel(context.Background())
				cancel() // never wait for space
				first, last, err := ob.Append(ctx, recs)
				if wantOK != (err == nil) {
					rt.Fatalf("append of %d: err = %v, model ok = %v", n, err, wantOK)
				}
				if err == nil && (last != m.head || first != m.head-Seq(n)+1) {
					rt.Fatalf("append got %d..%d, model head %d", first, last, m.head)
				}
				if err != nil && !errors.Is(err, ErrFull) && !errors.Is(err, ErrTooLarge) {
					rt.Fatalf("append: unexpected error %v", err)
				}
			},
			"ack": func(rt *rapid.T) {
				through := Seq(rapid.IntRange(0, int(m.head)).Draw(rt, "through"))
				m.ack(through)
				if _, err := ob.Ack(ob.Epoch(), through); err != nil {
					rt.Fatalf("ack %d: %v", through, err)
				}
			},
			"reopen": func(rt *rapid.T) {
				if err := ob.Close(); err != nil {
					rt.Fatal(err)
				}
				ob = mustOpen(t, dir, opts)
			},
			"": func(rt *rapid.T) {
				// Invariants: contents, head, watermark, drops, bytes.
				st := ob.Stats()
				if st.Head != m.head || st.Watermark != m.watermark || st.Dropped != m.dropped {
					rt.Fatalf("stats head %d wm %d dropped %d; model %d %d %d", st.Head, st.Watermark, st.Dropped, m.head, m.watermark, m.dropped)
				}
				if fmt.Sprint(st.Drops) != fmt.Sprint(m.drops) && !(len(st.Drops) == 0 && len(m.drops) == 0) {
					rt.Fatalf("drops %v, model %v", st.Drops, m.drops)
				}
				if st.UsedBytes != m.used() || st.DepthBytes != m.used() {
					rt.Fatalf("used %d depth bytes %d, model %d", st.UsedBytes, st.DepthBytes, m.used())
				}
				got := readAll(t, ob, 1)
				if len(got) != len(m.live) {
					rt.Fatalf("read %d records, model has %d", len(got), len(m.live))
				}
				for i := range got {
					if got[i].Seq != m.live[i].Seq || got[i].ID != m.live[i].ID || len(got[i].Data) != len(m.live[i].Data) {
						rt.Fatalf("record %d: seq %d id %s; model seq %d id %s", i, got[i].Seq, got[i].ID, m.live[i].Seq, m.live[i].ID)
					}
				}
			},
		})
	})
}
