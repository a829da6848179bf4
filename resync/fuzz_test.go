package resync

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"testing"

	"github.com/edgesync/edgesync/transport/wire"
)

// bundleSentinel reports whether err matches exactly one bundle sentinel.
func bundleSentinel(err error) bool {
	n := 0
	for _, s := range []error{ErrNotBundle, ErrVersion, ErrTruncated, ErrDamaged, ErrInvalid} {
		if errors.Is(err, s) {
			n++
		}
	}
	return n == 1
}

// fuzzBundle reads data as a bundle and checks the Reader's promises: every
// error matches one sentinel; what it reads to the end is the whole input,
// with the input's SHA-256; and the Writer writes again whatever the Reader
// accepted, giving the same batches.
func fuzzBundle(t *testing.T, data []byte) {
	rd, err := NewReader(bytes.NewReader(data))
	if err != nil {
		if !bundleSentinel(err) {
			t.Fatalf("NewReader: %v matches no single sentinel", err)
		}
		return
	}
	var payloads [][]byte
	for {
		p, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if !bundleSentinel(err) {
				t.Fatalf("Next: %v matches no single sentinel", err)
			}
			return
		}
		if len(p) > wire.MaxBatchBytes {
			t.Fatalf("batch of %d bytes", len(p))
		}
		payloads = append(payloads, bytes.Clone(p))
	}
	if rd.Bytes() != int64(len(data)) || rd.Sum() != sha256.Sum256(data) {
		t.Fatalf("read to the end: %d of %d bytes, sum %x", rd.Bytes(), len(data), rd.Sum())
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, rd.Header())
	if err != nil {
		t.Fatalf("NewWriter refuses the header a Reader accepted: %v", err)
	}
	for i, p := range payloads {
		if err := w.WriteBatch(p); err != nil {
			t.Fatalf("WriteBatch refuses batch %d that a Reader accepted: %v", i+1, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := readAll(buf.Bytes())
	if err != nil {
		t.Fatalf("reading the rewritten bundle: %v", err)
	}
	if len(again) != len(payloads) {
		t.Fatalf("rewritten bundle has %d batches, want %d", len(again), len(payloads))
	}
	for i := range again {
		if !bytes.Equal(again[i], payloads[i]) {
			t.Fatalf("rewritten batch %d differs", i+1)
		}
	}
}

func bundleSeeds(t testing.TB) [][]byte {
	hdrOnly := newRawBundle(t, testHeader()).trailer(t, 0, 0)
	zstd := writeBundle(t, testHeader(), [][]byte{encodeBatch(t, testBatch(41, 46), wire.CompressionZstd)})
	good := vectorBundle(t)
	return [][]byte{good, zstd, hdrOnly, good[:len(good)/2], []byte(Magic), nil, []byte("EDGESYNC-BUNDLE/2\n")}
}

func FuzzReader(f *testing.F) {
	for _, s := range bundleSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(fuzzBundle)
}

// FuzzReaderFrames reaches past the CRCs, which random mutation rarely
// gets right: the input is a list of frames, each a type byte, a 2-byte
// length and the payload, which the harness frames with their true CRC
// after the magic line; a last frame of type 'T' with an empty payload
// stands for the true trailer of what precedes it.
func FuzzReaderFrames(f *testing.F) {
	for _, s := range bundleSeeds(f)[:3] {
		f.Add(unframe(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzBundle(t, frame(in))
	})
}

// frame turns FuzzReaderFrames input into a bundle.
func frame(in []byte) []byte {
	r := &rawBundle{}
	r.magic()
	batches, records := uint64(0), uint64(0)
	for len(in) >= 3 {
		typ, n := in[0], int(binary.BigEndian.Uint16(in[1:3]))
		in = in[3:]
		n = min(n, len(in))
		payload := in[:n]
		in = in[n:]
		if typ == frameTrailer && n == 0 {
			sum := sha256.Sum256(r.buf.Bytes())
			body, _ := encMode.Marshal(&Trailer{Batches: batches, Records: records, SHA256: sum[:]})
			r.frame(frameTrailer, body)
			continue
		}
		if typ == frameBatch {
			batches++
			if b, err := wire.DecodeBatch(payload); err == nil {
				records += uint64(len(b.Records))
			}
		}
		r.frame(typ, payload)
	}
	return r.buf.Bytes()
}

// unframe is the inverse of frame for a well-formed bundle (trailer
// replaced by its stand-in).
func unframe(b []byte) []byte {
	var out []byte
	b = b[len(Magic):]
	for len(b) >= frameOverhead {
		typ, n := b[0], int(binary.BigEndian.Uint32(b[1:5]))
		if n > len(b)-frameOverhead {
			break
		}
		if typ == frameTrailer {
			out = append(out, frameTrailer, 0, 0)
		} else {
			out = append(out, typ, byte(n>>8), byte(n))
			out = append(out, b[5:5+n]...)
		}
		b = b[frameOverhead+n:]
	}
	return out
}

func FuzzDecodeReceipt(f *testing.F) {
	good, err := EncodeReceipt(signedReceipt(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add([]byte{0xa1, 0x01, 0x02})
	f.Add([]byte(`{"v":1}`))
	pub, _ := testKey()
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseReceipt(data)
		if err != nil {
			n := 0
			for _, s := range []error{ErrReceiptMalformed, ErrReceiptVersion, ErrReceiptInvalid, ErrUnsigned} {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("ParseReceipt: %v matches %d sentinels, want 1", err, n)
			}
			return
		}
		// Strict: a receipt has exactly one encoding.
		b, err := EncodeReceipt(r)
		if err != nil {
			t.Fatalf("EncodeReceipt refuses a decoded receipt: %v", err)
		}
		if !bytes.Equal(b, data) {
			t.Fatalf("decoded %x, encodes to %x", data, b)
		}
		err = VerifyReceipt(r, []ed25519.PublicKey{pub})
		if err != nil && !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("VerifyReceipt: %v", err)
		}
		if !json.Valid(r.JSON()) {
			t.Fatalf("JSON() = %s, not JSON", r.JSON())
		}
	})
}
