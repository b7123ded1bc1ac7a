package upstream

import (
	"context"
	"net"
	"sync"
)

// WriteWatcher is implemented by the connections the client's transport dials: f runs
// each time a write to the connection has returned, until stop is called. It tells when
// a request's bytes have actually left the process: net/http's client trace reports a
// request written (WroteRequest) before its buffered bytes are flushed to the socket.
type WriteWatcher interface {
	WatchWrites(f func()) (stop func())
}

// watchedConn is a dialled connection that runs its watchers after each write.
type watchedConn struct {
	net.Conn
	mu       sync.Mutex
	watchers map[*func()]struct{}
}

var _ WriteWatcher = (*watchedConn)(nil)

func (c *watchedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.mu.Lock()
	for f := range c.watchers {
		(*f)()
	}
	c.mu.Unlock()
	return n, err
}

// WatchWrites implements WriteWatcher.
func (c *watchedConn) WatchWrites(f func()) (stop func()) {
	p := &f
	c.mu.Lock()
	if c.watchers == nil {
		c.watchers = map[*func()]struct{}{}
	}
	c.watchers[p] = struct{}{}
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		delete(c.watchers, p)
		c.mu.Unlock()
	}
}

// watchingDialer wraps dial's connections so that their writes can be watched.
func watchingDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &watchedConn{Conn: c}, nil
	}
}

// WatcherOf is the WriteWatcher under a connection net/http hands a client trace
// (GotConnInfo.Conn): the connection itself, or the one under its TLS.
func WatcherOf(c net.Conn) (WriteWatcher, bool) {
	for range 2 {
		if w, ok := c.(WriteWatcher); ok {
			return w, true
		}
		nc, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil, false
		}
		c = nc.NetConn()
	}
	return nil, false
}
