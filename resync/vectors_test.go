package resync

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgesync/edgesync/transport/wire"
)

var update = flag.Bool("update", false, "rewrite the test vectors in testdata/vectors")

// vectorBundle is the bundle of testdata/vectors/bundle_v1.hex: records
// 41..43, then a batch reporting 44 as dropped and carrying 45..46, both
// uncompressed so that the bytes do not depend on the zstd library.
func vectorBundle(t testing.TB) []byte {
	b2 := testBatch(45, 46)
	b2.Drops = []wire.Range{{First: 44, Last: 44}}
	return writeBundle(t, testHeader(), [][]byte{
		encodeBatch(t, testBatch(41, 43), wire.CompressionNone),
		encodeBatch(t, b2, wire.CompressionNone),
	})
}

// checkVector compares got with the hex file name, or rewrites it with -update.
func checkVector(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "vectors", name)
	if *update {
		var sb strings.Builder
		h := hex.EncodeToString(got)
		for len(h) > 64 {
			sb.WriteString(h[:64] + "\n")
			h = h[64:]
		}
		sb.WriteString(h + "\n")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want := readVector(t, name)
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: encoding changed (a format change needs a new version):\ngot  %x\nwant %x", name, got, want)
	}
}

func readVector(t testing.TB, name string) []byte {
	t.Helper()
	text, err := os.ReadFile(filepath.Join("testdata", "vectors", name))
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.Join(strings.Fields(string(text)), ""))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}

func TestVectorBundle(t *testing.T) {
	checkVector(t, "bundle_v1.hex", vectorBundle(t))
	file := readVector(t, "bundle_v1.hex")
	sink := newTestSink()
	sink.w[sink.key(testDevice, testEpoch)] = 40
	res, err := Import(bytes.NewReader(file), sink.apply)
	if err != nil {
		t.Fatal(err)
	}
	if res.AppliedThrough != 46 || res.Batches != 2 || res.Records != 5 || sink.lost != 1 {
		t.Fatalf("vector imported: %+v, lost %d; want through 46, 2 batches, 5 records, 1 lost", res, sink.lost)
	}
}

func TestVectorReceipt(t *testing.T) {
	b, err := EncodeReceipt(signedReceipt(t))
	if err != nil {
		t.Fatal(err)
	}
	checkVector(t, "receipt_v1.hex", b)
	r, err := ParseReceipt(readVector(t, "receipt_v1.hex"))
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := testKey()
	if err := VerifyReceipt(r, []ed25519.PublicKey{pub}); err != nil {
		t.Fatal(err)
	}
}
