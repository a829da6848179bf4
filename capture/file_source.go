package capture

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/edgesync/edgesync/internal/jsoncbor"
	"github.com/edgesync/edgesync/outbox"
	"github.com/edgesync/edgesync/transport/wire"
)

// Line formats of a file source.
const (
	FileFormatRecord = "record" // each line is a record object as the ingest API takes it (default)
	FileFormatData   = "data"   // each line is the data of a record, as JSON
)

// FileSourceConfig is one entry of `sources.files:` in the agent
// configuration: follow an NDJSON file that another program appends to.
//
//	sources:
//	  files:
//	    - path: /var/log/plc/readings.ndjson
//	      format: data       # each line is the data; or record (default)
//	      stream: readings
type FileSourceConfig struct {
	// Path of the file; required, absolute. It may not exist yet.
	Path string `yaml:"path"`
	// Format of a line: record (default) or data; see FileFormatRecord and
	// FileFormatData.
	Format string `yaml:"format"`
	// Stream of every record; required with format data, and with format
	// record it fills the records that leave it out.
	Stream string `yaml:"stream"`
	// Key and Schema (NAME@VERSION) likewise; "" (default) none.
	Key    string `yaml:"key"`
	Schema string `yaml:"schema"`
	// PollInterval: how often an idle file is checked for new lines,
	// rotation and truncation; default 250ms.
	PollInterval time.Duration `yaml:"poll_interval"`
	// MaxBatch: lines appended together at most; default 1000.
	MaxBatch int `yaml:"max_batch"`
}

// EnsureDefaults fills zero fields with their defaults.
func (c *FileSourceConfig) EnsureDefaults() {
	if c.Format == "" {
		c.Format = FileFormatRecord
	}
	if c.PollInterval == 0 {
		c.PollInterval = 250 * time.Millisecond
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 1000
	}
}

// Validate reports every problem at once, naming keys under prefix (for
// example "sources.files[0]"). Zero values are valid where they have a
// default.
func (c *FileSourceConfig) Validate(prefix string) error {
	cc := *c
	cc.EnsureDefaults()
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", prefix, key, fmt.Sprintf(format, args...)))
	}
	switch {
	case cc.Path == "":
		bad("path", "required")
	case !filepath.IsAbs(cc.Path):
		bad("path", "must be absolute, got %q", cc.Path)
	}
	switch cc.Format {
	case FileFormatRecord:
		if cc.Stream != "" && !wire.ValidStream(cc.Stream) {
			bad("stream", "must match [A-Za-z0-9._-]{1,64}, got %q", cc.Stream)
		}
	case FileFormatData:
		if !wire.ValidStream(cc.Stream) {
			bad("stream", "required with format data; must match [A-Za-z0-9._-]{1,64}, got %q", cc.Stream)
		}
	default:
		bad("format", "must be record or data, got %q", cc.Format)
	}
	if msg := checkKey([]byte(cc.Key)); msg != "" {
		bad("key", "%s", msg)
	}
	if _, _, err := wire.ParseSchema(cc.Schema); err != nil {
		bad("schema", "must be NAME@VERSION, got %q", cc.Schema)
	}
	if cc.PollInterval < 0 {
		bad("poll_interval", "must be > 0, got %v", cc.PollInterval)
	}
	if cc.MaxBatch < 0 {
		bad("max_batch", "must be > 0, got %d", cc.MaxBatch)
	}
	return errors.Join(errs...)
}

// Positioner returns the position a source stored with its last append
// (outbox.SourcePosition), or nil when there is none. *outbox.Outbox
// satisfies it.
type Positioner interface {
	SourcePosition(name string) ([]byte, error)
}

