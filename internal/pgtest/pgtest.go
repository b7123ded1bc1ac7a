// Package pgtest gives tests a real PostgreSQL server.
//
// With ESIGN_TEST_DATABASE_URL set, tests use that server. Otherwise Main starts a
// throwaway server from the machine's PostgreSQL binaries (Debian's
// /usr/lib/postgresql/*/bin) in a temporary directory and stops it when the tests end.
// initdb refuses to run as root, so as root the server runs as the postgres user.
// Where there is neither, DSN skips with a visible message, except under CI (CI set)
// or with ESIGN_TEST_REQUIRE_POSTGRES set, where it fails.
package pgtest

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

var (
	once     sync.Once
	stopFn   = func() {}
	dsn      string
	startErr error
)

// Main starts PostgreSQL if needed, runs the tests, stops it and exits. Call it from
// TestMain.
func Main(m *testing.M) {
	os.Exit(Run(m))
}

// Run is Main without the exit, for a TestMain with its own clean-up. The server starts
// on the first DSN call (so fuzzing workers and runs that need no database start none)
// and stops when the tests end.
func Run(m *testing.M) int {
	defer func() { stopFn() }()
	return m.Run()
}

// DSN returns a connection string for a fresh database on the test server, or skips
// (fails under CI) when there is no server.
func DSN(t testing.TB) string {
	t.Helper()
	once.Do(func() { stopFn = start() })
	if dsn == "" {
		msg := "PostgreSQL tests skipped: no ESIGN_TEST_DATABASE_URL and no PostgreSQL binaries"
		if startErr != nil {
			msg = "PostgreSQL tests skipped: " + startErr.Error()
		}
		if os.Getenv("CI") != "" || os.Getenv("ESIGN_TEST_REQUIRE_POSTGRES") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	// One database per test, so tests cannot see each other's rows.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connecting to the test PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("t_%d_%d", time.Now().UnixNano(), os.Getpid())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("creating a test database: %v", err)
	}
	cfg, _ := pgx.ParseConfig(dsn)
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, name)
}

func start() (stop func()) {
	if v := os.Getenv("ESIGN_TEST_DATABASE_URL"); v != "" {
		dsn = v
		return func() {}
	}
	bin := findBinaries()
	if bin == "" {
		return func() {}
	}
	dir, err := os.MkdirTemp("", "esign-evidence-pg-")
	if err != nil {
		startErr = err
		return func() {}
	}
	var asUser []string
	if u, _ := user.Current(); u != nil && u.Uid == "0" {
		pg, err := user.Lookup("postgres")
		if err != nil {
			startErr = fmt.Errorf("running as root and there is no postgres user to run PostgreSQL as")
			return func() { _ = os.RemoveAll(dir) }
		}
		uid, _ := strconv.Atoi(pg.Uid)
		gid, _ := strconv.Atoi(pg.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			startErr = err
			return func() { _ = os.RemoveAll(dir) }
		}
		asUser = []string{"runuser", "-u", "postgres", "--"}
	}
	command := func(name string, args ...string) *exec.Cmd {
		all := append(append([]string{}, asUser...), append([]string{filepath.Join(bin, name)}, args...)...)
		return exec.Command(all[0], all[1:]...)
	}
	data := filepath.Join(dir, "data")
	if out, err := command("initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8").CombinedOutput(); err != nil {
		startErr = fmt.Errorf("initdb failed: %v: %s", err, out)
		return func() { _ = os.RemoveAll(dir) }
	}
	port, err := freePort()
	if err != nil {
		startErr = err
		return func() { _ = os.RemoveAll(dir) }
	}
	logFile, _ := os.Create(filepath.Join(os.TempDir(), fmt.Sprintf("esign-evidence-pg-%d.log", port)))
	srv, lifeline, err := launch(asUser, filepath.Join(bin, "postgres"), logFile, "-D", data, "-k", dir, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=200")
	if err != nil {
		startErr = fmt.Errorf("starting postgres: %v", err)
		return func() { _ = os.RemoveAll(dir) }
	}
	stop = func() {
		_ = lifeline.Close() // fast shutdown
		done := make(chan struct{})
		go func() { _ = srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			for _, pid := range descendants(srv.Process.Pid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		_ = os.RemoveAll(dir)
		if logFile != nil {
			_ = logFile.Close()
			_ = os.Remove(logFile.Name())
		}
	}
	candidate := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, candidate)
		cancel()
		if err == nil {
			_ = conn.Close(context.Background())
			dsn = candidate
			return stop
		}
		time.Sleep(100 * time.Millisecond)
	}
	startErr = fmt.Errorf("postgres did not accept connections within 30s")
	return stop
}

// launch starts postgres (as asUser, when set) under a small shell that holds it on a
// lifeline: the shell reads its standard input, a pipe from this process, and stops the
// server (fast shutdown) when the pipe closes, whether because the test closed it or
// because the test process died. A test binary that panics or is killed therefore leaves
// no server behind. The server inherits no file descriptor of this process but its
// standard streams: an inherited one (a lock file held by whoever started the tests)
// would otherwise stay held for as long as the server runs.
func launch(asUser []string, postgres string, logFile *os.File, args ...string) (*exec.Cmd, io.Closer, error) {
	markInheritedCloseOnExec()
	script := `"$0" "$@" & pid=$!; trap 'kill -INT $pid 2>/dev/null' EXIT; read _ || true; kill -INT $pid 2>/dev/null; wait $pid`
	all := append(append([]string{}, asUser...), append([]string{"sh", "-c", script, postgres}, args...)...)
	cmd := exec.Command(all[0], all[1:]...)
	if logFile != nil {
		cmd.Stdout, cmd.Stderr = logFile, logFile
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	return cmd, stdin, nil
}

// markInheritedCloseOnExec marks every file descriptor above the standard streams
// close-on-exec. Go opens its own that way; this catches those inherited from the
// process that started the tests.
func markInheritedCloseOnExec() {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

// findBinaries returns the newest /usr/lib/postgresql/N/bin holding initdb, or "".
func findBinaries() string {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(matches, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[i]))))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[j]))))
		return vi > vj
	})
	if len(matches) == 0 {
		if p, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p)
		}
		return ""
	}
	return filepath.Dir(matches[0])
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Server is a PostgreSQL server of a test's own, which the test may stop, start, freeze
// (SIGSTOP) and thaw (SIGCONT) to see how its code meets a store that goes away or
// hangs. It keeps its data and port across a stop and a start.
type Server struct {
	t        testing.TB
	bin      string
	asUser   []string
	dir      string
	data     string
	port     int
	cmd      *exec.Cmd
	lifeline io.Closer
	exited   chan struct{}
}

