package resync

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxKeyFileBytes bounds a key file read: a PEM ed25519 key is about 120
// bytes.
const maxKeyFileBytes = 64 << 10

// GenerateKey returns a new ed25519 key pair from crypto/rand.
func GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		// crypto/rand does not fail (it aborts the program instead).
		panic("resync: generate key: " + err.Error())
	}
	return pub, priv
}

// WritePrivateKey writes priv to a new file at path, as PEM "PRIVATE KEY"
// (PKCS #8), with mode 0600 (less under a stricter umask). It never
// overwrites: an existing file is an error, so that a key cannot be lost by
// mistake.
func WritePrivateKey(path string, priv ed25519.PrivateKey) error {
	if len(priv) != ed25519.PrivateKeySize {
		return fmt.Errorf("key file %s: private key of %d bytes, want %d", path, len(priv), ed25519.PrivateKeySize)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("key file %s: %w", path, err)
	}
	return writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// WritePublicKey writes pub to a new file at path, as PEM "PUBLIC KEY"
// (PKIX), with mode 0644 (less under a stricter umask). An existing file is
// an error.
func WritePublicKey(path string, pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("key file %s: public key of %d bytes, want %d", path, len(pub), ed25519.PublicKeySize)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return fmt.Errorf("key file %s: %w", path, err)
	}
	return writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
}

// writeNew creates path (which must not exist), writes b, syncs and closes
// it; on failure it removes what it created.
func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("key file %s: already exists; not overwriting it", path)
	}
	if err != nil {
		return fmt.Errorf("key file %s: %w", path, err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("key file %s: %w", path, err)
	}
	return nil
}

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	if len(b) > maxKeyFileBytes {
		return nil, fmt.Errorf("key file %s: larger than %d bytes: not a key file", path, maxKeyFileBytes)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, fmt.Errorf("key file %s: empty", path)
	}
	return b, nil
}

// LoadPrivateKey reads an ed25519 private key written by WritePrivateKey
// (PEM "PRIVATE KEY", PKCS #8). Errors name the file and what is wrong.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	b, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("key file %s: not PEM: want a \"PRIVATE KEY\" block", path)
	}
	switch block.Type {
	case "PRIVATE KEY":
	case "PUBLIC KEY":
		return nil, fmt.Errorf("key file %s: holds a public key; the private key is needed here", path)
	default:
		return nil, fmt.Errorf("key file %s: PEM block %q, want \"PRIVATE KEY\" (PKCS #8 ed25519)", path, block.Type)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("key file %s: not a valid PKCS #8 private key: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key file %s: a %T, want an ed25519 key", path, k)
	}
	return priv, nil
}

// LoadPublicKey reads an ed25519 public key: PEM "PUBLIC KEY" (PKIX), as
// WritePublicKey writes it, or a single line of standard base64 holding the
// 32 raw bytes of the key. Errors name the file and what is wrong.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	if block, _ := pem.Decode(b); block != nil {
		switch block.Type {
		case "PUBLIC KEY":
		case "PRIVATE KEY":
			return nil, fmt.Errorf("key file %s: holds a private key; give the public key (keep the private key on the sink)", path)
		default:
			return nil, fmt.Errorf("key file %s: PEM block %q, want \"PUBLIC KEY\" (PKIX ed25519)", path, block.Type)
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("key file %s: not a valid PKIX public key: %w", path, err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("key file %s: a %T, want an ed25519 key", path, k)
		}
		return pub, nil
	}
	line := strings.TrimSpace(string(b))
	if strings.ContainsAny(line, "\r\n") {
		return nil, fmt.Errorf("key file %s: neither PEM nor a single line of base64", path)
	}
	raw, err := base64.StdEncoding.DecodeString(line)
	if err != nil {
		raw, err = base64.RawStdEncoding.DecodeString(line)
	}
	if err != nil {
		return nil, fmt.Errorf("key file %s: neither PEM nor base64: %v", path, err)
	}
	if len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("key file %s: base64 of %d bytes, want the %d bytes of an ed25519 public key", path, len(raw), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}
