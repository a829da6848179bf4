package pgwire

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgesync/edgesync/internal/testenv"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a certificate and key in PEM for cn, valid for the names.
func (ca *testCA) issue(t *testing.T, cn string, client bool, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// TestAuthAndTLS runs one server with every authentication method this
// client speaks and TLS on, and connects in every sslmode.
func TestAuthAndTLS(t *testing.T) {
	pg := testenv.Postgres(t)
	ca := newCA(t, "edgesync test CA")
	srvCert, srvKey := ca.issue(t, "localhost", false, "localhost")
	pg.WriteFile("server.crt", srvCert, 0o600)
	pg.WriteFile("server.key", srvKey, 0o600)
	pg.WriteFile("ca.crt", ca.pem, 0o600)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("ca.crt", ca.pem)
	otherCA := write("other.crt", newCA(t, "someone else").pem)
	cliCert, cliKey := ca.issue(t, "cert_u", true)
	cliCertFile, cliKeyFile := write("client.crt", cliCert), write("client.key", cliKey)

	admin := connect(t, pg.DSN())
	ctx := context.Background()
	if err := admin.SimpleExec(ctx, `
		CREATE ROLE scram_u LOGIN PASSWORD 'sc:r@m/pw';
		CREATE ROLE plain_u LOGIN PASSWORD 'plain';
		CREATE ROLE tls_u LOGIN PASSWORD 'tls';
		CREATE ROLE cert_u LOGIN;
		CREATE ROLE clear_u LOGIN PASSWORD 'clear';
		SET password_encryption = 'md5';
		CREATE ROLE md5_u LOGIN PASSWORD 'md5pw';
		GRANT ALL ON DATABASE `+pg.Database()+` TO scram_u, plain_u, tls_u, cert_u, md5_u, clear_u`); err != nil {
		t.Fatal(err)
	}
	pg.Configure([]string{
		"host all scram_u 127.0.0.1/32 scram-sha-256",
		"host all md5_u 127.0.0.1/32 md5",
		"host all plain_u 127.0.0.1/32 password",
		"hostssl all tls_u 127.0.0.1/32 scram-sha-256",
		"host all tls_u 127.0.0.1/32 reject",
		"hostssl all cert_u 127.0.0.1/32 cert",
		"host all cert_u 127.0.0.1/32 reject",
		"hostssl all clear_u 127.0.0.1/32 reject",
		"hostnossl all clear_u 127.0.0.1/32 scram-sha-256",
	}, "ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'", "ssl_ca_file = 'ca.crt'")

	base := fmt.Sprintf("127.0.0.1:%d/%s", pg.Port(), pg.Database())
	loc := fmt.Sprintf("localhost:%d/%s", pg.Port(), pg.Database())
	tests := []struct {
		name, url string
		ssl       bool   // want an encrypted session
		wantErr   string // substring; "" = connects
	}{
		{name: "scram", url: "postgres://scram_u:sc%3Ar%40m%2Fpw@" + base + "?sslmode=disable"},
		{name: "scram wrong password", url: "postgres://scram_u:nope@" + base + "?sslmode=disable", wantErr: "28P01"},
		{name: "scram no password", url: "postgres://scram_u@" + base + "?sslmode=disable&passfile=/nonexistent", wantErr: "none is set"},
		{name: "md5", url: "postgres://md5_u:md5pw@" + base + "?sslmode=disable"},
		{name: "md5 wrong password", url: "postgres://md5_u:x@" + base + "?sslmode=disable", wantErr: "28P01"},
		{name: "cleartext", url: "postgres://plain_u:plain@" + base + "?sslmode=disable"},
		{name: "prefer encrypts", url: "postgres://scram_u:sc%3Ar%40m%2Fpw@" + base, ssl: true},
		{name: "require", url: "postgres://tls_u:tls@" + base + "?sslmode=require", ssl: true},
		{name: "disable where TLS is required", url: "postgres://tls_u:tls@" + base + "?sslmode=disable", wantErr: "28000"},
		{name: "allow retries with TLS", url: "postgres://tls_u:tls@" + base + "?sslmode=allow", ssl: true},
		{name: "verify-ca", url: "postgres://tls_u:tls@" + base + "?sslmode=verify-ca&sslrootcert=" + caFile, ssl: true},
		{name: "verify-ca other CA", url: "postgres://tls_u:tls@" + base + "?sslmode=verify-ca&sslrootcert=" + otherCA, wantErr: "certificate"},
		{name: "require with root cert verifies", url: "postgres://tls_u:tls@" + base + "?sslmode=require&sslrootcert=" + otherCA, wantErr: "certificate"},
		{name: "verify-full by name", url: "postgres://tls_u:tls@" + loc + "?sslmode=verify-full&sslrootcert=" + caFile, ssl: true},
		{name: "verify-full wrong name", url: "postgres://tls_u:tls@" + base + "?sslmode=verify-full&sslrootcert=" + caFile, wantErr: "127.0.0.1"},
		{name: "client certificate", url: "postgres://cert_u@" + base + "?sslmode=verify-ca&sslrootcert=" + caFile + "&sslcert=" + cliCertFile + "&sslkey=" + cliKeyFile, ssl: true},
		{name: "no client certificate", url: "postgres://cert_u@" + base + "?sslmode=require", wantErr: "28000"},
		{name: "prefer falls back when TLS is refused", url: "postgres://clear_u:clear@" + base, ssl: false},
		{name: "verify-ca needs a root certificate", url: "postgres://tls_u:tls@" + base + "?sslmode=verify-ca", wantErr: "sslrootcert"},
		{name: "system roots mean verify-full", url: "postgres://tls_u:tls@" + base + "?sslmode=require&sslrootcert=system", wantErr: "certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseURL(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			c, err := Connect(cctx, cfg)
			if tc.wantErr != "" {
				if err == nil {
					c.Close()
					t.Fatalf("connected, want an error with %q", tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one with %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "sc:r@m") || strings.Contains(err.Error(), ":tls@") {
					t.Errorf("the error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			defer c.Close()
			var ssl bool
			if err := c.QueryRow(cctx, `SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl); err != nil {
				t.Fatal(err)
			}
			if ssl != tc.ssl {
				t.Errorf("ssl = %v, want %v", ssl, tc.ssl)
			}
		})
	}

	// The password file, as libpq reads it.
	pass := write("pgpass", []byte("# comment\n*:*:*:md5_u:wrong\\:no\nlocalhost:1:*:scram_u:x\n127.0.0.1:"+
		fmt.Sprint(pg.Port())+":*:scram_u:sc\\:r@m/pw\n"))
	c := connect(t, "postgres://scram_u@"+base+"?sslmode=disable&passfile="+pass)
	c.Close()
	if err := os.Chmod(pass, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, _ := ParseURL("postgres://scram_u@" + base + "?sslmode=disable&passfile=" + pass)
	if cfg.passwordFor(cfg.Hosts[0]) != "" {
		t.Error("a password file others can read was used")
	}
	_, err := Connect(ctx, &Config{Hosts: []Host{{Name: "127.0.0.1", Port: pg.Port()}}, User: "scram_u", Database: pg.Database(), SSLMode: "disable", Password: "wrong"})
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != "28P01" {
		t.Errorf("wrong password: %v, want SQLSTATE 28P01", err)
	}
}