// FileSource follows an NDJSON file. See FileSourceConfig.
//
// Only complete lines (ending in "\n") are consumed. Blank lines are
// skipped; a line that is not a valid record (or data) is skipped and
// counted, so that it never blocks the lines after it. Lines longer than
// 1 MiB plus 64 KiB are refused likewise.
//
// The position (the file's device and inode, the offset after the last
// consumed line, and a checksum of the file's first 64 bytes) is stored with
// every append, in the same outbox batch as the records (AppendWithSource,
// name "file:"+path), and read back by Run. So a crash neither loses nor
// duplicates a line: what was appended is after the stored offset, what was
// not is before it.
//
// Rotation by rename: when the path names another file (a new inode), the
// old file is read to its end and, after a poll interval without new data,
// the new one from its start. If the agent was stopped during a rotation,
// Run finds the old file in the same directory by its inode and finishes it
// first. Truncation (copytruncate): when the file is shorter than the
// offset, it is read from the start; lines written between the last read
// and the truncation are lost, as with every reader of copytruncate. A file
// replaced by one whose first bytes differ is read from the start.
//
// A new source (no stored position) reads an existing file from its start.
//
// The guarantee is the outbox's: in fsync mode exactly once across crashes;
// in spill mode a crash loses the records that were only in memory (the
// outbox reports them to the sink as dropped) and the position may already
// be past them.
type FileSource struct {
	cfg   FileSourceConfig
	name  string
	a     Appender
	pos   Positioner
	m     *Metrics
	log   *rateLog
	def   *defaults
	stats sourceStats
	ran   atomic.Bool

	// Run's state.
	p    parser
	t    *tail
	ends []int64 // the end offset of the line of each record in p.recs
}

// tail is the file being read.
type tail struct {
	f        *os.File
	path     string // the name it was opened by
	dev, ino uint64
	off      int64  // the start of the first line not yet consumed
	buf      []byte // the bytes from off on that were read (an incomplete line)
	skipping bool   // discarding an overlong line, read up to skipAt
	skipAt   int64
	dirty    bool // off moved since the position was last stored
	fpLen    int  // bytes covered by fp: min(64, off) once stored
	fp       uint32
	rotated  bool // path names another file now: finish this one, then switch
	idle     int  // polls without new data since rotated
}

const (
	readChunk     = 64 << 10
	maxLine       = jsoncbor.MaxLen + 64<<10
	fingerprintSz = 64
)

// NewFileSource checks cfg and returns a source. pos is where it reads its
// stored position (normally the outbox itself). m and log may be nil.
func NewFileSource(cfg FileSourceConfig, a Appender, pos Positioner, m *Metrics, log *slog.Logger) (*FileSource, error) {
	if err := cfg.Validate("file_source"); err != nil {
		return nil, err
	}
	cfg.EnsureDefaults()
	cfg.Path = filepath.Clean(cfg.Path)
	def, err := PutDefaults{Stream: cfg.Stream, Key: cfg.Key, Schema: cfg.Schema}.compile()
	if err != nil {
		return nil, err
	}
	if m == nil {
		m = new(Metrics)
	}
	return &FileSource{cfg: cfg, name: "file:" + cfg.Path, a: a, pos: pos, m: m, log: newRateLog(log), def: def}, nil
}

// Name is the name of the source's stored position: "file:" and the path.
func (s *FileSource) Name() string { return s.name }

// Stats returns the source's counters.
func (s *FileSource) Stats() SourceStats { return s.stats.get() }

// errStopped: the context ended during an append.
var errStopped = errors.New("stopped")

