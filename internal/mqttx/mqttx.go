// Package mqttx holds what the agent and the sink share about MQTT: the
// broker block of their configuration, TLS and credentials, and Conn, a paho
// client kept connected by a reconnect loop with capped, jittered backoff.
//
// Conn follows PITFALLS.md: a persistent session (CleanSession false, stable
// client id), the memory store (Pebble is the durable store), message
// handlers that only hand off to a channel, waits on tokens that select on
// Done and a timeout, a write timeout, and MaxResumePubInFlight. paho's own
// reconnect is off: Conn reconnects itself, with jitter, so that a fleet that
// lost its broker does not return in lockstep. Nothing is published while the
// link is down: callers check Up and the outbox keeps the data.
package mqttx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgesync/edgesync/internal/backoff"
	"github.com/edgesync/edgesync/internal/yamlcfg"
)

// BrokerConfig is the `broker:` block of the agent and sink configuration.
type BrokerConfig struct {
	// URL of the broker: tcp://, ssl:// (TLS), ws:// or wss://. Required.
	URL string `yaml:"url"`
	// ClientID; empty means the caller's default (the device_id for the agent).
	ClientID string `yaml:"client_id"`
	// Username; empty means none.
	Username string `yaml:"username"`
	// PasswordFile holds the password (trailing newline ignored); empty means none.
	PasswordFile string `yaml:"password_file"`
	// CAFile verifies the broker's certificate; empty means the system roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the client's certificate for mutual TLS; both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// InsecureSkipVerify disables verification of the broker's certificate. Tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// KeepAlive is the MQTT keepalive; default 30s.
	KeepAlive time.Duration `yaml:"keepalive"`
	// ConnectTimeout bounds one connection attempt; default 10s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// WriteTimeout bounds one write to the socket; default 10s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// ReconnectMin and ReconnectMax bound the jittered reconnect delay; defaults 500ms and 30s.
	ReconnectMin time.Duration `yaml:"reconnect_min"`
	ReconnectMax time.Duration `yaml:"reconnect_max"`
}

// EnsureDefaults fills zero fields with their defaults.
// ZeroChecks are the keys (under prefix) that EnsureDefaults fills when zero,
// for yamlcfg.ExplicitZeros.
func (c *BrokerConfig) ZeroChecks(prefix string) []yamlcfg.ZeroCheck {
	return []yamlcfg.ZeroCheck{
		{Key: prefix + ".keepalive", Zero: c.KeepAlive == 0},
		{Key: prefix + ".connect_timeout", Zero: c.ConnectTimeout == 0},
		{Key: prefix + ".write_timeout", Zero: c.WriteTimeout == 0},
		{Key: prefix + ".reconnect_min", Zero: c.ReconnectMin == 0},
		{Key: prefix + ".reconnect_max", Zero: c.ReconnectMax == 0},
	}
}

func (c *BrokerConfig) EnsureDefaults() {
	if c.KeepAlive == 0 {
		c.KeepAlive = 30 * time.Second
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.ReconnectMin == 0 {
		c.ReconnectMin = 500 * time.Millisecond
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = 30 * time.Second
	}
}

// Validate reports every problem, naming keys under prefix (e.g. "broker").
func (c *BrokerConfig) Validate(prefix string) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", prefix, key, fmt.Sprintf(format, args...)))
	}
	if c.URL == "" {
		bad("url", "required (for example tcp://127.0.0.1:1883)")
	} else if u, err := url.Parse(c.URL); err != nil {
		bad("url", "%v", err)
	} else {
		switch u.Scheme {
		case "tcp", "ssl", "tls", "ws", "wss", "mqtt", "mqtts":
		default:
			bad("url", "scheme %q: use tcp://, ssl://, ws:// or wss://", u.Scheme)
		}
		if u.Host == "" {
			bad("url", "no host in %q", c.URL)
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		bad("cert_file", "cert_file and key_file go together for mutual TLS")
	}
	filesOK := true
	for key, f := range map[string]string{"password_file": c.PasswordFile, "ca_file": c.CAFile, "cert_file": c.CertFile, "key_file": c.KeyFile} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			bad(key, "%v", err)
			filesOK = false
		}
	}
	if u, err := url.Parse(c.URL); err == nil && c.URL != "" {
		switch {
		case !secureScheme(u.Scheme):
			// TLS settings on a plain URL would be ignored: the link would
			// go in clear text while the file asks for TLS.
			for key, set := range map[string]bool{"ca_file": c.CAFile != "", "cert_file": c.CertFile != "",
				"insecure_skip_verify": c.InsecureSkipVerify} {
				if set {
					bad(key, "set, but url %s is plain %s:// (no TLS): use ssl:// or mqtts:// (wss:// over websockets)", c.URL, u.Scheme)
				}
			}
		case filesOK && (c.CertFile == "") == (c.KeyFile == ""):
			// The certificates themselves, read as the connection will.
			if _, err := c.loadTLS(); err != nil {
				errs = append(errs, fmt.Errorf("%s.%w", prefix, err))
			}
		}
	}
	for key, d := range map[string]time.Duration{"keepalive": c.KeepAlive, "connect_timeout": c.ConnectTimeout,
		"write_timeout": c.WriteTimeout, "reconnect_min": c.ReconnectMin, "reconnect_max": c.ReconnectMax} {
		if d < 0 {
			bad(key, "must be >= 0, got %v", d)
		}
	}
	return errors.Join(errs...)
}

