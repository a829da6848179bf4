package pgwire

import (
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// scram is the client side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as
// PostgreSQL uses it: no channel binding, the user name left empty (the
// server takes it from the startup message). The password is used as
// given, without SASLprep: for ASCII passwords that is the same.
type scram struct {
	password    string
	nonce       string
	firstBare   string // client-first-message-bare
	authMessage []byte
	salted      []byte
}

func newSCRAM(password string) *scram {
	b := make([]byte, 18)
	rand.Read(b)
	return &scram{password: password, nonce: base64.RawStdEncoding.EncodeToString(b)}
}

// clientFirst returns the client-first-message.
func (s *scram) clientFirst() []byte {
	s.firstBare = "n=,r=" + s.nonce
	return []byte("n,," + s.firstBare)
}

// clientFinal answers the server-first-message with the proof.
func (s *scram) clientFinal(serverFirst []byte) ([]byte, error) {
	var nonce, salt string
	iter := 0
	for _, attr := range strings.Split(string(serverFirst), ",") {
		k, v, ok := strings.Cut(attr, "=")
		if !ok {
			continue
		}
		switch k {
		case "r":
			nonce = v
		case "s":
			salt = v
		case "i":
			iter, _ = strconv.Atoi(v)
		}
	}
	if !strings.HasPrefix(nonce, s.nonce) || len(nonce) == len(s.nonce) {
		return nil, errors.New("SCRAM: the server's nonce does not extend ours")
	}
	saltBytes, err := base64.StdEncoding.DecodeString(salt)
	if err != nil || len(saltBytes) == 0 {
		return nil, errors.New("SCRAM: the server sent no valid salt")
	}
	if iter < 1 || iter > 10_000_000 {
		return nil, fmt.Errorf("SCRAM: iteration count %d out of range", iter)
	}
	s.salted, err = pbkdf2.Key(sha256.New, s.password, saltBytes, iter, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("SCRAM: %w", err)
	}
	withoutProof := "c=biws,r=" + nonce // biws: base64 of the GS2 header "n,,"
	s.authMessage = []byte(s.firstBare + "," + string(serverFirst) + "," + withoutProof)
	clientKey := mac(s.salted, []byte("Client Key"))
	stored := sha256.Sum256(clientKey)
	sig := mac(stored[:], s.authMessage)
	proof := make([]byte, len(clientKey))
	subtle.XORBytes(proof, clientKey, sig)
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

// verifyServer checks the server-final-message: the server proves that it
// knows the password too.
func (s *scram) verifyServer(serverFinal []byte) error {
	if e, ok := bytes.CutPrefix(serverFinal, []byte("e=")); ok {
		return fmt.Errorf("SCRAM: the server refused: %s", e)
	}
	v, ok := bytes.CutPrefix(serverFinal, []byte("v="))
	if !ok || s.salted == nil {
		return errors.New("SCRAM: malformed server-final-message")
	}
	got, err := base64.StdEncoding.DecodeString(string(v))
	if err != nil {
		return errors.New("SCRAM: malformed server signature")
	}
	want := mac(mac(s.salted, []byte("Server Key")), s.authMessage)
	if !hmac.Equal(got, want) {
		return errors.New("SCRAM: the server's signature is wrong: it does not know the password")
	}
	return nil
}

func mac(key, msg []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(msg)
	return h.Sum(nil)
}
