package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// Certs is a throwaway certificate authority with a server certificate for
// 127.0.0.1 and localhost and a client certificate, as PEM files in a
// temporary directory, for TLS and mutual-TLS tests:
//
//	c := testenv.NewCerts(t)
//	b := testenv.Mosquitto(t, testenv.WithTLS(c.ServerCert, c.ServerKey, c.CA, true))
type Certs struct {
	// CA is the CA certificate that signed the others.
	CA string
	// ServerCert and ServerKey are valid for 127.0.0.1, ::1 and localhost.
	ServerCert, ServerKey string
	// ClientCert and ClientKey have the common name "edgesync-test-client".
	ClientCert, ClientKey string

	t      testing.TB
	dir    string
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	serial atomic.Int64
}

// NewCerts creates a CA, a server and a client certificate (ECDSA P-256,
// valid from an hour ago for a day).
func NewCerts(t testing.TB) *Certs {
	t.Helper()
	c := &Certs{t: t, dir: t.TempDir()}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testenv: CA key: %v", err)
	}
	tmpl := c.template("edgesync test CA")
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("testenv: CA certificate: %v", err)
	}
	if c.caCert, err = x509.ParseCertificate(der); err != nil {
		t.Fatalf("testenv: CA certificate: %v", err)
	}
	c.caKey = key
	c.CA = c.writePEM("ca.pem", "CERTIFICATE", der)

	server := c.template("127.0.0.1")
	server.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	server.IPAddresses = []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback}
	server.DNSNames = []string{"localhost"}
	c.ServerCert, c.ServerKey = c.issue("server", server)
	c.ClientCert, c.ClientKey = c.IssueClient("edgesync-test-client")
	return c
}

// IssueClient issues another client certificate, with the given common name
// (mosquitto's use_identity_as_username maps it to the username), and returns
// the paths of its certificate and key.
func (c *Certs) IssueClient(commonName string) (certFile, keyFile string) {
	c.t.Helper()
	tmpl := c.template(commonName)
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return c.issue("client-"+tmpl.SerialNumber.String(), tmpl)
}

// ClientTLS returns a client configuration that trusts the CA and presents
// the client certificate.
func (c *Certs) ClientTLS() *tls.Config {
	c.t.Helper()
	pair, err := tls.LoadX509KeyPair(c.ClientCert, c.ClientKey)
	if err != nil {
		c.t.Fatalf("testenv: client key pair: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.caCert)
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
}

func (c *Certs) template(cn string) *x509.Certificate {
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: big.NewInt(c.serial.Add(1)),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"edgesync tests"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
}

func (c *Certs) issue(name string, tmpl *x509.Certificate) (certFile, keyFile string) {
	c.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		c.t.Fatalf("testenv: %s key: %v", name, err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.caCert, &key.PublicKey, c.caKey)
	if err != nil {
		c.t.Fatalf("testenv: %s certificate: %v", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		c.t.Fatalf("testenv: %s key: %v", name, err)
	}
	return c.writePEM(name+".pem", "CERTIFICATE", der), c.writePEM(name+"-key.pem", "PRIVATE KEY", keyDER)
}

func (c *Certs) writePEM(name, typ string, der []byte) string {
	c.t.Helper()
	path := filepath.Join(c.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		c.t.Fatalf("testenv: write %s: %v", path, err)
	}
	return path
}
