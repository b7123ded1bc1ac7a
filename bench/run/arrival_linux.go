package main

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// arrivalListener accepts TCP connections whose reads carry the kernel's receive
// timestamp (SO_TIMESTAMPNS): the instant each request's bytes reached this host, which
// is what e签宝's edge counts, however late this process then gets a core to read them.
type arrivalListener struct{ net.Listener }

func listenArrivals(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return arrivalListener{l}, nil
}

func (l arrivalListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := c.(*net.TCPConn)
	rc, err := tc.SyscallConn()
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	}); err != nil || serr != nil {
		_ = c.Close()
		return nil, errors.Join(err, serr)
	}
	return &arrivalConn{TCPConn: tc, rc: rc}, nil
}

// arrivalConn reads with recvmsg and keeps the kernel timestamp of the first read that
// returned data since the last takeArrival.
type arrivalConn struct {
	*net.TCPConn
	rc syscall.RawConn

	mu    sync.Mutex
	first time.Time
	oob   [128]byte
}

func (c *arrivalConn) Read(b []byte) (int, error) {
	var (
		n, oobn int
		err     error
	)
	if rerr := c.rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, err = syscall.Recvmsg(int(fd), b, c.oob[:], 0)
		return err != syscall.EAGAIN
	}); rerr != nil {
		return 0, rerr
	}
	if err != nil {
		return 0, err
	}
	if n == 0 && len(b) > 0 {
		return 0, io.EOF
	}
	if msgs, perr := syscall.ParseSocketControlMessage(c.oob[:oobn]); perr == nil {
		for _, m := range msgs {
			if m.Header.Level == syscall.SOL_SOCKET && m.Header.Type == syscall.SO_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(syscall.Timespec{})) {
				ts := (*syscall.Timespec)(unsafe.Pointer(&m.Data[0]))
				c.mu.Lock()
				if c.first.IsZero() {
					c.first = time.Unix(0, ts.Nano())
				}
				c.mu.Unlock()
			}
		}
	}
	return n, nil
}

// takeArrival returns the kernel timestamp of the first data read since the last call
// (zero if none carried one) and starts over.
func (c *arrivalConn) takeArrival() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.first
	c.first = time.Time{}
	return t
}
