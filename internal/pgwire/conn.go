package pgwire

import (
	"bufio"
	"context"
	"crypto/md5"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Conn is one connection to the server. It is not safe for concurrent use.
type Conn struct {
	nc   net.Conn
	br   *bufio.Reader
	w    writer
	rbuf []byte

	params   map[string]string // ParameterStatus: server_version, …
	txStatus byte              // from the last ReadyForQuery: I, T or E
	stmts    map[string]*stmt
	nstmt    int
	broken   error // set once the connection cannot be used any more
}

// Connect opens a connection: it tries each of cfg.Hosts in order until one
// accepts, negotiates TLS per cfg.SSLMode, authenticates, and waits until
// the server is ready for queries.
func Connect(ctx context.Context, cfg *Config) (*Conn, error) {
	if len(cfg.Hosts) == 0 {
		return nil, errors.New("pgwire: no host to connect to")
	}
	var errs []error
	for _, h := range cfg.Hosts {
		c, err := connectHost(ctx, cfg, h)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		var pe *Error
		if errors.As(err, &pe) || ctx.Err() != nil {
			break // the server answered: another host would answer alike
		}
	}
	return nil, errors.Join(errs...)
}

func connectHost(ctx context.Context, cfg *Config, h Host) (*Conn, error) {
	switch cfg.SSLMode {
	case "allow":
		c, err := connectOnce(ctx, cfg, h, false)
		var pe *Error
		if errors.As(err, &pe) && (pe.Code == "28000" || pe.Code == "28P01") {
			return connectOnce(ctx, cfg, h, true)
		}
		return c, err
	case "prefer":
		c, err := connectOnce(ctx, cfg, h, true)
		var te *tlsError
		if errors.As(err, &te) {
			return connectOnce(ctx, cfg, h, false)
		}
		return c, err
	case "disable":
		return connectOnce(ctx, cfg, h, false)
	default:
		return connectOnce(ctx, cfg, h, true)
	}
}

// tlsError: the TLS handshake failed; sslmode prefer then tries without.
type tlsError struct{ err error }

func (e *tlsError) Error() string { return e.err.Error() }
func (e *tlsError) Unwrap() error { return e.err }

func connectOnce(ctx context.Context, cfg *Config, h Host, useTLS bool) (_ *Conn, err error) {
	if cfg.ConnectTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.ConnectTimeout)
		defer cancel()
	}
	network := "tcp"
	if strings.HasPrefix(h.Name, "/") {
		network = "unix"
		useTLS = false // no TLS over a unix socket, as in libpq
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, h.String())
	if err != nil {
		return nil, fmt.Errorf("pgwire: connect %s: %w", h, err)
	}
	c := &Conn{nc: nc, params: map[string]string{}, stmts: map[string]*stmt{}}
	defer func() {
		if err != nil {
			nc.Close()
			err = fmt.Errorf("pgwire: connect %s: %w", h, err)
		}
	}()
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() && err != nil {
			err = errors.Join(ctx.Err(), err)
		}
	}()
	if useTLS {
		if err := c.startTLS(cfg, h); err != nil {
			return nil, err
		}
	}
	c.br = bufio.NewReaderSize(c.nc, 32<<10)
	if err := c.startup(cfg); err != nil {
		return nil, err
	}
	return c, nil
}

// startTLS asks for TLS and, when the server agrees, wraps the connection.
func (c *Conn) startTLS(cfg *Config, h Host) error {
	conf, err := tlsConfig(cfg, h)
	if err != nil {
		return err
	}
	c.w.b = c.w.b[:0]
	c.w.begin(0)
	c.w.int32(80877103) // SSLRequest
	c.w.end()
	if _, err := c.nc.Write(c.w.b); err != nil {
		return err
	}
	var b [1]byte
	if _, err := c.nc.Read(b[:]); err != nil {
		return err
	}
	switch b[0] {
	case 'S':
	case 'N':
		if cfg.SSLMode == "prefer" || cfg.SSLMode == "allow" {
			return nil
		}
		return fmt.Errorf("the server does not accept TLS, and sslmode is %s", cfg.SSLMode)
	default:
		return fmt.Errorf("unexpected answer %q to the TLS request: not a PostgreSQL server?", b[0])
	}
	tc := tls.Client(c.nc, conf)
	if err := tc.Handshake(); err != nil {
		return &tlsError{fmt.Errorf("TLS handshake: %w", err)}
	}
	c.nc = tc
	return nil
}

