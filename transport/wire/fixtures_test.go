package wire

import (
	"crypto/ed25519"
	"fmt"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// Fixed values of the test messages.
const (
	testPrefix = "edgesync"
	testDevice = "gw-0001"
	testEpoch  = 6917529027641081857 // a 63-bit epoch: needs all 8 bytes
	testTime   = 1795687200000000000 // 2026-11-26T10:00:00Z in unix nanoseconds
)

// testKey is the ed25519 key of the signed config vector; its seed is
// fixed, and ed25519 signatures are deterministic, so the vector is too.
var testKey = ed25519.NewKeyFromSeed([]byte("edgesync test key, never use it!"))

// mustData encodes v as one core deterministic CBOR item.
func mustData(t testing.TB, v any) cbor.RawMessage {
	t.Helper()
	b, err := encMode.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testRecords(t testing.TB) []Record {
	return []Record{
		{Seq: 41, Stream: "temps", Key: "sensor-7", Schema: "reading", SchemaVersion: 1,
			CapturedAt: testTime, Data: mustData(t, map[string]any{"t": 21.5, "h": 40.1, "unit": "C"})},
		{Seq: 42, Stream: "temps", Key: "sensor-8", ID: "b7f3c2d1-0001", Schema: "reading", SchemaVersion: 1,
			CapturedAt: testTime + 250_000_000, Data: mustData(t, map[string]any{"t": -3.25, "h": 81, "unit": "C", "tags": []any{"roof", true, nil}})},
		{Seq: 43, Stream: "inventory", Key: "pallet-9", Op: OpDelete,
			CapturedAt: testTime - 1, Data: mustData(t, nil)},
	}
}

func testBatch(t testing.TB) *Batch {
	return &Batch{V: Version, Device: testDevice, Epoch: testEpoch, First: 41, Last: 43, Acked: 40,
		SentAt: testTime + 1_000_000_000, SendID: 7, Records: testRecords(t)}
}

func testDropsBatch() *Batch {
	return &Batch{V: Version, Device: testDevice, Epoch: testEpoch, Acked: 0,
		Drops: []Range{{First: 1, Last: 100}, {First: 150, Last: 160}}, SentAt: testTime, SendID: 3}
}

func testAck(status uint8) *Ack {
	a := &Ack{V: Version, Device: testDevice, Epoch: testEpoch, SinkID: "sink-1"}
	switch status {
	case StatusOK:
		a.AppliedThrough, a.InReplyTo = 43, 7
		a.Parked = []Parked{{First: 42, Last: 42, Reason: "unknown schema reading@1 for stream temps"}}
	case StatusGap:
		a.Status, a.AppliedThrough, a.InReplyTo = StatusGap, 40, 8
	case StatusPaused:
		a.Status, a.AppliedThrough, a.InReplyTo = StatusPaused, 41, 9
	}
	return a
}

func testState(online bool) *State {
	s := &State{V: Version, Device: testDevice, Online: online, BootID: "0f9a2c4e6b8d1357",
		Epoch: testEpoch, Head: 1043, Watermark: 1000, Depth: 43, DepthBytes: 9158,
		OldestAgeMillis: 5120, Time: testTime}
	if !online {
		// The last will: set at connect, published by the broker later.
		s.Head, s.Watermark, s.Depth, s.DepthBytes, s.OldestAgeMillis = 1000, 1000, 0, 0, 0
	}
	return s
}

func testCmd() *Cmd {
	return &Cmd{V: Version, ID: "cmd-20261126-0001", Name: CmdResend, From: 900, Epoch: testEpoch,
		Args: map[string]string{"reason": "sink restored from backup"}, IssuedAt: testTime}
}

func testConfig(t testing.TB, signed bool) *Config {
	c := &Config{V: Version, Target: testDevice, Version: 12, IssuedAt: testTime,
		Body: []byte("batch:\n  linger: 50ms\nuplink:\n  rate_bytes: 65536\n")}
	if !signed {
		c.Target, c.Version, c.Body = FleetID, 3, []byte("batch:\n  compression: zstd\n")
		return c
	}
	if err := c.Sign(testKey, KeyIDOf(testKey.Public().(ed25519.PublicKey))); err != nil {
		t.Fatal(err)
	}
	return c
}

func testConfigStatus(applied bool) *ConfigStatus {
	s := &ConfigStatus{V: Version, Device: testDevice, Version: 12, FleetVersion: 3, Applied: true, Time: testTime}
	if !applied {
		s.Version, s.Applied = 13, false
		s.Error = "config: outbox.max_bytes: must be > 0"
	}
	return s
}

// vector is one byte-exact test vector: testdata/vectors/NAME.hex holds the
// payload, NAME.json the message it decodes to.
type vector struct {
	name        string
	kind        string // batch, ack, state, cmd, config, config_status
	compression byte   // batches only
	msg         any
}

func testVectors(t testing.TB) []vector {
	return []vector{
		{"batch_records_none", "batch", CompressionNone, testBatch(t)},
		{"batch_records_zstd", "batch", CompressionZstd, testBatch(t)},
		{"batch_drops_only", "batch", CompressionNone, testDropsBatch()},
		{"ack_ok_parked", "ack", 0, testAck(StatusOK)},
		{"ack_gap", "ack", 0, testAck(StatusGap)},
		{"ack_paused", "ack", 0, testAck(StatusPaused)},
		{"state_online", "state", 0, testState(true)},
		{"state_offline", "state", 0, testState(false)},
		{"cmd_resend", "cmd", 0, testCmd()},
		{"config_device_signed", "config", 0, testConfig(t, true)},
		{"config_fleet_unsigned", "config", 0, testConfig(t, false)},
		{"config_status_applied", "config_status", 0, testConfigStatus(true)},
		{"config_status_refused", "config_status", 0, testConfigStatus(false)},
	}
}

// encodeAny encodes any message with its encoder.
func encodeAny(dst []byte, msg any, compression byte) ([]byte, error) {
	switch m := msg.(type) {
	case *Batch:
		return EncodeBatch(dst, m, compression)
	case *Ack:
		return EncodeAck(dst, m)
	case *State:
		return EncodeState(dst, m)
	case *Cmd:
		return EncodeCmd(dst, m)
	case *Config:
		return EncodeConfig(dst, m)
	case *ConfigStatus:
		return EncodeConfigStatus(dst, m)
	}
	panic(fmt.Sprintf("unknown message %T", msg))
}

// decodeAny decodes a payload of the given kind.
func decodeAny(kind string, payload []byte) (any, error) {
	switch kind {
	case "batch":
		return DecodeBatch(payload)
	case "ack":
		return DecodeAck(payload)
	case "state":
		return DecodeState(payload)
	case "cmd":
		return DecodeCmd(payload)
	case "config":
		return DecodeConfig(payload)
	case "config_status":
		return DecodeConfigStatus(payload)
	}
	panic("unknown kind " + kind)
}

// newOf returns a new zero message of the given kind.
func newOf(kind string) any {
	switch kind {
	case "batch":
		return new(Batch)
	case "ack":
		return new(Ack)
	case "state":
		return new(State)
	case "cmd":
		return new(Cmd)
	case "config":
		return new(Config)
	case "config_status":
		return new(ConfigStatus)
	}
	panic("unknown kind " + kind)
}

// normalize turns empty slices and maps into nil, in place, so that
// messages compare equal whatever path built them; it returns msg.
func normalize(msg any) any {
	switch m := msg.(type) {
	case *Batch:
		if len(m.Drops) == 0 {
			m.Drops = nil
		}
		if len(m.Records) == 0 {
			m.Records = nil
		}
	case *Ack:
		if len(m.Parked) == 0 {
			m.Parked = nil
		}
	case *Cmd:
		if len(m.Args) == 0 {
			m.Args = nil
		}
	case *Config:
		if len(m.Body) == 0 {
			m.Body = nil
		}
		if len(m.Signature) == 0 {
			m.Signature = nil
		}
	}
	return msg
}
