package wire

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

var update = flag.Bool("update", false, "rewrite the test vectors under testdata/vectors from the encoders")

// vectorFile is the JSON form of a vector, beside its .hex payload.
type vectorFile struct {
	Kind        string          `json:"kind"`
	Topic       string          `json:"topic"`
	Compression *byte           `json:"compression,omitempty"` // batches only
	Message     json.RawMessage `json:"message"`
	// Diag is the CBOR body (decompressed, without the compression byte)
	// in RFC 8949 diagnostic notation, for people; tests only check that it
	// matches the payload.
	Diag string `json:"diag"`
}

func vectorTopic(v vector) string {
	switch v.kind {
	case "batch":
		return UpTopic(testPrefix, testDevice)
	case "ack":
		return AckTopic(testPrefix, testDevice)
	case "state":
		return StateTopic(testPrefix, testDevice)
	case "cmd":
		return CmdTopic(testPrefix, testDevice)
	case "config":
		if v.msg.(*Config).Target == FleetID {
			return FleetConfigTopic(testPrefix)
		}
		return ConfigTopic(testPrefix, testDevice)
	case "config_status":
		return ConfigStatusTopic(testPrefix, testDevice)
	}
	panic(v.kind)
}

// formatHex writes b as lines of 32 bytes in lower-case hex.
func formatHex(b []byte) []byte {
	var out bytes.Buffer
	for len(b) > 0 {
		n := min(len(b), 32)
		out.WriteString(hex.EncodeToString(b[:n]))
		out.WriteByte('\n')
		b = b[n:]
	}
	return out.Bytes()
}

// parseHex reads hex, ignoring white space and lines starting with "#".
func parseHex(t testing.TB, text []byte) []byte {
	t.Helper()
	var clean strings.Builder
	for line := range strings.Lines(string(text)) {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		clean.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(clean.String())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// body returns the CBOR body of a payload.
func body(t testing.TB, kind string, payload []byte) []byte {
	t.Helper()
	if kind != "batch" {
		return payload
	}
	if payload[0] == CompressionNone {
		return payload[1:]
	}
	out, buf, err := unzstd(payload[1:])
	if err != nil {
		t.Fatal(err)
	}
	out = bytes.Clone(out)
	putBuffer(buf)
	return out
}

func diag(t testing.TB, b []byte) string {
	t.Helper()
	dm, err := cbor.DiagOptions{ByteStringText: true, ByteStringEmbeddedCBOR: true}.DiagMode()
	if err != nil {
		t.Fatal(err)
	}
	s, err := dm.Diagnose(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func writeVector(t *testing.T, v vector, payload []byte) {
	msg, err := json.MarshalIndent(v.msg, "  ", "  ")
	if err != nil {
		t.Fatal(err)
	}
	f := vectorFile{Kind: v.kind, Topic: vectorTopic(v), Message: msg, Diag: diag(t, body(t, v.kind, payload))}
	if v.kind == "batch" {
		c := v.compression
		f.Compression = &c
	}
	js, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join("testdata", "vectors", v.name)
	if err := os.WriteFile(base+".json", append(js, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(base+".hex", formatHex(payload), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readVector(t testing.TB, name string) (vectorFile, []byte) {
	t.Helper()
	base := filepath.Join("testdata", "vectors", name)
	js, err := os.ReadFile(base + ".json")
	if err != nil {
		t.Fatal(err)
	}
	var f vectorFile
	if err := json.Unmarshal(js, &f); err != nil {
		t.Fatalf("%s.json: %v", base, err)
	}
	h, err := os.ReadFile(base + ".hex")
	if err != nil {
		t.Fatal(err)
	}
	return f, parseHex(t, h)
}

// TestVectors freezes the protocol: each encoder's output equals the
// vector's bytes, each decoder turns the bytes into the vector's JSON form,
// and the diagnostic notation beside it describes the same bytes. Run with
// -update to rewrite the vectors after a deliberate change (and say why in
// docs/PROTOCOL.md: a change to these bytes is a protocol change).
//
// The zstd vector's bytes depend on the compressor of
// github.com/klauspost/compress: if an upgrade changes them, the encoding
// mismatch is reported and the old bytes are still decoded; rewrite the
// vector only when they decode.
func TestVectors(t *testing.T) {
	for _, v := range testVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			got, err := encodeAny(nil, v.msg, v.compression)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if *update {
				writeVector(t, v, got)
			}
			f, want := readVector(t, v.name)
			if !bytes.Equal(got, want) {
				t.Errorf("encode:\ngot  %x\nwant %x", got, want)
			}
			if f.Kind != v.kind || f.Topic != vectorTopic(v) {
				t.Errorf("kind, topic: got %q, %q, want %q, %q", f.Kind, f.Topic, v.kind, vectorTopic(v))
			}
			if d := diag(t, body(t, v.kind, want)); d != f.Diag {
				t.Errorf("diag:\ngot  %s\nwant %s", d, f.Diag)
			}

			dec, err := decodeAny(v.kind, want)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			wantMsg := newOf(v.kind)
			if err := json.Unmarshal(f.Message, wantMsg); err != nil {
				t.Fatalf("json: %v", err)
			}
			if !reflect.DeepEqual(normalize(dec), normalize(wantMsg)) {
				gj, _ := json.Marshal(dec)
				t.Errorf("decode:\ngot  %s\nwant %s", gj, f.Message)
			}
			if !reflect.DeepEqual(normalize(dec), normalize(v.msg)) {
				t.Errorf("decode: got %+v, want %+v", dec, v.msg)
			}
		})
	}
}

// TestVectorSignature checks the signed config vector with the public key
// alone, as an agent would.
func TestVectorSignature(t *testing.T) {
	_, payload := readVector(t, "config_device_signed")
	c, err := DecodeConfig(payload)
	if err != nil {
		t.Fatal(err)
	}
	pub := testKey.Public().(ed25519.PublicKey)
	if c.KeyID != KeyIDOf(pub) {
		t.Errorf("key id: got %q, want %q", c.KeyID, KeyIDOf(pub))
	}
	if err := c.Verify(pub); err != nil {
		t.Errorf("verify: %v", err)
	}
}
