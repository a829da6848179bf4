package resync

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edgesync/edgesync/outbox"
	"github.com/edgesync/edgesync/transport/wire"
)

// testKey is derived from a fixed seed, so that the receipt vector can be
// checked with the public key alone.
func testKey() (ed25519.PublicKey, ed25519.PrivateKey) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x5e}, ed25519.SeedSize))
	return priv.Public().(ed25519.PublicKey), priv
}

func testReceipt() *Receipt {
	sum := sha256.Sum256([]byte("bundle"))
	return &Receipt{
		V: 1, Device: testDevice, Epoch: testEpoch, AppliedThrough: 46, Status: wire.StatusOK,
		SinkID: "sink-1", Time: testNow.UnixNano(), BundleSHA256: sum[:],
	}
}

func signedReceipt(t testing.TB) *Receipt {
	t.Helper()
	_, priv := testKey()
	r := testReceipt()
	if err := SignReceipt(r, priv); err != nil {
		t.Fatalf("SignReceipt: %v", err)
	}
	return r
}

func TestReceiptRoundTrip(t *testing.T) {
	pub, _ := testKey()
	r := signedReceipt(t)
	if r.KeyID != wire.KeyIDOf(pub) || len(r.Signature) != ed25519.SignatureSize {
		t.Fatalf("signed receipt: key_id %q, signature of %d bytes", r.KeyID, len(r.Signature))
	}
	b, err := EncodeReceipt(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseReceipt(b)
	if err != nil {
		t.Fatalf("ParseReceipt: %v", err)
	}
	if err := VerifyReceipt(got, []ed25519.PublicKey{pub}); err != nil {
		t.Fatalf("VerifyReceipt: %v", err)
	}
	again, _ := EncodeReceipt(got)
	if !bytes.Equal(again, b) {
		t.Fatalf("re-encoding differs:\n%x\n%x", again, b)
	}
	if got.Device != r.Device || got.Epoch != r.Epoch || got.AppliedThrough != 46 || got.SinkID != "sink-1" || got.Time != r.Time {
		t.Fatalf("decoded %+v, want %+v", got, r)
	}
}

func TestSigningMessage(t *testing.T) {
	r := signedReceipt(t)
	sum := sha256.Sum256([]byte("bundle"))
	want := "edgesync-receipt-v1\ngw-0001\n6917529027641081857\n46\n0\n1795687200000000000\n" +
		hex.EncodeToString(sum[:]) + "\n" + r.KeyID + "\nsink-1"
	if got := string(r.SigningMessage()); got != want {
		t.Fatalf("SigningMessage =\n%q\nwant\n%q", got, want)
	}
}

// TestReceiptTampered changes each signed field of a signed receipt: the
// signature no longer verifies.
func TestReceiptTampered(t *testing.T) {
	pub, _ := testKey()
	tests := []struct {
		name string
		f    func(r *Receipt)
	}{
		{"device", func(r *Receipt) { r.Device = "gw-0002" }},
		{"epoch", func(r *Receipt) { r.Epoch++ }},
		{"applied_through", func(r *Receipt) { r.AppliedThrough = 1 << 40 }},
		{"status", func(r *Receipt) { r.Status = wire.StatusGap }},
		{"sink_id", func(r *Receipt) { r.SinkID = "sink-2" }},
		{"time", func(r *Receipt) { r.Time-- }},
		{"bundle_sha256", func(r *Receipt) { r.BundleSHA256 = bytes.Clone(r.BundleSHA256); r.BundleSHA256[31] ^= 1 }},
		{"signature", func(r *Receipt) { r.Signature = bytes.Clone(r.Signature); r.Signature[0] ^= 1 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := signedReceipt(t)
			tc.f(r)
			if err := VerifyReceipt(r, []ed25519.PublicKey{pub}); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("VerifyReceipt = %v, want ErrBadSignature", err)
			}
			// Also through the bytes: the tampered receipt still decodes.
			b, err := EncodeReceipt(r)
			if err != nil {
				t.Fatal(err)
			}
			d, err := DecodeReceipt(b)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyReceipt(d, []ed25519.PublicKey{pub}); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("VerifyReceipt after decoding = %v, want ErrBadSignature", err)
			}
		})
	}
}

