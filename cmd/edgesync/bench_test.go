//go:build !nosink

package main

import (
	"encoding/json"
	"testing"

	"github.com/edgesync/edgesync/internal/testenv"
)

// TestBenchSmoke runs `edgesync bench` briefly: it must finish, find every
// record in the sink exactly once, and report each phase.
func TestBenchSmoke(t *testing.T) {
	bin := testenv.BuildBinary(t)
	out, code := runBin(t, bin, "bench", "--bin", bin, "--broker", "mosquitto", "--duration", "2s", "--steady-for", "2s",
		"--steady-rate", "500", "--ceiling-for", "1s", "--clients", "2", "--json")
	if code != 0 {
		t.Fatalf("bench exit %d:\n%s", code, out)
	}
	var rep BenchReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("bench --json: %v\n%s", err, out)
	}
	if !rep.OK || rep.FullLoad == nil || rep.Steady == nil || rep.Faults == nil || rep.SinkCeiling <= 0 {
		t.Fatalf("report %+v", rep)
	}
	for _, p := range []*BenchPhase{rep.FullLoad, rep.Steady, rep.Faults} {
		if p.Accepted == 0 || p.InSink != p.Accepted || p.Latency["capture_to_ack"].Count == 0 {
			t.Fatalf("phase %s: %+v", p.Name, p)
		}
	}
}