// Run follows the file until ctx ends (then it returns nil), or until the
// outbox cannot take records (then the error). Run may be called once.
func (s *FileSource) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("capture: FileSource.Run called twice")
	}
	raw, err := s.pos.SourcePosition(s.name)
	if err != nil {
		return fmt.Errorf("file source %s: read the stored position: %w", s.cfg.Path, err)
	}
	var saved *filePos
	if raw != nil {
		fp, err := decodeFilePos(raw)
		if err != nil {
			return fmt.Errorf("file source %s: stored position: %w", s.cfg.Path, err)
		}
		saved = &fp
	}
	defer func() {
		if s.t != nil {
			s.t.f.Close()
			s.t = nil
		}
	}()
	for ctx.Err() == nil {
		if s.t == nil {
			if s.open(saved) {
				saved = nil
			} else if !sleepCtx(ctx, s.cfg.PollInterval) {
				return nil
			}
			continue
		}
		progress, err := s.step(ctx)
		if errors.Is(err, errStopped) {
			return nil
		}
		if err != nil {
			return err
		}
		if !progress && !sleepCtx(ctx, s.cfg.PollInterval) {
			return nil
		}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// open opens the file to read, at the saved position when it is that file,
// and reports whether it did.
func (s *FileSource) open(saved *filePos) bool {
	path := s.cfg.Path
	fi, err := os.Stat(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.logf(slog.LevelWarn, "file-open", "file source: cannot stat the file; retrying", "path", path, "err", err)
		return false
	}
	exists := err == nil
	if saved != nil {
		if exists {
			if dev, ino := fileID(fi); dev == saved.dev && ino == saved.ino {
				return s.openAt(path, saved, false)
			}
		}
		// The file last read is no longer at path: rotated while stopped?
		if old := findByID(filepath.Dir(path), saved.dev, saved.ino); old != "" {
			s.log.logf(slog.LevelInfo, "file-rotated", "file source: finishing the file rotated away while stopped", "path", path, "rotated_to", old)
			return s.openAt(old, saved, true)
		}
		if !exists {
			return false
		}
		s.log.logf(slog.LevelInfo, "file-replaced", "file source: the file was replaced while stopped; reading the new one from its start", "path", path)
	}
	if !exists {
		return false
	}
	return s.openAt(path, nil, false)
}

// findByID returns the regular file in dir with the given device and inode,
// or "".
func findByID(dir string, dev, ino uint64) string {
	if dev == 0 && ino == 0 {
		return ""
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if d, i := fileID(fi); d == dev && i == ino {
			return filepath.Join(dir, e.Name())
		}
	}
	return ""
}

func (s *FileSource) openAt(path string, saved *filePos, rotated bool) bool {
	f, err := os.Open(path)
	if err != nil {
		s.log.logf(slog.LevelWarn, "file-open", "file source: cannot open the file; retrying", "path", path, "err", err)
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		s.log.logf(slog.LevelWarn, "file-open", "file source: cannot stat the file; retrying", "path", path, "err", err)
		return false
	}
	t := &tail{f: f, path: path, rotated: rotated}
	t.dev, t.ino = fileID(fi)
	if saved != nil && saved.dev == t.dev && saved.ino == t.ino {
		switch {
		case fi.Size() < saved.off:
			s.log.logf(slog.LevelWarn, "file-truncated", "file source: the file was truncated while stopped; reading it from the start", "path", path)
			t.dirty = true
		case fingerprint(f, int(saved.fpLen)) != saved.fp:
			s.log.logf(slog.LevelWarn, "file-replaced", "file source: the file's first bytes changed while stopped; reading it from the start", "path", path)
			t.dirty = true
		default:
			t.off, t.fpLen, t.fp = saved.off, int(saved.fpLen), saved.fp
		}
	}
	s.t = t
	return true
}

// fingerprint is the CRC-32 of the first n bytes of f (0 when unreadable).
func fingerprint(f *os.File, n int) uint32 {
	if n == 0 {
		return 0
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil {
		return 0
	}
	return crc32.ChecksumIEEE(b)
}

// step reads what the file has past what was read, appends its complete
// lines, and reports whether it made progress.
func (s *FileSource) step(ctx context.Context) (bool, error) {
	t := s.t
	readAt := t.off + int64(len(t.buf))
	if t.skipping {
		readAt = t.skipAt
	}
	if cap(t.buf)-len(t.buf) < readChunk {
		nb := make([]byte, len(t.buf), max(2*cap(t.buf), len(t.buf)+readChunk))
		copy(nb, t.buf)
		t.buf = nb
	}
	room := t.buf[len(t.buf) : len(t.buf)+readChunk]
	n, err := t.f.ReadAt(room, readAt)
	if err != nil && err != io.EOF {
		s.log.logf(slog.LevelWarn, "file-read", "file source: read failed; retrying", "path", t.path, "err", err)
		return false, nil
	}
	if n == 0 {
		return s.idle(ctx)
	}
	t.idle = 0
	if t.skipping {
		data := room[:n]
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			t.skipAt += int64(n)
			return true, nil
		}
		s.rejectLine(t.off, fmt.Errorf("line longer than %d bytes", maxLine))
		t.skipping = false
		t.off = t.skipAt + int64(i) + 1
		t.dirty = true
		t.buf = append(t.buf[:0], data[i+1:]...)
	} else {
		t.buf = t.buf[:len(t.buf)+n]
	}
	return true, s.consume(ctx)
}

// consume appends the complete lines in t.buf, in batches, each with the
// position after its last line.
func (s *FileSource) consume(ctx context.Context) error {
	t := s.t
	for {
		p := &s.p
		p.reset(time.Now())
		s.ends = s.ends[:0]
		consumed := 0
		for lines := 0; lines < s.cfg.MaxBatch; lines++ {
			i := bytes.IndexByte(t.buf[consumed:], '\n')
			if i < 0 {
				break
			}
			s.line(t.buf[consumed:consumed+i], t.off+int64(consumed), t.off+int64(consumed+i+1))
			consumed += i + 1
		}
		if consumed == 0 {
			if len(t.buf) >= maxLine {
				t.skipping, t.skipAt, t.buf = true, t.off+int64(len(t.buf)), t.buf[:0]
			}
			if t.dirty {
				return s.store(ctx, nil, t.off)
			}
			return nil
		}
		if err := s.store(ctx, p.recs, t.off+int64(consumed)); err != nil {
			return err
		}
		t.buf = t.buf[:copy(t.buf, t.buf[consumed:])]
	}
}

// line adds the records of one line (at offset start, ending before end) to
// s.p.recs.
func (s *FileSource) line(b []byte, start, end int64) {
	s.stats.received.Add(1)
	if len(bytes.TrimSpace(b)) == 0 {
		s.stats.skipped.Add(1)
		return
	}
	p := &s.p
	n := len(p.recs)
	var err error
	if s.cfg.Format == FileFormatRecord {
		if c := bytes.TrimLeft(b, " \t\r"); c[0] != '{' {
			err = errors.New("a line must be one record object")
		} else {
			err = p.parse(formatJSON, b, s.def)
		}
	} else {
		p.full, p.b, p.pos, p.format, p.line, p.def = b, b, 0, formatJSON, 0, s.def
		r := &p.rr
		*r = rawRecord{set: 1 << fData, seen: 1 << fData, data: b}
		err = p.build(0, r)
		p.full, p.b = nil, nil
	}
	if err != nil {
		s.rejectLine(start, err)
		return
	}
	for range len(p.recs) - n {
		s.ends = append(s.ends, end)
	}
}

func (s *FileSource) rejectLine(off int64, err error) {
	s.stats.rejected.Add(1)
	s.m.SourceRejected.Add(1)
	s.log.logf(slog.LevelWarn, "file-line", "file source: line skipped", "path", s.t.path, "offset", off, "err", err)
}

// store appends recs (of s.p, with their line ends in s.ends) with the
// position off, waiting while the outbox is full; records that can never be
// stored (too large) are skipped.
func (s *FileSource) store(ctx context.Context, recs []outbox.Record, off int64) error {
	for {
		err := s.appendAt(ctx, recs, off)
		if err == nil {
			return nil
		}
		switch {
		case ctx.Err() != nil:
			return errStopped
		case errors.Is(err, outbox.ErrFull):
			s.log.logf(slog.LevelWarn, "file-full", "file source: outbox full; waiting", "path", s.cfg.Path, "err", err)
			if !sleepCtx(ctx, time.Second) {
				return errStopped
			}
		case errors.Is(err, outbox.ErrTooLarge), errors.Is(err, outbox.ErrRecordTooLarge):
			for k := range recs {
				err := s.appendAt(ctx, recs[k:k+1], s.ends[k])
				if errors.Is(err, outbox.ErrTooLarge) || errors.Is(err, outbox.ErrRecordTooLarge) {
					s.rejectLine(s.t.off, err)
					err = s.appendAt(ctx, nil, s.ends[k])
				}
				if err != nil {
					return s.storeErr(ctx, err)
				}
			}
			return s.storeErr(ctx, s.appendAt(ctx, nil, off))
		default:
			return s.storeErr(ctx, err)
		}
	}
}

func (s *FileSource) storeErr(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return errStopped
	}
	return fmt.Errorf("file source %s: append: %w", s.cfg.Path, err)
}