func TestReceiptUntrusted(t *testing.T) {
	r := signedReceipt(t)
	other, _ := GenerateKey()
	err := VerifyReceipt(r, []ed25519.PublicKey{other})
	if !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), r.KeyID) || !strings.Contains(err.Error(), wire.KeyIDOf(other)) {
		t.Fatalf("VerifyReceipt with another key = %v, want ErrUnknownKey naming both key ids", err)
	}
	if err := VerifyReceipt(r, nil); !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), "resync.trusted_keys") {
		t.Fatalf("VerifyReceipt without keys = %v, want ErrUnknownKey pointing at resync.trusted_keys", err)
	}
	// A key that claims the receipt's key id but is another key.
	r.KeyID = wire.KeyIDOf(other)
	if err := VerifyReceipt(r, []ed25519.PublicKey{other}); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("receipt relabelled with another key's id: %v, want ErrBadSignature", err)
	}
	unsigned := testReceipt()
	if err := VerifyReceipt(unsigned, []ed25519.PublicKey{other}); !errors.Is(err, ErrUnsigned) {
		t.Fatalf("unsigned receipt: %v, want ErrUnsigned", err)
	}
	if _, err := EncodeReceipt(unsigned); !errors.Is(err, ErrUnsigned) {
		t.Fatalf("EncodeReceipt of an unsigned receipt: %v, want ErrUnsigned", err)
	}
}

func TestReceiptInvalid(t *testing.T) {
	_, priv := testKey()
	tests := []struct {
		name string
		f    func(r *Receipt)
		msg  string
	}{
		{"device", func(r *Receipt) { r.Device = "_fleet" }, `receipt: device: "_fleet" is not a valid device id`},
		{"epoch", func(r *Receipt) { r.Epoch = 0 }, "receipt: epoch: 0 is not in 1..2^63-1"},
		{"status", func(r *Receipt) { r.Status = 9 }, "receipt: status: 9 is not 0 (ok), 1 (gap) or 2 (paused)"},
		{"sink_id", func(r *Receipt) { r.SinkID = "sink\n1" }, `receipt: sink_id: "sink\n1" is not 1..64 characters`},
		{"sha", func(r *Receipt) { r.BundleSHA256 = r.BundleSHA256[:16] }, "receipt: bundle_sha256: 16 bytes, want 32"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := testReceipt()
			tc.f(r)
			err := SignReceipt(r, priv)
			if !errors.Is(err, ErrReceiptInvalid) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("SignReceipt = %v, want %q", err, tc.msg)
			}
		})
	}
	if err := SignReceipt(testReceipt(), priv[:10]); err == nil {
		t.Fatal("SignReceipt with a short key succeeded")
	}
}

func TestDecodeReceiptStrict(t *testing.T) {
	good, err := EncodeReceipt(signedReceipt(t))
	if err != nil {
		t.Fatal(err)
	}
	// good is a map of 10 pairs (0xaa) whose first pair is 01 01 (v: 1).
	if good[0] != 0xaa || good[1] != 0x01 || good[2] != 0x01 {
		t.Fatalf("test assumption: encoding starts %x", good[:3])
	}
	extraKey := append([]byte{0xab}, good[1:]...)
	extraKey = append(extraKey, 0x0b, 0x00) // 11: 0
	longV := append([]byte{0xaa, 0x01, 0x18, 0x01}, good[3:]...)
	v2 := append([]byte{0xaa, 0x01, 0x02}, good[3:]...)
	// Key 1 twice, in place of key 2 (device: 02 67 "gw-0001", 9 bytes).
	dupKey := append([]byte{0xaa, 0x01, 0x01, 0x01, 0x01}, good[3+9:]...)
	tests := []struct {
		name string
		b    []byte
		want error
		msg  string
	}{
		{"empty", nil, ErrReceiptMalformed, "empty"},
		{"too large", make([]byte, MaxReceiptBytes+1), ErrReceiptMalformed, "more than 1024"},
		{"not cbor", []byte("hello"), ErrReceiptMalformed, "receipt: malformed"},
		{"trailing bytes", append(bytes.Clone(good), 0), ErrReceiptMalformed, "receipt: malformed"},
		{"truncated", good[:len(good)-1], ErrReceiptMalformed, "receipt: malformed"},
		{"unknown key", extraKey, ErrReceiptMalformed, "not in canonical form"},
		{"non-shortest integer", longV, ErrReceiptMalformed, "not in canonical form"},
		{"duplicate key", dupKey, ErrReceiptMalformed, "duplicate map key"},
		{"version 2", v2, ErrReceiptVersion, "version 2; this edgesync reads version 1"},
		{"json", []byte(`{"v": 1}`), ErrReceiptMalformed, "JSON rendering"},
		{"empty map", []byte{0xa0}, ErrReceiptInvalid, "receipt: v: missing, want 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseReceipt(tc.b)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("ParseReceipt = %v, want %v saying %q", err, tc.want, tc.msg)
			}
		})
	}
}

