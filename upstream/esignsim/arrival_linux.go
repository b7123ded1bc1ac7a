package esignsim

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// ListenArrivals listens on addr (TCP) for a server that counts e签宝 calls as e签宝's
// edge would: by the instant each request's bytes reached the host (the kernel's receive
// timestamp, SO_TIMESTAMPNS), however late the serving process then gets a core to read
// them. Serve it with ConnContext set to ArrivalConnContext, and read the instants with
// TakeArrival.
//
// The option is set on the listening socket, which its connections inherit from the
// handshake on: the first request on a new connection can arrive before Accept returns.
func ListenArrivals(addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = stampArrivals(fd) }); err != nil {
			return err
		}
		return serr
	}}
	l, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	return arrivalListener{l}, nil
}

type arrivalListener struct{ net.Listener }

func (l arrivalListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c, nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = stampArrivals(fd) }); err != nil || serr != nil {
		_ = c.Close()
		return nil, errors.Join(err, serr)
	}
	return &arrivalConn{TCPConn: tc, rc: rc}, nil
}

func stampArrivals(fd uintptr) error {
	return syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
}

// arrivalConn reads with recvmsg and keeps the kernel timestamp of the first read that
// returned data since the last take.
type arrivalConn struct {
	*net.TCPConn
	rc syscall.RawConn

	mu    sync.Mutex
	first time.Time
	oob   [64]byte
}

func (c *arrivalConn) Read(b []byte) (int, error) {
	var (
		n, oobn int
		err     error
	)
	if rerr := c.rc.Read(func(fd uintptr) bool {
		for {
			n, oobn, _, _, err = syscall.Recvmsg(int(fd), b, c.oob[:], 0)
			if err != syscall.EINTR {
				return err != syscall.EAGAIN
			}
		}
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

func (c *arrivalConn) take() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.first
	c.first = time.Time{}
	return t
}

type arrivalKey struct{}

// ArrivalConnContext is an http.Server's ConnContext for a listener from ListenArrivals.
func ArrivalConnContext(ctx context.Context, c net.Conn) context.Context {
	if ac, ok := c.(*arrivalConn); ok {
		return context.WithValue(ctx, arrivalKey{}, ac)
	}
	return ctx
}

// TakeArrival is when the request of ctx (a handler's) reached the host: the kernel's
// receive timestamp of the first read of data on its connection since the last take (the
// last segment that read consumed; a small request comes in one). Call it in every
// request's handler once the whole body is read: the client sends the connection's next
// request only after this one's answer, so the bytes read since the last take are this
// request's (a client pipelining requests would break this). ok is false when the
// listener was not ListenArrivals's or the kernel gave no timestamp.
func TakeArrival(ctx context.Context) (time.Time, bool) {
	ac, ok := ctx.Value(arrivalKey{}).(*arrivalConn)
	if !ok {
		return time.Time{}, false
	}
	t := ac.take()
	return t, !t.IsZero()
}
