// Package promtext writes metrics in the Prometheus text exposition format
// (version 0.0.4), by hand: the client library and its protobuf dependencies
// would add megabytes to a binary meant for gateways short of flash.
//
// Samples of one family must be written one after the other; the writer
// prints # HELP and # TYPE once per family.
package promtext

import (
	"bufio"
	"io"
	"math"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// ContentType of the text format.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Writer writes one exposition.
type Writer struct {
	w    *bufio.Writer
	last string
}

// NewWriter writes to w; call Flush at the end.
func NewWriter(w io.Writer) *Writer { return &Writer{w: bufio.NewWriterSize(w, 16<<10)} }

// Flush writes what is buffered.
func (w *Writer) Flush() error { return w.w.Flush() }

func (w *Writer) header(name, help, typ string) {
	if w.last == name {
		return
	}
	w.last = name
	w.w.WriteString("# HELP ")
	w.w.WriteString(name)
	w.w.WriteByte(' ')
	w.w.WriteString(escapeHelp(help))
	w.w.WriteString("\n# TYPE ")
	w.w.WriteString(name)
	w.w.WriteByte(' ')
	w.w.WriteString(typ)
	w.w.WriteByte('\n')
}

func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`).Replace(s)
}

// sample writes name{labels} value. labels are key, value pairs; extra is one
// more pair (for le) or empty.
func (w *Writer) sample(name string, labels []string, extraK, extraV string, v float64) {
	w.w.WriteString(name)
	if len(labels) >= 2 || extraK != "" {
		w.w.WriteByte('{')
		first := true
		for i := 0; i+1 < len(labels); i += 2 {
			if !first {
				w.w.WriteByte(',')
			}
			first = false
			w.w.WriteString(labels[i])
			w.w.WriteString(`="`)
			w.w.WriteString(escapeLabel(labels[i+1]))
			w.w.WriteByte('"')
		}
		if extraK != "" {
			if !first {
				w.w.WriteByte(',')
			}
			w.w.WriteString(extraK)
			w.w.WriteString(`="`)
			w.w.WriteString(extraV)
			w.w.WriteByte('"')
		}
		w.w.WriteByte('}')
	}
	w.w.WriteByte(' ')
	w.w.WriteString(formatFloat(v))
	w.w.WriteByte('\n')
}

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// Gauge writes one gauge sample. labels are key, value pairs.
func (w *Writer) Gauge(name, help string, v float64, labels ...string) {
	w.header(name, help, "gauge")
	w.sample(name, labels, "", "", v)
}

// Counter writes one counter sample.
func (w *Writer) Counter(name, help string, v float64, labels ...string) {
	w.header(name, help, "counter")
	w.sample(name, labels, "", "", v)
}

// Histogram writes one histogram: upper bounds (without +Inf), the
// cumulative count at each bound, the total count and the sum.
func (w *Writer) Histogram(name, help string, bounds []float64, cumulative []uint64, count uint64, sum float64, labels ...string) {
	w.header(name, help, "histogram")
	for i, b := range bounds {
		w.sample(name+"_bucket", labels, "le", formatFloat(b), float64(cumulative[i]))
	}
	w.sample(name+"_bucket", labels, "le", "+Inf", float64(count))
	w.sample(name+"_sum", labels, "", "", sum)
	w.sample(name+"_count", labels, "", "", float64(count))
}

var start = time.Now()

// Process writes the Go runtime and process metrics a gateway operator needs:
// resident memory, heap, goroutines, open files, CPU time.
func (w *Writer) Process() {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	w.Gauge("go_goroutines", "Goroutines that currently exist.", float64(runtime.NumGoroutine()))
	w.Gauge("go_memstats_heap_inuse_bytes", "Bytes in in-use heap spans.", float64(m.HeapInuse))
	w.Gauge("go_memstats_heap_alloc_bytes", "Bytes of allocated heap objects.", float64(m.HeapAlloc))
	w.Gauge("go_memstats_sys_bytes", "Bytes obtained from the operating system.", float64(m.Sys))
	w.Counter("go_gc_cycles_total", "Completed GC cycles.", float64(m.NumGC))
	if rss, ok := residentBytes(); ok {
		w.Gauge("process_resident_memory_bytes", "Resident memory size in bytes.", float64(rss))
	}
	if n, err := os.ReadDir("/proc/self/fd"); err == nil {
		w.Gauge("process_open_fds", "Open file descriptors.", float64(len(n)))
	}
	if cpu, ok := cpuSeconds(); ok {
		w.Counter("process_cpu_seconds_total", "User and system CPU time spent, in seconds.", cpu)
	}
	w.Gauge("process_start_time_seconds", "Start time of the process since the unix epoch, in seconds.",
		float64(start.UnixNano())/1e9)
}

func residentBytes() (uint64, bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * uint64(os.Getpagesize()), true
}

func cpuSeconds() (float64, bool) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, false
	}
	s := string(b)
	// The command name is in parentheses and may hold spaces.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	const clkTck = 100 // USER_HZ on Linux
	return (ut + st) / clkTck, true
}

// Handler serves the exposition written by fill, with the process metrics.
func Handler(fill func(w *Writer)) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", ContentType)
		w := NewWriter(rw)
		fill(w)
		w.Process()
		_ = w.Flush()
	})
}