func TestReceiptJSON(t *testing.T) {
	r := signedReceipt(t)
	var got map[string]any
	if err := json.Unmarshal(r.JSON(), &got); err != nil {
		t.Fatalf("JSON() is not JSON: %v", err)
	}
	want := map[string]any{
		"v": 1.0, "device": testDevice, "epoch": "6917529027641081857", "applied_through": 46.0, "status": "ok",
		"sink_id": "sink-1", "time": "2026-11-26T10:00:00Z", "key_id": r.KeyID,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("JSON %s = %v, want %v", k, got[k], v)
		}
	}
	if s, _ := got["bundle_sha256"].(string); len(s) != 64 {
		t.Errorf("JSON bundle_sha256 = %q, want 64 hex digits", s)
	}
}

// TestImportReceiptAcknowledge is the whole trip: export, import, receipt,
// ack-import trims the outbox.
func TestImportReceiptAcknowledge(t *testing.T) {
	ob := openOutbox(t, outbox.Options{})
	appendRecords(t, ob, 0, 500, 30)
	if _, err := ob.Ack(ob.Epoch(), 100); err != nil {
		t.Fatal(err)
	}
	file, sum := exportBytes(t, ob, 0, ExportOptions{MaxRecords: 64})
	appendRecords(t, ob, 500, 20, 30) // captured after the export

	sink := newTestSink()
	sink.w[sink.key(testDevice, uint64(ob.Epoch()))] = 100
	res, err := Import(bytes.NewReader(file), sink.apply)
	if err != nil {
		t.Fatal(err)
	}
	pub, priv := testKey()
	r := res.Receipt("sink-1", testNow.Add(time.Hour))
	if err := SignReceipt(r, priv); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.BundleSHA256, sum.SHA256[:]) {
		t.Fatalf("receipt names bundle %x, want %x", r.BundleSHA256, sum.SHA256)
	}
	b, err := EncodeReceipt(r)
	if err != nil {
		t.Fatal(err)
	}
	// On the device.
	got, err := ParseReceipt(b)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := GenerateKey()
	if _, err := Acknowledge(ob, testDevice, got, []ed25519.PublicKey{other}); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Acknowledge with an untrusted key: %v, want ErrUnknownKey", err)
	}
	if _, err := Acknowledge(ob, "gw-0002", got, []ed25519.PublicKey{pub}); !errors.Is(err, ErrReceiptInvalid) || !strings.Contains(err.Error(), `for device "gw-0001", this is "gw-0002"`) {
		t.Fatalf("Acknowledge on another device: %v", err)
	}
	if w := ob.Position().Watermark; w != 100 {
		t.Fatalf("refused receipts moved the watermark to %d", w)
	}
	ack, err := Acknowledge(ob, testDevice, got, []ed25519.PublicKey{other, pub})
	if err != nil || !ack.Advanced || ack.Watermark != 500 {
		t.Fatalf("Acknowledge = %+v, %v; want the watermark advanced to 500", ack, err)
	}
	if st := ob.Stats(); st.Depth != 20 || st.OldestSeq != 501 {
		t.Fatalf("after ack-import: depth %d from %d, want the 20 records captured after the export, from 501", st.Depth, st.OldestSeq)
	}
	ack, err = Acknowledge(ob, testDevice, got, []ed25519.PublicKey{pub})
	if err != nil || ack.Advanced {
		t.Fatalf("second Acknowledge = %+v, %v; want no change and no error", ack, err)
	}
	stale := *got
	stale.Epoch++
	if err := SignReceipt(&stale, priv); err != nil {
		t.Fatal(err)
	}
	if _, err := Acknowledge(ob, testDevice, &stale, []ed25519.PublicKey{pub}); !errors.Is(err, outbox.ErrStaleEpoch) {
		t.Fatalf("receipt of another epoch: %v, want outbox.ErrStaleEpoch", err)
	}
}
