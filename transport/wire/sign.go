package wire

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// configDomain starts every signed config message, so that a signature over
// a config can never be taken for a signature over anything else.
const configDomain = "edgesync-config-v1\n"

// SigningMessage returns the bytes a config's signature covers:
//
//	"edgesync-config-v1\n" Target "\n" Version "\n" IssuedAt "\n" KeyID "\n" Body
//
// with Version and IssuedAt in decimal (IssuedAt with a leading "-" when
// negative) and Body as is. Target and KeyID cannot hold a newline, so the
// message is unambiguous. Binding Target means a config signed for one
// device cannot be replayed to another, or to the fleet; binding Version and
// IssuedAt means an old config cannot be replayed as a new one.
func (c *Config) SigningMessage() []byte {
	b := make([]byte, 0, len(configDomain)+len(c.Target)+len(c.KeyID)+len(c.Body)+48)
	b = append(b, configDomain...)
	b = append(b, c.Target...)
	b = append(b, '\n')
	b = strconv.AppendUint(b, c.Version, 10)
	b = append(b, '\n')
	b = strconv.AppendInt(b, c.IssuedAt, 10)
	b = append(b, '\n')
	b = append(b, c.KeyID...)
	b = append(b, '\n')
	return append(b, c.Body...)
}

// Sign sets c.KeyID to keyID and c.Signature to the ed25519 signature of
// c.SigningMessage() with key.
func (c *Config) Sign(key ed25519.PrivateKey, keyID string) error {
	if !ValidKeyID(keyID) {
		return invalidValue("config", "key_id", keyID)
	}
	if len(key) != ed25519.PrivateKeySize {
		return invalid("config", "signature", "private key of "+itoa(len(key))+" bytes, want "+itoa(ed25519.PrivateKeySize))
	}
	c.KeyID = keyID
	c.Signature = ed25519.Sign(key, c.SigningMessage())
	return nil
}

// Verify checks c's signature with key, the public key the caller holds for
// c.KeyID. It returns ErrUnsigned when c has no signature and ErrSignature
// when the signature does not verify.
func (c *Config) Verify(key ed25519.PublicKey) error {
	if len(c.Signature) == 0 {
		return ErrUnsigned
	}
	if len(key) != ed25519.PublicKeySize || len(c.Signature) != ed25519.SignatureSize ||
		!ed25519.Verify(key, c.SigningMessage(), c.Signature) {
		return ErrSignature
	}
	return nil
}

// KeyIDOf returns a key id derived from a public key: the first 8 bytes of
// its SHA-256, in hex (16 characters). Publishers and agents that name keys
// this way need no separate key registry.
func KeyIDOf(key ed25519.PublicKey) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}
