package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// inProcess is the service started once per test process by run() itself (demo mode,
// loopback, port 0), so that fuzzing sees coverage of the whole path.
var inProcess struct {
	once               sync.Once
	grpcAddr, httpAddr string
	conn               *grpc.ClientConn
	err                error
}

// servingWriter discards the log but reads the listeners' addresses from it.
type servingWriter struct {
	mu    sync.Mutex
	addrs chan [2]string
	buf   []byte
}

func (w *servingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.addrs == nil {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		var m map[string]any
		if json.Unmarshal(w.buf[:i], &m) == nil && m["msg"] == "serving" {
			w.addrs <- [2]string{m["grpc_addr"].(string), m["http_addr"].(string)}
			w.addrs, w.buf = nil, nil
			return len(p), nil
		}
		w.buf = w.buf[i+1:]
	}
}

func startInProcess(tb testing.TB) (grpcAddr, httpAddr string, conn *grpc.ClientConn) {
	tb.Helper()
	inProcess.once.Do(func() {
		w := &servingWriter{addrs: make(chan [2]string, 1)}
		addrs := w.addrs
		errc := make(chan error, 1)
		go func() {
			errc <- run(context.Background(), []string{"-simulate", "-log-level", "info",
				"-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-admin-addr", ""}, w)
		}()
		select {
		case a := <-addrs:
			inProcess.grpcAddr, inProcess.httpAddr = a[0], a[1]
		case err := <-errc:
			inProcess.err = err
			return
		case <-time.After(30 * time.Second):
			inProcess.err = errors.New("the service did not start")
			return
		}
		inProcess.conn, inProcess.err = grpc.NewClient(inProcess.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	})
	if inProcess.err != nil {
		tb.Fatal(inProcess.err)
	}
	return inProcess.grpcAddr, inProcess.httpAddr, inProcess.conn
}

// rawCodec sends and receives message bytes as they are, so a test can put any bytes
// on the wire as a gRPC message.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*(v.(*[]byte)))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*[]byte)) = data.Materialize()
	return nil
}

// fuzzMethods are the methods the gRPC fuzz target calls; the first byte of the input
// picks one.
var fuzzMethods = []struct {
	name   string
	stream bool
}{
	{"/esign.evidence.v1.EvidenceService/CreatePersonalEvidencePoint", false},
	{"/esign.evidence.v1.EvidenceService/GetSubmission", false},
	{"/esign.evidence.v1.EvidenceService/UploadFile", true},
	{"/grpc.health.v1.Health/Check", false},
}

// checkContract fails unless err is a status inside the error contract: a google.rpc
// Status with an ErrorInfo of this service's domain, never UNKNOWN, never the INTERNAL
// that README reserves for bugs and e签宝's own misbehaviour.
func checkContract(t *testing.T, what string, err error) *status.Status {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("%s: not a gRPC status: %v", what, err)
	}
	if st.Code() == codes.Unknown || (st.Code() == codes.Internal && !hasReason(st, "ESIGN_")) {
		t.Fatalf("%s: %v outside the error contract: %s", what, st.Code(), st.Message())
	}
	if errorInfo(st) == nil {
		t.Fatalf("%s: %v %q has no ErrorInfo", what, st.Code(), st.Message())
	}
	return st
}

func errorInfo(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.GetDomain() == "esign-evidence" {
			return ei
		}
	}
	return nil
}

func hasReason(st *status.Status, prefix string) bool {
	ei := errorInfo(st)
	return ei != nil && strings.HasPrefix(ei.GetReason(), prefix)
}

// FuzzGRPCBytes sends arbitrary bytes as the request message of each gRPC method over a
// real connection: every answer is a success or an error inside the contract.
func FuzzGRPCBytes(f *testing.F) {
	f.Add(byte(0), []byte{})
	f.Add(byte(0), []byte{0x0a, 0x02, 'a', 0xff})               // eviName, invalid UTF-8
	f.Add(byte(1), []byte{0x0a, 0x05, 'o', 'r', 'd', 'e', 'r'}) // truncated string
	f.Add(byte(2), []byte{0x0a, 0x07, 0x0a, 0x05, 'a', 0x00, '.', 'j', 'p'})
	f.Add(byte(2), []byte{0x0a, 0x06, 0x0a, 0x04, 'a', 0xff, '.', 'j'})
	f.Add(byte(3), []byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, pick byte, payload []byte) {
		_, _, conn := startInProcess(t)
		m := fuzzMethods[int(pick)%len(fuzzMethods)]
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var reply []byte
		var err error
		if m.stream {
			var s grpc.ClientStream
			s, err = conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, m.name, grpc.ForceCodecV2(rawCodec{}))
			if err == nil {
				_ = s.SendMsg(&payload)
				_ = s.CloseSend()
				err = s.RecvMsg(&reply)
			}
		} else {
			err = conn.Invoke(ctx, m.name, &payload, &reply, grpc.ForceCodecV2(rawCodec{}))
		}
		if err != nil {
			checkContract(t, m.name, err)
		}
	})
}

// FuzzUploadFileName posts a small file under an arbitrary name over REST: the answer
// is a success only for a name that is valid UTF-8 without control characters, and
// every refusal is a google.rpc.Status with an ErrorInfo, never a 5xx.
func FuzzUploadFileName(f *testing.F) {
	for _, name := range []string{"id-front.jpg", "a\xff.jpg", "a\x00.jpg", "a\n.jpg", "证件.png", "a.pdf\u202e", "noext", "a/b.jpg", "😀.jpg"} {
		f.Add(name)
	}
	f.Fuzz(func(t *testing.T, name string) {
		_, httpAddr, _ := startInProcess(t)
		resp, err := http.Post("http://"+httpAddr+"/v1/files?fileName="+url.QueryEscape(name), "application/octet-stream", strings.NewReader("file bytes"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		clean := utf8.ValidString(name) && !strings.ContainsFunc(name, unicode.IsControl)
		switch {
		case resp.StatusCode == http.StatusOK:
			if !clean {
				t.Fatalf("accepted a file name with a control character or invalid UTF-8: %q", name)
			}
		case resp.StatusCode == http.StatusBadRequest:
			var st spb.Status
			if err := protojson.Unmarshal(body, &st); err != nil {
				t.Fatalf("400 body is not a google.rpc.Status: %v: %s", err, body)
			}
			if errorInfo(status.FromProto(&st)) == nil {
				t.Fatalf("400 without ErrorInfo: %s", body)
			}
			if !clean && !strings.Contains(string(body), "fileName") {
				t.Fatalf("400 for %q does not name fileName: %s", name, body)
			}
		default:
			t.Fatalf("file name %q: HTTP %d %s", name, resp.StatusCode, body)
		}
	})
}