// appendAt appends recs with the position off and, once stored, moves the
// tail to off.
func (s *FileSource) appendAt(ctx context.Context, recs []outbox.Record, off int64) error {
	t := s.t
	fpLen, fp := t.fpLen, t.fp
	if want := int(min(off, fingerprintSz)); want > fpLen || off < int64(fpLen) {
		fpLen, fp = want, fingerprint(t.f, want)
	}
	pos := filePos{dev: t.dev, ino: t.ino, off: off, fpLen: uint8(fpLen), fp: fp}
	read := time.Unix(0, s.p.now)
	if _, _, err := s.a.AppendWithSource(ctx, recs, &outbox.SourcePosition{Name: s.name, Value: pos.encode()}); err != nil {
		return err
	}
	n := uint64(len(recs))
	if n > 0 {
		s.m.CaptureToDurable.ObserveN(time.Since(read), n)
		s.m.Accepted.Add(n)
		s.stats.records.Add(n)
	}
	// off may be below t.off only after a truncation, where dirty is set.
	t.off, t.fpLen, t.fp, t.dirty = off, fpLen, fp, false
	return nil
}

// idle handles the end of the data: truncation, rotation, and storing a
// moved position.
func (s *FileSource) idle(ctx context.Context) (bool, error) {
	t := s.t
	readAt := t.off + int64(len(t.buf))
	if t.skipping {
		readAt = t.skipAt
	}
	if fi, err := t.f.Stat(); err == nil && fi.Size() < readAt {
		s.log.logf(slog.LevelWarn, "file-truncated", "file source: the file was truncated; reading it from the start", "path", t.path)
		t.off, t.buf, t.skipping, t.fpLen, t.fp, t.dirty = 0, t.buf[:0], false, 0, 0, true
		return true, nil
	}
	if t.dirty {
		if err := s.store(ctx, nil, t.off); err != nil {
			return false, err
		}
	}
	if !t.rotated {
		if fi, err := os.Stat(s.cfg.Path); err == nil {
			if dev, ino := fileID(fi); dev != t.dev || ino != t.ino {
				t.rotated = true
			}
		}
	}
	if t.rotated {
		// Give the writer a poll interval to finish with the old file.
		t.idle++
		if t.idle >= 2 {
			if len(t.buf) > 0 || t.skipping {
				s.rejectLine(t.off, errors.New("incomplete last line of a rotated file"))
			}
			t.f.Close()
			s.t = nil
			return true, nil
		}
	}
	return false, nil
}

