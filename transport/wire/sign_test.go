package wire

import (
	"crypto/ed25519"
	"errors"
	"testing"
)

func TestConfigSignature(t *testing.T) {
	pub := testKey.Public().(ed25519.PublicKey)
	signed := testConfig(t, true)
	if err := signed.Verify(pub); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := "edgesync-config-v1\ngw-0001\n12\n1795687200000000000\n" + KeyIDOf(pub) + "\n" + string(signed.Body)
	if got := string(signed.SigningMessage()); got != want {
		t.Errorf("SigningMessage:\ngot  %q\nwant %q", got, want)
	}

	otherPub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	tampers := map[string]func(c *Config){
		"target":    func(c *Config) { c.Target = "gw-0002" },
		"fleet":     func(c *Config) { c.Target = FleetID },
		"version":   func(c *Config) { c.Version++ },
		"issued at": func(c *Config) { c.IssuedAt = -c.IssuedAt },
		"key id":    func(c *Config) { c.KeyID = "other" },
		"body":      func(c *Config) { c.Body = append(c.Body, ' ') },
		"signature": func(c *Config) { c.Signature[0] ^= 1 },
	}
	for name, tamper := range tampers {
		c := testConfig(t, true)
		tamper(c)
		if err := c.Verify(pub); !errors.Is(err, ErrSignature) {
			t.Errorf("%s changed: Verify = %v, want ErrSignature", name, err)
		}
	}
	if err := signed.Verify(otherPub); !errors.Is(err, ErrSignature) {
		t.Errorf("another key: Verify = %v, want ErrSignature", err)
	}
	if err := signed.Verify(pub[:10]); !errors.Is(err, ErrSignature) {
		t.Errorf("a short key: Verify = %v, want ErrSignature", err)
	}
	if err := testConfig(t, false).Verify(pub); !errors.Is(err, ErrUnsigned) {
		t.Errorf("unsigned: Verify = %v, want ErrUnsigned", err)
	}

	c := testConfig(t, false)
	if err := c.Sign(testKey, "bad key id"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Sign with a bad key id: %v, want ErrInvalid", err)
	}
	if err := c.Sign(testKey[:5], "k"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Sign with a short key: %v, want ErrInvalid", err)
	}
	// A signed config survives the wire.
	if err := c.Sign(testKey, "k1"); err != nil {
		t.Fatal(err)
	}
	payload, err := EncodeConfig(nil, c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeConfig(payload)
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Verify(pub); err != nil {
		t.Errorf("Verify after decoding: %v", err)
	}
}

func TestKeyIDOf(t *testing.T) {
	id := KeyIDOf(testKey.Public().(ed25519.PublicKey))
	if len(id) != 16 || !ValidKeyID(id) {
		t.Errorf("KeyIDOf = %q, want 16 hex digits", id)
	}
}
