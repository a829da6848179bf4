package resync

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyFilesRoundTrip(t *testing.T) {
	dir := t.TempDir()
	pub, priv := GenerateKey()
	privPath, pubPath := filepath.Join(dir, "sink.key"), filepath.Join(dir, "sink.pub")
	if err := WritePrivateKey(privPath, priv); err != nil {
		t.Fatal(err)
	}
	if err := WritePublicKey(pubPath, pub); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(privPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("private key file mode %v, want no access for group and others", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(privPath)
	if !strings.HasPrefix(string(b), "-----BEGIN PRIVATE KEY-----\n") {
		t.Fatalf("private key file starts %q, want PEM PRIVATE KEY", b[:20])
	}
	b, _ = os.ReadFile(pubPath)
	if !strings.HasPrefix(string(b), "-----BEGIN PUBLIC KEY-----\n") {
		t.Fatalf("public key file starts %q, want PEM PUBLIC KEY", b[:20])
	}
	gotPriv, err := LoadPrivateKey(privPath)
	if err != nil {
		t.Fatal(err)
	}
	gotPub, err := LoadPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	if !gotPriv.Equal(priv) || !gotPub.Equal(pub) {
		t.Fatal("keys read back differ from the keys written")
	}
	// They work together: sign with the loaded private key, verify with the loaded public key.
	r := testReceipt()
	if err := SignReceipt(r, gotPriv); err != nil {
		t.Fatal(err)
	}
	if err := VerifyReceipt(r, []ed25519.PublicKey{gotPub}); err != nil {
		t.Fatal(err)
	}
	// Never overwrite.
	_, priv2 := GenerateKey()
	if err := WritePrivateKey(privPath, priv2); err == nil || !strings.Contains(err.Error(), privPath) || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("WritePrivateKey over an existing file: %v, want an error naming it", err)
	}
	if again, _ := LoadPrivateKey(privPath); !again.Equal(priv) {
		t.Fatal("the existing key was overwritten")
	}
}

func TestLoadPublicKeyBase64(t *testing.T) {
	dir := t.TempDir()
	pub, _ := GenerateKey()
	for name, line := range map[string]string{
		"padded":   base64.StdEncoding.EncodeToString(pub) + "\n",
		"unpadded": "  " + base64.RawStdEncoding.EncodeToString(pub),
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := LoadPublicKey(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !got.Equal(pub) {
			t.Fatalf("%s: key differs", name)
		}
	}
}

func TestLoadKeyErrors(t *testing.T) {
	dir := t.TempDir()
	pub, priv := GenerateKey()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	privPath := filepath.Join(dir, "priv.pem")
	if err := WritePrivateKey(privPath, priv); err != nil {
		t.Fatal(err)
	}
	pubPath := filepath.Join(dir, "pub.pem")
	if err := WritePublicKey(pubPath, pub); err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(pub)
	certLike := write("cert.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	badPKIX := write("badpkix.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}})))
	short := write("short.b64", base64.StdEncoding.EncodeToString(pub[:16]))
	twoLines := write("two.b64", base64.StdEncoding.EncodeToString(pub)+"\n"+base64.StdEncoding.EncodeToString(pub))
	garbage := write("garbage", "not a key at all!")
	empty := write("empty", "\n")
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name string
		load func(string) error
		path string
		msg  string
	}{
		{"public: missing", loadPub, missing, "no such file"},
		{"public: given the private key", loadPub, privPath, "holds a private key"},
		{"public: other PEM", loadPub, certLike, `PEM block "CERTIFICATE", want "PUBLIC KEY"`},
		{"public: bad PKIX", loadPub, badPKIX, "not a valid PKIX public key"},
		{"public: short base64", loadPub, short, "base64 of 16 bytes, want the 32 bytes"},
		{"public: two lines", loadPub, twoLines, "neither PEM nor a single line of base64"},
		{"public: garbage", loadPub, garbage, "neither PEM nor base64"},
		{"public: empty", loadPub, empty, "empty"},
		{"private: missing", loadPriv, missing, "no such file"},
		{"private: given the public key", loadPriv, pubPath, "holds a public key"},
		{"private: not PEM", loadPriv, garbage, `not PEM: want a "PRIVATE KEY" block`},
		{"private: other PEM", loadPriv, certLike, `PEM block "CERTIFICATE"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.load(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), "key file "+tc.path) {
				t.Fatalf("err = %v, want one naming %s and saying %q", err, tc.path, tc.msg)
			}
		})
	}
	if err := WritePrivateKey(filepath.Join(dir, "x"), priv[:5]); err == nil {
		t.Fatal("WritePrivateKey accepted a short key")
	}
	if err := WritePublicKey(filepath.Join(dir, "nodir", "x"), pub); err == nil || !strings.Contains(err.Error(), "nodir") {
		t.Fatalf("WritePublicKey into a missing directory: %v", err)
	}
}

func loadPub(p string) error  { _, err := LoadPublicKey(p); return err }
func loadPriv(p string) error { _, err := LoadPrivateKey(p); return err }