// tlsConfig follows libpq: require encrypts without checking the server
// (unless a root certificate is given, which makes it verify-ca),
// verify-ca checks the chain, verify-full the chain and the host name.
func tlsConfig(cfg *Config, h Host) (*tls.Config, error) {
	conf := &tls.Config{ServerName: h.Name, MinVersion: tls.VersionTLS12}
	mode := cfg.SSLMode
	if mode == "require" && cfg.SSLRootCert != "" {
		mode = "verify-ca"
	}
	switch mode {
	case "verify-ca", "verify-full":
		roots, err := rootPool(cfg.SSLRootCert)
		if err != nil {
			return nil, err
		}
		conf.RootCAs = roots
		if mode == "verify-ca" {
			conf.InsecureSkipVerify = true // the chain is checked below, not the name
			conf.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
				return verifyChain(raw, roots)
			}
		}
	default:
		conf.InsecureSkipVerify = true
	}
	if cfg.SSLCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.SSLCert, cfg.SSLKey)
		if err != nil {
			return nil, fmt.Errorf("sslcert/sslkey: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// rootPool loads the CA file: path, or ~/.postgresql/root.crt when it
// exists, or the system's roots ("system", or no file at all).
func rootPool(path string) (*x509.CertPool, error) {
	if path == "" {
		if home, err := os.UserHomeDir(); err == nil {
			if p := filepath.Join(home, ".postgresql", "root.crt"); fileExists(p) {
				path = p
			}
		}
	}
	if path == "" || path == "system" {
		return x509.SystemCertPool()
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sslrootcert: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("sslrootcert %s: no PEM certificate in it", path)
	}
	return pool, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func verifyChain(raw [][]byte, roots *x509.CertPool) error {
	if len(raw) == 0 {
		return errors.New("the server sent no certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return err
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
	return err
}

// startup sends the startup message, authenticates and waits for
// ReadyForQuery. The session runs in UTC with ISO dates, which is what
// the text decoding of timestamps expects.
func (c *Conn) startup(cfg *Config) error {
	c.w.b = c.w.b[:0]
	c.w.begin(0)
	c.w.int32(3 << 16) // protocol 3.0
	c.w.str("user")
	c.w.str(cfg.User)
	c.w.str("database")
	c.w.str(cfg.Database)
	for k, v := range cfg.Params {
		c.w.str(k)
		c.w.str(v)
	}
	for _, kv := range [][2]string{{"client_encoding", "UTF8"}, {"DateStyle", "ISO"}, {"TimeZone", "UTC"}} {
		c.w.str(kv[0])
		c.w.str(kv[1])
	}
	c.w.b = append(c.w.b, 0)
	c.w.end()
	if err := c.flush(); err != nil {
		return err
	}
	var sc *scram
	for {
		t, body, err := c.recv()
		if err != nil {
			return err
		}
		switch t {
		case 'R':
			r := reader{b: body}
			switch kind := r.int32(); kind {
			case 0: // AuthenticationOk
			case 3: // cleartext password
				if err := c.sendPassword(cfg, cfg.Password); err != nil {
					return err
				}
			case 5: // MD5
				salt := r.bytes(4)
				if r.err != nil {
					return r.err
				}
				inner := md5.Sum([]byte(cfg.Password + cfg.User))
				outer := md5.Sum(append([]byte(hex.EncodeToString(inner[:])), salt...))
				if err := c.sendPassword(cfg, "md5"+hex.EncodeToString(outer[:])); err != nil {
					return err
				}
			case 10: // SASL: a list of mechanisms
				var mechs []string
				for {
					m := r.cstring()
					if m == "" || r.err != nil {
						break
					}
					mechs = append(mechs, m)
				}
				if !contains(mechs, "SCRAM-SHA-256") {
					return fmt.Errorf("the server offers SASL mechanisms %v; this client speaks SCRAM-SHA-256 only", mechs)
				}
				if cfg.Password == "" {
					return noPassword(cfg)
				}
				sc = newSCRAM(cfg.Password)
				first := sc.clientFirst()
				c.w.b = c.w.b[:0]
				c.w.begin('p')
				c.w.str("SCRAM-SHA-256")
				c.w.int32(int32(len(first)))
				c.w.raw(first)
				c.w.end()
				if err := c.flush(); err != nil {
					return err
				}
			case 11: // SASLContinue
				if sc == nil {
					return errors.New("SASL continue without a SASL start")
				}
				final, err := sc.clientFinal(r.b)
				if err != nil {
					return err
				}
				c.w.b = c.w.b[:0]
				c.w.begin('p')
				c.w.raw(final)
				c.w.end()
				if err := c.flush(); err != nil {
					return err
				}
			case 12: // SASLFinal
				if sc == nil {
					return errors.New("SASL final without a SASL start")
				}
				if err := sc.verifyServer(r.b); err != nil {
					return err
				}
			default:
				return fmt.Errorf("the server asks for authentication method %d, which this client does not speak (trust, password, md5 and scram-sha-256 only)", kind)
			}
		case 'K': // BackendKeyData
		case 'E':
			return parseError(body)
		case 'Z':
			if len(body) > 0 {
				c.txStatus = body[0]
			}
			return nil
		default:
			return fmt.Errorf("unexpected message %q during startup", t)
		}
	}
}

func (c *Conn) sendPassword(cfg *Config, pw string) error {
	if cfg.Password == "" {
		return noPassword(cfg)
	}
	c.w.b = c.w.b[:0]
	c.w.begin('p')
	c.w.str(pw)
	c.w.end()
	return c.flush()
}

func noPassword(cfg *Config) error {
	return fmt.Errorf("the server asks user %q for a password, and none is set (store.password_file, the URL, PGPASSWORD or ~/.pgpass)", cfg.User)
}

func (c *Conn) flush() error {
	_, err := c.nc.Write(c.w.b)
	if err != nil {
		c.broken = err
		return fmt.Errorf("postgres connection lost (write): %w", err)
	}
	return nil
}

// recv reads the next message, handling the asynchronous ones
// (ParameterStatus, NoticeResponse, NotificationResponse) itself.
func (c *Conn) recv() (byte, []byte, error) {
	for {
		t, body, buf, err := readMessage(c.br, c.rbuf)
		c.rbuf = buf
		if err != nil {
			c.broken = err
			return 0, nil, fmt.Errorf("postgres connection lost (read): %w", err)
		}
		switch t {
		case 'S':
			r := reader{b: body}
			k, v := r.cstring(), r.cstring()
			if r.err == nil {
				c.params[k] = v
			}
		case 'N', 'A':
		default:
			return t, body, nil
		}
	}
}

// ServerVersion returns the server_version the server reported.
func (c *Conn) ServerVersion() string { return c.params["server_version"] }

// TxStatus returns the transaction status from the last ReadyForQuery:
// 'I' idle, 'T' in a transaction, 'E' in a failed transaction.
func (c *Conn) TxStatus() byte { return c.txStatus }

// IsClosed reports whether the connection was closed or broke.
func (c *Conn) IsClosed() bool { return c.broken != nil }

// Close says goodbye to the server and closes the socket; safe to call twice.
func (c *Conn) Close() error {
	if c.broken == nil {
		c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		c.w.b = c.w.b[:0]
		c.w.begin('X')
		c.w.end()
		c.nc.Write(c.w.b)
	}
	if errors.Is(c.broken, ErrClosed) {
		return nil
	}
	c.broken = ErrClosed
	return c.nc.Close()
}
