package pgwire

import (
	"bufio"
	"context"
	"crypto/md5"
	"crypto/rand"
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
	prefix   string // of prepared statement names, random per connection
	broken   error  // set once the connection cannot be used any more

	ready       bool  // startup done: messages up to maxMessage
	host        Host  // for a CancelRequest
	pid, secret int32 // BackendKeyData
}

// stmtPrefix returns a random prefix for prepared statement names, so that
// a connection pooler that moved the session to another backend makes a
// cached statement fail ("does not exist") instead of running another
// client's statement of the same name.
func stmtPrefix() string {
	var b [4]byte
	rand.Read(b[:])
	return "es" + hex.EncodeToString(b[:]) + "_"
}

// cancel asks the server, on a connection of its own, to cancel what this
// connection runs now (best effort, bounded): a call whose context ended
// must not leave its statement waiting on locks in the server.
func (c *Conn) cancel() {
	if c.pid == 0 && c.secret == 0 {
		return
	}
	network := "tcp"
	if strings.HasPrefix(c.host.Name, "/") {
		network = "unix"
	}
	nc, err := net.DialTimeout(network, c.host.String(), 5*time.Second)
	if err != nil {
		return
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	var w writer
	w.begin(0)
	w.int32(80877102) // CancelRequest
	w.int32(c.pid)
	w.int32(c.secret)
	w.end()
	if _, err := nc.Write(w.b); err == nil {
		var b [1]byte
		nc.Read(b[:]) // the server closes the connection when done
	}
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
		if ctx.Err() != nil || errors.As(err, &pe) && !retryOnNextHost(pe.Code) {
			break // the server answered: another host would answer alike
		}
	}
	return nil, errors.Join(errs...)
}

// retryOnNextHost reports the startup errors after which libpq tries the
// next host: the server is starting up, shutting down or in recovery, or
// has no room for another connection.
func retryOnNextHost(code string) bool {
	switch code {
	case "57P03", "57P01", "53300":
		return true
	}
	return false
}

