package capture

import (
	"context"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"

	"github.com/edgesync/edgesync/internal/testenv"
	"github.com/edgesync/edgesync/outbox"
	"github.com/edgesync/edgesync/transport"
)

func TestMain(m *testing.M) { testenv.Main(m, testenv.VerifyNoLeaks()) }

func quiet() *slog.Logger {
	if os.Getenv("EDGESYNC_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// openOutbox opens a real outbox in dir (a new temporary directory when "")
// and closes it when the test ends.
func openOutbox(t testing.TB, dir string, o outbox.Options) *outbox.Outbox {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	if o.MinFreeDisk == 0 {
		o.MinFreeDisk = -1
	}
	if o.Ballast == 0 {
		o.Ballast = -1
	}
	if o.MaxRecordBytes == 0 {
		o.MaxRecordBytes = transport.MaxDataBytes
	}
	if o.Logger == nil {
		o.Logger = quiet()
	}
	ob, err := outbox.Open(dir, o)
	if err != nil {
		t.Fatalf("outbox.Open: %v", err)
	}
	t.Cleanup(func() { ob.Close() })
	return ob
}

// readAll returns every record the outbox holds from seq 1.
func readAll(t testing.TB, ob *outbox.Outbox) []outbox.Record {
	t.Helper()
	var all []outbox.Record
	for from := outbox.Seq(1); ; {
		_, recs, err := ob.Read(from, 1000, 1<<30, nil)
		if err != nil {
			t.Fatalf("Read(%d): %v", from, err)
		}
		if len(recs) == 0 {
			return all
		}
		all = append(all, recs...)
		from = recs[len(recs)-1].Seq + 1
	}
}

// countingHandler counts log records.
type countingHandler struct {
	mu sync.Mutex
	n  int
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(context.Context, slog.Record) error {
	h.mu.Lock()
	h.n++
	h.mu.Unlock()
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }
func (h *countingHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}
