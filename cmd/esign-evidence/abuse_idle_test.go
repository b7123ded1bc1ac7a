package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestAbuseSilentGRPCPeers: connections that complete the HTTP/2 handshake and then never
// answer the server's pings are closed after GRPC_KEEPALIVE_TIME + GRPC_KEEPALIVE_TIMEOUT,
// while a peer that answers its pings, equally without calls, stays connected.
func TestAbuseSilentGRPCPeers(t *testing.T) {
	const (
		silent  = 60
		pingGap = time.Second
		answer  = time.Second
	)
	tg := startTarget(t, "", fmt.Sprintf("GRPC_KEEPALIVE_TIME=%s", pingGap), fmt.Sprintf("GRPC_KEEPALIVE_TIMEOUT=%s", answer))

	// handshake opens a connection that has sent the client preface and its settings.
	handshake := func() (net.Conn, *http2.Framer) {
		c, err := net.DialTimeout("tcp", tg.grpcAddr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
			t.Fatal(err)
		}
		fr := http2.NewFramer(c, c)
		if err := fr.WriteSettings(); err != nil {
			t.Fatal(err)
		}
		return c, fr
	}

	// A peer that answers: it acknowledges every ping, and so must still be connected
	// once every silent peer has been closed.
	good, goodFr := handshake()
	defer good.Close()
	goodClosed := make(chan error, 1)
	go func() {
		for {
			f, err := goodFr.ReadFrame()
			if err != nil {
				goodClosed <- err
				return
			}
			if p, ok := f.(*http2.PingFrame); ok && !p.IsAck() {
				if err := goodFr.WritePing(true, p.Data); err != nil {
					goodClosed <- err
					return
				}
			}
		}
	}()

	var closed, early atomic.Int64
	var slowest atomic.Int64
	tg.underAttack(func() {
		var wg sync.WaitGroup
		for range silent {
			c, fr := handshake()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				start := time.Now()
				// Read everything the server sends (its settings, then its pings) and
				// answer nothing.
				for {
					if _, err := fr.ReadFrame(); err != nil {
						took := time.Since(start)
						var ne net.Error
						if errors.As(err, &ne) && ne.Timeout() {
							t.Errorf("a silent peer was still connected after %v", took.Round(time.Millisecond))
							return
						}
						if took < pingGap {
							early.Add(1)
						}
						closed.Add(1)
						for {
							if old := slowest.Load(); int64(took) <= old || slowest.CompareAndSwap(old, int64(took)) {
								break
							}
						}
						return
					}
				}
			}()
		}
		wg.Wait()
	})
	t.Logf("%d silent peers closed, the last after %v", closed.Load(), time.Duration(slowest.Load()).Round(time.Millisecond))
	if closed.Load() != silent {
		t.Errorf("%d of %d silent peers closed", closed.Load(), silent)
	}
	if early.Load() > 0 {
		t.Errorf("%d silent peers were closed before the first ping was due", early.Load())
	}
	select {
	case err := <-goodClosed:
		t.Errorf("a peer that answers its pings was disconnected: %v", err)
	default:
	}
}

// TestAbuseIdleRESTConnections: keep-alive connections that made one request and then
// sit idle are closed after IDLE_TIMEOUT, and their descriptors come back.
func TestAbuseIdleRESTConnections(t *testing.T) {
	const (
		conns = 100
		idle  = 2 * time.Second
	)
	tg := startTarget(t, "", fmt.Sprintf("IDLE_TIMEOUT=%s", idle))
	var closed, early atomic.Int64
	tg.underAttack(func() {
		var wg sync.WaitGroup
		for range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.DialTimeout("tcp", tg.httpAddr, 5*time.Second)
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: esign-evidence\r\n\r\n"); err != nil {
					t.Error(err)
					return
				}
				br := bufio.NewReader(c)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK || resp.Close {
					t.Errorf("health answered %d, close %v: want a kept-alive 200", resp.StatusCode, resp.Close)
					return
				}
				// Idle now: the server must close the connection.
				start := time.Now()
				_, err = io.Copy(io.Discard, br)
				took := time.Since(start)
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Errorf("an idle keep-alive connection was still open after %v", took.Round(time.Millisecond))
					return
				}
				if took < idle/2 {
					early.Add(1)
				}
				closed.Add(1)
			}()
		}
		wg.Wait()
	})
	if closed.Load() != conns {
		t.Errorf("%d of %d idle connections closed by the server", closed.Load(), conns)
	}
	if early.Load() > 0 {
		t.Errorf("%d idle connections were closed well before IDLE_TIMEOUT", early.Load())
	}
}