func connectHost(ctx context.Context, cfg *Config, h Host) (*Conn, error) {
	switch cfg.SSLMode {
	case "allow":
		// As libpq: in the clear first; any refusal by the server, then
		// with TLS (pg_hba.conf may have hostssl lines only).
		c, err := connectOnce(ctx, cfg, h, false)
		var pe *Error
		if errors.As(err, &pe) && ctx.Err() == nil {
			return connectOnce(ctx, cfg, h, true)
		}
		return c, err
	case "prefer":
		// As libpq: TLS first; a failed handshake, or any refusal by the
		// server over TLS (pg_hba.conf may have hostnossl lines only), then
		// in the clear.
		c, err := connectOnce(ctx, cfg, h, true)
		var te *tlsError
		var pe *Error
		if ctx.Err() == nil && (errors.As(err, &te) || errors.As(err, &pe)) {
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
	c := &Conn{nc: nc, params: map[string]string{}, stmts: map[string]*stmt{}, host: h, prefix: stmtPrefix()}
	defer func() {
		if err != nil {
			nc.Close()
			err = fmt.Errorf("pgwire: connect %s: %w", h, err)
		}
	}()
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() {
			// The deadline was set in the past: the connection is of no
			// use even if the startup had just completed.
			if err == nil {
				c.nc.Close()
				err = ctx.Err()
			} else {
				err = errors.Join(ctx.Err(), err)
			}
		}
	}()
	if useTLS {
		if err := c.startTLS(cfg, h); err != nil {
			return nil, err
		}
	}
	c.br = bufio.NewReaderSize(c.nc, 32<<10)
	if err := c.startup(cfg, cfg.passwordFor(h)); err != nil {
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
// (unless a root certificate file is given or ~/.postgresql/root.crt
// exists, which makes it verify-ca), verify-ca checks the chain against
// that file, verify-full the chain and the host name. verify-ca without a
// root certificate file is refused, as in libpq: the system's roots would
// accept any certificate any public CA issued. sslrootcert=system (the
// system's roots) makes any mode verify-full.
func tlsConfig(cfg *Config, h Host) (*tls.Config, error) {
	conf := &tls.Config{ServerName: h.Name, MinVersion: tls.VersionTLS12}
	mode := cfg.SSLMode
	rootFile := cfg.SSLRootCert
	if rootFile == "" {
		if home, err := os.UserHomeDir(); err == nil {
			if p := filepath.Join(home, ".postgresql", "root.crt"); fileExists(p) {
				rootFile = p
			}
		}
	}
	switch {
	case rootFile == "system":
		mode = "verify-full"
	case mode == "require" && rootFile != "":
		mode = "verify-ca"
	}
	switch mode {
	case "verify-ca", "verify-full":
		if rootFile == "" {
			return nil, fmt.Errorf("sslmode %s needs a root certificate: set sslrootcert to the CA file (or to \"system\" for the system's roots, with verify-full), or put it in ~/.postgresql/root.crt", mode)
		}
		roots, err := rootPool(rootFile)
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

// rootPool loads the CA file, or the system's roots for "system".
func rootPool(path string) (*x509.CertPool, error) {
	if path == "system" {
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
func (c *Conn) startup(cfg *Config, password string) error {
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
	// These override what the role or the database set: the decoding of
	// results depends on them.
	for _, kv := range [][2]string{{"client_encoding", "UTF8"}, {"DateStyle", "ISO"}, {"TimeZone", "UTC"},
		{"bytea_output", "hex"}, {"extra_float_digits", "3"}} {
		c.w.str(kv[0])
		c.w.str(kv[1])
	}
	c.w.b = append(c.w.b, 0)
	c.w.end()
	if err := c.flush(); err != nil {
		return err
	}
	var (
		sc       *scram
		verified bool // the server proved it knows the password (SCRAM)
	)
	for {
		t, body, err := c.recv()
		if err != nil {
			return err
		}
		switch t {
		case 'R':
			r := reader{b: body}
			kind := r.int32()
			if sc != nil && kind != 11 && kind != 12 && !(kind == 0 && verified) {
				// Once SCRAM started, the server must finish it: no
				// downgrade to a password in the clear, no success
				// without proving it knows the password.
				return fmt.Errorf("the server broke off SCRAM authentication (method %d): not the server it claims to be?", kind)
			}
			switch kind {
			case 0: // AuthenticationOk
			case 3: // cleartext password
				if err := c.sendPassword(cfg, password, password); err != nil {
					return err
				}
			case 5: // MD5
				salt := r.bytes(4)
				if r.err != nil {
					return r.err
				}
				inner := md5.Sum([]byte(password + cfg.User))
				outer := md5.Sum(append([]byte(hex.EncodeToString(inner[:])), salt...))
				if err := c.sendPassword(cfg, password, "md5"+hex.EncodeToString(outer[:])); err != nil {
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
				if password == "" {
					return noPassword(cfg)
				}
				sc = newSCRAM(password)
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
				verified = true
			default:
				return fmt.Errorf("the server asks for authentication method %d, which this client does not speak (trust, password, md5 and scram-sha-256 only)", kind)
			}
		case 'K': // BackendKeyData: for a CancelRequest
			r := reader{b: body}
			c.pid, c.secret = r.int32(), r.int32()
		case 'E':
			return parseError(body)
		case 'Z':
			if len(body) > 0 {
				c.txStatus = body[0]
			}
			c.ready = true
			return nil
		default:
			return fmt.Errorf("unexpected message %q during startup", t)
		}
	}
}

func (c *Conn) sendPassword(cfg *Config, password, pw string) error {
	if password == "" {
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
		limit := maxStartupMessage
		if c.ready {
			limit = maxMessage
		}
		t, body, buf, err := readMessage(c.br, c.rbuf, limit)
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