// secureScheme reports whether scheme is one of the TLS URL schemes.
func secureScheme(scheme string) bool {
	return scheme == "ssl" || scheme == "tls" || scheme == "wss" || scheme == "mqtts"
}

// TLSConfig returns the TLS settings, or nil for plain tcp:// and ws://.
// Errors name the key under "broker.".
func (c *BrokerConfig) TLSConfig() (*tls.Config, error) {
	tc, err := c.loadTLS()
	if err != nil {
		return nil, fmt.Errorf("broker.%w", err)
	}
	return tc, nil
}

// loadTLS is TLSConfig with errors naming the key alone ("ca_file: ...").
func (c *BrokerConfig) loadTLS() (*tls.Config, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	if !secureScheme(u.Scheme) {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.InsecureSkipVerify} //nolint:gosec // opt-in, tests only
	if host := u.Hostname(); host != "" {
		tc.ServerName = host
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file: %s holds no PEM certificate", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file: %s with key_file %s: %w", c.CertFile, c.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Password reads the password file, or "" when none is configured.
func (c *BrokerConfig) Password() (string, error) {
	if c.PasswordFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(c.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("broker.password_file: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// brokerURL maps the scheme aliases paho does not know.
func brokerURL(raw string) string {
	switch {
	case strings.HasPrefix(raw, "mqtt://"):
		return "tcp://" + strings.TrimPrefix(raw, "mqtt://")
	case strings.HasPrefix(raw, "mqtts://"):
		return "ssl://" + strings.TrimPrefix(raw, "mqtts://")
	}
	return raw
}

// Will is the last will and testament.
type Will struct {
	Topic    string
	Payload  []byte
	Retained bool
}

// Options configure a Conn beyond the broker block.
type Options struct {
	ClientID string // required
	Will     *Will
	// OnConnect runs on every (re)connection, before Up turns true; it must
	// not block for long (subscribe and publish without waiting is fine).
	OnConnect func(c mqtt.Client)
	// MaxResumePubInFlight bounds what paho resends from its session store on
	// reconnect; default 8.
	MaxResumePubInFlight int
	// CleanSession; false (the default) keeps the session across reconnects.
	CleanSession bool
	// Default receives every message that no subscription's handler takes:
	// with a persistent session the broker sends queued messages right
	// after CONNACK, before OnConnect has subscribed again. It must not block.
	Default mqtt.MessageHandler
	Logger  *slog.Logger
}

// mqttClient wraps the paho client so that it can sit in an atomic.Pointer.
type mqttClient struct{ mqtt.Client }

// lostEvent is a connection-lost report, with the client it came from: a
// client given up after a failed or timed-out connect may still report, and
// must not be taken for the current one.
type lostEvent struct {
	client mqtt.Client
	err    error
}

// Conn is a supervised MQTT connection.
type Conn struct {
	cfg    BrokerConfig
	opts   Options
	po     *mqtt.ClientOptions
	client atomic.Pointer[mqttClient]
	log    *slog.Logger

	up         atomic.Bool
	lost       chan lostEvent
	changed    chan struct{}
	reconnects atomic.Uint64
	attempts   atomic.Uint64
	lastErr    atomic.Value // string

	mu      sync.Mutex
	upSince time.Time
}

// New builds a Conn. Run connects it.
func New(cfg BrokerConfig, opts Options) (*Conn, error) {
	cfg.EnsureDefaults()
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxResumePubInFlight == 0 {
		opts.MaxResumePubInFlight = 8
	}
	tc, err := cfg.TLSConfig()
	if err != nil {
		return nil, err
	}
	password, err := cfg.Password()
	if err != nil {
		return nil, err
	}
	c := &Conn{cfg: cfg, opts: opts, log: opts.Logger, lost: make(chan lostEvent, 4), changed: make(chan struct{}, 1)}
	c.lastErr.Store("")
	po := mqtt.NewClientOptions().
		AddBroker(brokerURL(cfg.URL)).
		SetClientID(opts.ClientID).
		SetCleanSession(opts.CleanSession).
		SetStore(mqtt.NewMemoryStore()).
		SetKeepAlive(cfg.KeepAlive).
		SetPingTimeout(cfg.ConnectTimeout).
		SetConnectTimeout(cfg.ConnectTimeout).
		SetWriteTimeout(cfg.WriteTimeout).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		// 3.1.1 only: with the version unset, paho follows a failed or
		// slow 3.1.1 attempt with a 3.1 one inside the same Connect, which
		// can outlast the connect timeout and leave a second session
		// racing the next client for the same client id.
		SetProtocolVersion(4).
		SetOrderMatters(true).
		SetMaxResumePubInFlight(opts.MaxResumePubInFlight).
		SetMessageChannelDepth(1024)
	if cfg.Username != "" {
		po.SetUsername(cfg.Username)
	}
	if password != "" {
		po.SetPassword(password)
	}
	if tc != nil {
		po.SetTLSConfig(tc)
	}
	if opts.Will != nil {
		po.SetBinaryWill(opts.Will.Topic, opts.Will.Payload, 1, opts.Will.Retained)
	}
	po.SetOnConnectHandler(func(cl mqtt.Client) {
		if cl != c.Client() {
			return // a client already given up
		}
		if opts.OnConnect != nil {
			opts.OnConnect(cl)
		}
	})
	po.SetConnectionLostHandler(func(cl mqtt.Client, err error) {
		if cl != c.Client() {
			return // a client already given up
		}
		select {
		case c.lost <- lostEvent{client: cl, err: err}:
		default:
		}
	})
	if opts.Default != nil {
		po.SetDefaultPublishHandler(opts.Default)
	}
	c.po = po
	c.client.Store(&mqttClient{mqtt.NewClient(po)})
	return c, nil
}

// Client is the paho client of the current (or last) connection, for
// Subscribe and Publish. Each connection gets a fresh paho client: reusing
// one across reconnects races inside paho (its resume goroutine reads state
// the next Connect writes), and nothing is lost by starting afresh because
// the outbox, not paho's memory store, keeps what is unacknowledged.
func (c *Conn) Client() mqtt.Client { return c.client.Load().Client }

// Up reports whether the connection is established.
func (c *Conn) Up() bool { return c.up.Load() }

// Changed receives a value whenever Up changes (coalesced; one consumer).
func (c *Conn) Changed() <-chan struct{} { return c.changed }

// Stats of the connection.
type Stats struct {
	Up         bool
	UpSince    time.Time
	Reconnects uint64 // successful connections after the first
	Attempts   uint64 // connection attempts
	LastError  string
}

// Stats returns the connection's statistics.
func (c *Conn) Stats() Stats {
	c.mu.Lock()
	since := c.upSince
	c.mu.Unlock()
	return Stats{Up: c.up.Load(), UpSince: since, Reconnects: c.reconnects.Load(), Attempts: c.attempts.Load(),
		LastError: c.lastErr.Load().(string)}
}

func (c *Conn) setUp(up bool) {
	c.up.Store(up)
	c.mu.Lock()
	if up {
		c.upSince = time.Now()
	}
	c.mu.Unlock()
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// Run connects and keeps the connection up until ctx ends, then disconnects
// (the broker publishes the last will only when the connection drops without
// a disconnect; beforeDisconnect may publish a clean "offline" state).
func (c *Conn) Run(ctx context.Context, beforeDisconnect func(mqtt.Client)) error {
	bo := backoff.Backoff{Min: c.cfg.ReconnectMin, Max: c.cfg.ReconnectMax}
	first := true // no connection yet
	failing := false
	// Failed attempts are logged when the error changes (a network error
	// turning into a certificate refusal, say), each distinct error at most
	// once per failLogEvery: the journal names the cause of now without a
	// line per attempt.
	logged := make(map[string]time.Time)
	for try := 0; ; try++ {
		c.attempts.Add(1)
		if try > 0 {
			c.client.Store(&mqttClient{mqtt.NewClient(c.po)})
		}
		client := c.Client()
		tok := client.Connect()
		err := WaitToken(ctx, tok, c.cfg.ConnectTimeout+time.Second)
		if ctx.Err() != nil {
			client.Disconnect(0)
			return nil
		}
		if err != nil {
			// A timed-out attempt may still complete: make it give up
			// before the next client connects with the same client id.
			client.Disconnect(0)
		}
		if err == nil {
			if !first {
				c.reconnects.Add(1)
			}
			if failing {
				c.log.Info("mqtt: connected again", "broker", c.cfg.URL, "attempts", bo.Attempts())
			} else {
				c.log.Info("mqtt: connected", "broker", c.cfg.URL)
			}
			first, failing = false, false
			clear(logged)
			bo.Reset()
			c.lastErr.Store("")
			c.setUp(true)
			var ev lostEvent
			for ev.client != client { // reports of clients given up earlier are ignored
				select {
				case <-ctx.Done():
					c.setUp(false)
					if beforeDisconnect != nil && client.IsConnectionOpen() {
						beforeDisconnect(client)
					}
					client.Disconnect(250)
					return nil
				case ev = <-c.lost:
				}
			}
			err = ev.err
			c.setUp(false)
			client.Disconnect(0) // stop its goroutines before the next client
			c.log.Warn("mqtt: connection lost; reconnecting", "broker", c.cfg.URL, "err", err)
		} else if k := errKind(err); time.Since(logged[k]) >= failLogEvery {
			c.log.Warn("mqtt: cannot connect; retrying with backoff", "broker", c.cfg.URL, "err", err,
				"attempts", bo.Attempts()+1)
			if len(logged) >= 32 {
				clear(logged)
			}
			logged[k] = time.Now()
		}
		if err != nil {
			c.lastErr.Store(err.Error())
		}
		failing = true
		t := time.NewTimer(bo.Next())
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// failLogEvery: a connection error that stays the same is logged again this
// often.
const failLogEvery = 10 * time.Minute

// localAddr matches the local end of a connection in an error message
// ("127.0.0.1:43104->"), which differs at every attempt.
var localAddr = regexp.MustCompile(`[0-9A-Za-z.:\[\]%]+:[0-9]+->`)

// errKind is err's message without what changes from one attempt to the
// next, so that the same failure is recognised as such.
func errKind(err error) string { return localAddr.ReplaceAllString(err.Error(), "") }

// ErrTimeout: a token did not complete in time.
var ErrTimeout = errors.New("mqtt: timed out waiting for the broker")

// WaitToken waits for tok without ever blocking forever (paho #613, #450).
func WaitToken(ctx context.Context, tok mqtt.Token, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-t.C:
		return ErrTimeout
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SubscribeTimeout bounds the wait for a SUBACK in WatchSubscribe.
const SubscribeTimeout = 30 * time.Second

// WatchSubscribe waits, on a goroutine of its own (paho handlers must not
// block), for the SUBACK of tok, a token from Subscribe or SubscribeMultiple,
// and calls done with the outcome: nil when the broker granted every filter;
// otherwise an error naming what failed: the filters the broker refused
// (SUBACK 0x80, how EMQX, HiveMQ and VerneMQ answer a subscription their ACL
// denies; mosquitto grants it and delivers nothing), the token's error, or
// no SUBACK within SubscribeTimeout.
func WatchSubscribe(tok mqtt.Token, done func(error)) {
	go func() { done(subscribeResult(tok, SubscribeTimeout)) }()
}

func subscribeResult(tok mqtt.Token, timeout time.Duration) error {
	if err := WaitToken(context.Background(), tok, timeout); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	st, ok := tok.(*mqtt.SubscribeToken)
	if !ok {
		return nil
	}
	res := st.Result()
	if len(res) == 0 {
		// Completed without a SUBACK (the connection closed first).
		return errors.New("subscribe: no SUBACK from the broker (the connection closed first?)")
	}
	var refused []string
	for filter, code := range res {
		if code == 0x80 {
			refused = append(refused, filter)
		}
	}
	if len(refused) > 0 {
		slices.Sort(refused)
		return fmt.Errorf("the broker refused the subscription to %s (SUBACK 0x80: its ACL does not allow it)",
			strings.Join(refused, ", "))
	}
	return nil
}
