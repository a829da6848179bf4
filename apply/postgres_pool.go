package apply

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/edgesync/edgesync/internal/pgwire"
)

// pgPool is a small pool of pgwire connections: at most size at once,
// opened on demand, kept while healthy and idle in no transaction. Each
// connection caches its prepared statements, which is what makes the apply
// statements cheap after the first batch. A connection idle for longer than
// pingIdle is pinged before it is handed out, so that after a restart of the
// server the pool finds its dead connections itself instead of failing a
// batch on each.
type pgPool struct {
	cfg   *pgwire.Config
	slots chan struct{} // one token per connection in use

	mu     sync.Mutex
	idle   []idleConn
	closed bool
}

type idleConn struct {
	c     *pgwire.Conn
	since time.Time
}

// pingIdle is how long a connection may sit idle before acquire pings it.
const pingIdle = time.Second

func newPGPool(cfg *pgwire.Config, size int) *pgPool {
	return &pgPool{cfg: cfg, slots: make(chan struct{}, size)}
}

// acquire returns a connection, waiting for a free slot.
func (p *pgPool) acquire(ctx context.Context) (*pgwire.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.slots
		return nil, ErrClosed
	}
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	// The most recently used first; the rest go back.
	var c *pgwire.Conn
	for len(idle) > 0 && c == nil {
		ic := idle[len(idle)-1]
		idle = idle[:len(idle)-1]
		c = ic.c
		if !c.IsClosed() && time.Since(ic.since) > pingIdle {
			// Not the caller's context: its end must not break a
			// healthy connection.
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := c.Ping(pctx); err != nil {
				c.Close()
			}
			cancel()
		}
		if c.IsClosed() {
			c = nil
		}
	}
	p.mu.Lock()
	if p.closed {
		for _, ic := range idle {
			ic.c.Close()
		}
	} else {
		p.idle = append(idle, p.idle...)
	}
	p.mu.Unlock()
	if c != nil {
		return c, nil
	}
	c, err := pgwire.Connect(ctx, p.cfg)
	if err != nil {
		<-p.slots
		return nil, fmt.Errorf("postgres connect: %w", err)
	}
	return c, nil
}

// release gives c back: kept when healthy and outside a transaction,
// closed otherwise.
func (p *pgPool) release(c *pgwire.Conn) {
	keep := !c.IsClosed() && c.TxStatus() == 'I'
	if keep {
		p.mu.Lock()
		if !p.closed && len(p.idle) < cap(p.slots) {
			p.idle = append(p.idle, idleConn{c: c, since: time.Now()})
			c = nil
		}
		p.mu.Unlock()
	}
	if c != nil {
		c.Close()
	}
	<-p.slots
}

// ping checks that the server answers.
func (p *pgPool) ping(ctx context.Context) error {
	c, err := p.acquire(ctx)
	if err != nil {
		return err
	}
	defer p.release(c)
	return c.Ping(ctx)
}

// begin starts a transaction on a pooled connection; ending it (pgTx.commit
// or pgTx.rollback) gives the connection back.
func (p *pgPool) begin(ctx context.Context) (*pgTx, error) {
	c, err := p.acquire(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.SimpleExec(ctx, "BEGIN"); err != nil {
		p.release(c)
		return nil, fmt.Errorf("postgres begin: %w", err)
	}
	return &pgTx{pool: p, conn: c}, nil
}

// close waits for the connections in use to come back, then closes all.
func (p *pgPool) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	for range cap(p.slots) { // every slot free: nothing in use
		p.slots <- struct{}{}
	}
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, ic := range idle {
		ic.c.Close()
	}
}