// Dedicated starts a Server for t, removed when t ends. It skips (fails under CI) where
// there are no PostgreSQL binaries; an external ESIGN_TEST_DATABASE_URL cannot serve,
// since the test must control the process.
func Dedicated(t testing.TB) *Server {
	t.Helper()
	bin := findBinaries()
	if bin == "" {
		msg := "dedicated PostgreSQL tests skipped: no PostgreSQL binaries"
		if os.Getenv("CI") != "" || os.Getenv("ESIGN_TEST_REQUIRE_POSTGRES") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir, err := os.MkdirTemp("", "esign-evidence-pgd-")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, bin: bin, dir: dir, data: filepath.Join(dir, "data")}
	t.Cleanup(func() {
		s.Thaw()
		s.Stop()
		_ = os.RemoveAll(dir)
	})
	if u, _ := user.Current(); u != nil && u.Uid == "0" {
		pg, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal("running as root and there is no postgres user to run PostgreSQL as")
		}
		uid, _ := strconv.Atoi(pg.Uid)
		gid, _ := strconv.Atoi(pg.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		s.asUser = []string{"runuser", "-u", "postgres", "--"}
	}
	if out, err := s.command("initdb", "-D", s.data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8").CombinedOutput(); err != nil {
		t.Fatalf("initdb failed: %v: %s", err, out)
	}
	if s.port, err = freePort(); err != nil {
		t.Fatal(err)
	}
	s.Start()
	return s
}

func (s *Server) command(name string, args ...string) *exec.Cmd {
	all := append(append([]string{}, s.asUser...), append([]string{filepath.Join(s.bin, name)}, args...)...)
	return exec.Command(all[0], all[1:]...)
}

// DSN is the connection string of the server's postgres database.
func (s *Server) DSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
}

// Start starts the server (again) and waits until it accepts connections.
func (s *Server) Start() {
	s.t.Helper()
	cmd, lifeline, err := launch(s.asUser, filepath.Join(s.bin, "postgres"), nil, "-D", s.data, "-k", s.dir, "-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=100")
	if err != nil {
		s.t.Fatalf("starting postgres: %v", err)
	}
	s.cmd, s.lifeline, s.exited = cmd, lifeline, make(chan struct{})
	go func() { _ = cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, s.DSN())
		cancel()
		if err == nil {
			_ = conn.Close(context.Background())
			return
		}
		select {
		case <-s.exited:
			s.t.Fatal("postgres exited at start")
		case <-time.After(100 * time.Millisecond):
		}
	}
	s.t.Fatal("postgres did not accept connections within 30s")
}

// Stop shuts the server down (fast shutdown: connections are closed) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.lifeline.Close() // fast shutdown
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		for _, pid := range descendants(s.cmd.Process.Pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		<-s.exited
	}
	s.cmd = nil
}

// Freeze stops every process of the server with SIGSTOP: connections stay open and
// nothing answers, as with a hung host.
func (s *Server) Freeze() { s.signalAll(syscall.SIGSTOP) }

// Thaw resumes a frozen server with SIGCONT.
func (s *Server) Thaw() { s.signalAll(syscall.SIGCONT) }

// signalAll signals the process started and every descendant of it, by process ID
// (runuser may put PostgreSQL in a session of its own, out of the process group).
func (s *Server) signalAll(sig syscall.Signal) {
	if s.cmd == nil {
		return
	}
	for _, pid := range descendants(s.cmd.Process.Pid) {
		_ = syscall.Kill(pid, sig)
	}
}

// descendants returns root and every process below it, from /proc.
func descendants(root int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid …": comm may hold spaces, so read after the last ')'.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		children[ppid] = append(children[ppid], pid)
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}
