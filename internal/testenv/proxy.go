package testenv

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy is a TCP proxy on 127.0.0.1 in front of one target address, for tests
// of link failures: it can refuse connections (Partition), stall them as a
// silent network does (Blackhole), drop them (DropConnections) and recover
// (Heal). Its methods are safe to call from any goroutine.
type Proxy struct {
	t      testing.TB
	target string
	addr   string

	up       atomic.Int64
	down     atomic.Int64
	accepted atomic.Int64

	mu     sync.Mutex
	ln     net.Listener // nil while partitioned
	conns  map[*proxyConn]struct{}
	gate   chan struct{} // closed while bytes flow, open while blackholed
	closed bool
	wg     sync.WaitGroup
}

// proxyConn is one client connection and its connection to the target.
type proxyConn struct {
	client net.Conn
	mu     sync.Mutex
	server net.Conn
	dead   chan struct{}
	ctx    context.Context // canceled by kill, ends a dial in progress
	cancel context.CancelFunc
	once   sync.Once
}

func (c *proxyConn) kill() {
	c.once.Do(func() {
		close(c.dead)
		c.cancel()
		c.client.Close()
		c.mu.Lock()
		if c.server != nil {
			c.server.Close()
		}
		c.mu.Unlock()
	})
}

// NewProxy starts a proxy on 127.0.0.1 on a free port that forwards every
// connection to target ("host:port"; a "tcp://" or "ssl://" prefix is
// dropped). It is closed, with every connection and goroutine it started,
// when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	for _, prefix := range []string{"tcp://", "ssl://", "mqtt://", "mqtts://", "tls://"} {
		if len(target) > len(prefix) && target[:len(prefix)] == prefix {
			target = target[len(prefix):]
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: proxy listen: %v", err)
	}
	open := make(chan struct{})
	close(open)
	p := &Proxy{
		t:      t,
		target: target,
		addr:   ln.Addr().String(),
		ln:     ln,
		conns:  make(map[*proxyConn]struct{}),
		gate:   open,
	}
	p.wg.Add(1)
	go p.accept(ln)
	t.Cleanup(p.Close)
	return p
}

// Addr returns the proxy's "127.0.0.1:PORT". It stays the same across
// Partition and Heal.
func (p *Proxy) Addr() string { return p.addr }

// URL returns "tcp://" + Addr().
func (p *Proxy) URL() string { return "tcp://" + p.addr }

// Target returns the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// BytesUp returns how many bytes were forwarded from clients to the target.
func (p *Proxy) BytesUp() int64 { return p.up.Load() }

// BytesDown returns how many bytes were forwarded from the target to clients.
func (p *Proxy) BytesDown() int64 { return p.down.Load() }

// Accepted returns how many client connections the proxy has accepted, which
// counts reconnects.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// Active returns the number of open client connections.
func (p *Proxy) Active() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Partition closes every connection and stops listening, so that new
// connections are refused, as when the far side is down or unreachable with
// an answer. Heal undoes it.
func (p *Proxy) Partition() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	p.dropLocked()
}

// Blackhole stops all traffic without telling anyone, as a network that
// silently loses packets does: connections stay open, new connections are
// accepted but not connected onward, and no byte goes through in either
// direction. Bytes sent meanwhile are held, not lost, as TCP would resend
// them, and flow on Heal unless an endpoint gave up (keepalive) and closed
// its connection first.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
		p.gate = make(chan struct{})
	default: // already blackholed
	}
}

// DropConnections closes every current connection, as a NAT timeout or a
// restarted peer would, and keeps accepting new ones.
func (p *Proxy) DropConnections() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropLocked()
}

func (p *Proxy) dropLocked() {
	for c := range p.conns {
		c.kill()
		delete(p.conns, c)
	}
}

// Heal ends a Partition or a Blackhole: the proxy listens again on the same
// address and forwards bytes again.
func (p *Proxy) Heal() {
	p.t.Helper()
	if err := p.heal(); err != nil {
		p.t.Fatalf("testenv: proxy heal: %v", err)
	}
}

func (p *Proxy) heal() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	select {
	case <-p.gate:
	default:
		close(p.gate)
	}
	if p.ln != nil {
		return nil
	}
	// The port is ours until now; retry in case something grabbed it for a
	// moment (another test's FreePort).
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var ln net.Listener
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			p.ln = ln
			p.wg.Add(1)
			go p.accept(ln)
			return nil
		}
	}
	return fmt.Errorf("listen again on %s: %w", p.addr, err)
}

// Close stops the proxy, closes every connection and waits for all its
// goroutines. It is safe to call more than once.
func (p *Proxy) Close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		if p.ln != nil {
			p.ln.Close()
			p.ln = nil
		}
		p.dropLocked()
		select {
		case <-p.gate:
		default:
			close(p.gate)
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) currentGate() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gate
}

func (p *Proxy) accept(ln net.Listener) {
	defer p.wg.Done()
	for {
		client, err := ln.Accept()
		if err != nil {
			return // closed by Partition or Close
		}
		p.mu.Lock()
		if p.closed || p.ln != ln {
			p.mu.Unlock()
			client.Close()
			continue
		}
		p.accepted.Add(1)
		c := &proxyConn{client: client, dead: make(chan struct{})}
		c.ctx, c.cancel = context.WithCancel(context.Background())
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(c)
	}
}

func (p *Proxy) serve(c *proxyConn) {
	defer p.wg.Done()
	defer func() {
		c.kill()
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()

	// While blackholed, a new connection is held before it reaches the
	// target, as a SYN that gets no answer.
	select {
	case <-p.currentGate():
	case <-c.dead:
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	var d net.Dialer
	server, err := d.DialContext(ctx, "tcp", p.target)
	cancel()
	if err != nil {
		return
	}
	c.mu.Lock()
	c.server = server
	c.mu.Unlock()
	select {
	case <-c.dead: // killed while dialing: kill did not see server
		server.Close()
		return
	default:
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		p.pipe(c, c.client, server, &p.up)
	}()
	p.pipe(c, server, c.client, &p.down)
	<-done
}

// pipe copies src to dst, holding bytes while the proxy is blackholed. When
// either side fails it kills the connection, which ends the other direction.
func (p *Proxy) pipe(c *proxyConn, src, dst net.Conn, n *atomic.Int64) {
	defer c.kill()
	buf := make([]byte, 32<<10)
	for {
		r, err := src.Read(buf)
		if r > 0 {
			select {
			case <-p.currentGate():
			case <-c.dead:
				return
			}
			w, werr := dst.Write(buf[:r])
			n.Add(int64(w))
			if werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