// filePos is the stored position of a file source.
type filePos struct {
	dev, ino uint64
	off      int64
	fpLen    uint8  // bytes covered by fp
	fp       uint32 // CRC-32 of the file's first fpLen bytes
}

const (
	filePosVersion = 1
	filePosLen     = 1 + 8 + 8 + 8 + 1 + 4
)

func (p filePos) encode() []byte {
	b := make([]byte, 0, filePosLen)
	b = append(b, filePosVersion)
	b = binary.BigEndian.AppendUint64(b, p.dev)
	b = binary.BigEndian.AppendUint64(b, p.ino)
	b = binary.BigEndian.AppendUint64(b, uint64(p.off))
	b = append(b, p.fpLen)
	return binary.BigEndian.AppendUint32(b, p.fp)
}

func decodeFilePos(b []byte) (filePos, error) {
	if len(b) != filePosLen || b[0] != filePosVersion {
		return filePos{}, fmt.Errorf("unknown format (%d bytes)", len(b))
	}
	p := filePos{
		dev:   binary.BigEndian.Uint64(b[1:]),
		ino:   binary.BigEndian.Uint64(b[9:]),
		off:   int64(binary.BigEndian.Uint64(b[17:])),
		fpLen: b[25],
		fp:    binary.BigEndian.Uint32(b[26:]),
	}
	if p.off < 0 || p.fpLen > fingerprintSz {
		return filePos{}, fmt.Errorf("invalid position (offset %d)", p.off)
	}
	return p, nil
}
