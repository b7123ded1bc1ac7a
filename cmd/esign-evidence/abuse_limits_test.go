package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
)

func reasonOf(err error) (codes.Code, string) {
	st := status.Convert(err)
	if ei := errorInfo(st); ei != nil {
		return st.Code(), ei.GetReason()
	}
	return st.Code(), ""
}

func badRequestFields(st *status.Status) []string {
	var out []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				out = append(out, v.GetField())
			}
		}
	}
	return out
}

// uploadFiles counts the upload temporary files of the target in dir: open (they have
// no name) or named there.
func (tg *target) uploadFiles(dir string) int {
	tg.t.Helper()
	named, open := spoolFiles(tg.t, tg.cmd.Process.Pid, dir)
	return max(named, open)
}

// TestAbuseStalledUploads: 300 UploadFile streams over 6 connections that send their
// info (half of them one chunk too) and then nothing. With UPLOAD_IDLE_TIMEOUT=3s and
// MAX_CONCURRENT_UPLOADS=200: the streams beyond 200 are refused at once with
// RESOURCE_EXHAUSTED, the others end after 3 s of silence with DEADLINE_EXCEEDED, a
// temporary file exists only for a stream that sent bytes, and none is left afterwards.
func TestAbuseStalledUploads(t *testing.T) {
	const (
		streams = 300
		conns   = 6
		cap     = 200
		idle    = 3 * time.Second
	)
	tmp := t.TempDir()
	tg := startTarget(t, "", "UPLOAD_IDLE_TIMEOUT=3s", fmt.Sprintf("MAX_CONCURRENT_UPLOADS=%d", cap), "TMPDIR="+tmp)
	clients := make([]evidencev1.EvidenceServiceClient, conns)
	for i := range clients {
		c, err := grpc.NewClient(tg.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[i] = evidencev1.NewEvidenceServiceClient(c)
	}
	type result struct {
		code      codes.Code
		reason    string
		afterMsg  time.Duration
		sentChunk bool
	}
	results := make(chan result, streams)
	var maxFiles atomic.Int64
	var peakCalls float64
	tg.underAttack(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		for i := range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := clients[i%conns].UploadFile(tg.auth(ctx, tg.token))
				if err != nil {
					results <- result{code: status.Code(err)}
					return
				}
				_ = s.Send(&evidencev1.UploadFileRequest{Part: &evidencev1.UploadFileRequest_Info{Info: &evidencev1.FileInfo{FileName: "stall.jpg"}}})
				if i%2 == 1 {
					_ = s.Send(&evidencev1.UploadFileRequest{Part: &evidencev1.UploadFileRequest_Chunk{Chunk: make([]byte, 1024)}})
				}
				last := time.Now()
				err = s.RecvMsg(&evidencev1.UploadFileResponse{}) // blocks until the server ends the stream
				code, reason := reasonOf(err)
				results <- result{code: code, reason: reason, afterMsg: time.Since(last), sentChunk: i%2 == 1}
			}()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		for {
			if n := int64(tg.uploadFiles(tmp)); n > maxFiles.Load() {
				maxFiles.Store(n)
			}
			peakCalls = max(peakCalls, metric(tg.metrics(), "esign_evidence_calls_in_flight"))
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	close(results)
	var refused, timedOut, admittedWithBytes int
	var slowest time.Duration
	for r := range results {
		switch {
		case r.code == codes.ResourceExhausted && r.reason == "TOO_MANY_UPLOADS":
			refused++
		case r.code == codes.DeadlineExceeded && r.reason == "UPLOAD_IDLE_TIMEOUT":
			timedOut++
			if r.sentChunk {
				admittedWithBytes++
			}
			slowest = max(slowest, r.afterMsg)
			if r.afterMsg < idle-500*time.Millisecond || r.afterMsg > idle+8*time.Second {
				t.Errorf("a stalled upload ended %v after its last message (UPLOAD_IDLE_TIMEOUT %v)", r.afterMsg, idle)
			}
		default:
			t.Errorf("a stalled upload ended with %v %q", r.code, r.reason)
		}
	}
	t.Logf("%d refused beyond the cap, %d ended by the idle timeout (slowest %v after the last message), at most %d temporary files at once",
		refused, timedOut, slowest.Round(time.Millisecond), maxFiles.Load())
	if refused == 0 || timedOut == 0 || refused+timedOut != streams {
		t.Errorf("want some refused and the rest timed out: %d refused, %d timed out of %d", refused, timedOut, streams)
	}
	// Calls in progress at once: the admitted uploads and at most two normal calls.
	if peakCalls > cap+2 {
		t.Errorf("%v calls in progress at once with MAX_CONCURRENT_UPLOADS=%d", peakCalls, cap)
	}
	// Only the admitted streams that sent bytes hold a file.
	if maxFiles.Load() > int64(admittedWithBytes) {
		t.Errorf("%d temporary files at once for %d admitted uploads that sent bytes: files are created before the first bytes arrive",
			maxFiles.Load(), admittedWithBytes)
	}
	if n := tg.uploadFiles(tmp); n != 0 {
		t.Errorf("%d temporary upload files left after the streams ended", n)
	}
	body := tg.metrics()
	upload := `method="/esign.evidence.v1.EvidenceService/UploadFile"`
	if got := metricSum(body, "esign_evidence_calls_total", upload, `code="ResourceExhausted"`); int(got) != refused {
		t.Errorf("refused uploads counted %v, want %d", got, refused)
	}
	if got := metricSum(body, "esign_evidence_calls_total", upload, `code="DeadlineExceeded"`); int(got) != timedOut {
		t.Errorf("timed-out uploads counted %v, want %d", got, timedOut)
	}
	if got := strings.Count(tg.stderr.String(), `"reason":"UPLOAD_IDLE_TIMEOUT"`); got != timedOut {
		t.Errorf("access lines for timed-out uploads: %d, want %d", got, timedOut)
	}
}

// TestAbuseSlowBodies: 200 REST connections that send their headers and then one body
// byte every 500 ms. With READ_TIMEOUT=3s each is answered 408 (a google.rpc.Status) or
// closed within the timeout and a margin, instead of staying open.
func TestAbuseSlowBodies(t *testing.T) {
	const (
		conns   = 200
		timeout = 3 * time.Second
		bound   = 15 * time.Second // the attack gives up by itself after this
	)
	tg := startTarget(t, "", "READ_TIMEOUT=3s")
	var answered408, closed atomic.Int64
	var slowest atomic.Int64
	tg.underAttack(func() {
		var wg sync.WaitGroup
		for i := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				path, contentType := "/v3/evidence/evi-point/psn-realname", "application/json"
				if i%4 == 0 {
					path, contentType = "/v1/files?fileName=slow.jpg", "application/octet-stream"
				}
				c, err := net.DialTimeout("tcp", tg.httpAddr, 5*time.Second)
				if err != nil {
					t.Errorf("dial: %v", err)
					return
				}
				defer c.Close()
				start := time.Now()
				_ = c.SetDeadline(start.Add(bound))
				fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer %s\r\nContent-Type: %s\r\nContent-Length: 1000\r\n\r\n{", path, tg.token, contentType)
				got := make(chan string, 1)
				go func() {
					line, _ := bufio.NewReader(c).ReadString('\n')
					got <- line
				}()
				tick := time.NewTicker(500 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case line := <-got:
						took := time.Since(start)
						if took > timeout+6*time.Second {
							t.Errorf("a slow body was ended only after %v", took)
						}
						for {
							old := slowest.Load()
							if int64(took) <= old || slowest.CompareAndSwap(old, int64(took)) {
								break
							}
						}
						switch {
						case strings.HasPrefix(line, "HTTP/1.1 408"):
							answered408.Add(1)
						case line == "":
							closed.Add(1)
						default:
							t.Errorf("a slow body was answered %q", strings.TrimSpace(line))
						}
						return
					case <-tick.C:
						if time.Since(start) > bound {
							t.Errorf("a slow body is still open after %v", bound)
							return
						}
						_, _ = c.Write([]byte(" "))
					}
				}
			}()
		}
		wg.Wait()
	})
	t.Logf("%d answered 408, %d closed; the slowest ended after %v", answered408.Load(), closed.Load(), time.Duration(slowest.Load()).Round(time.Millisecond))
	if answered408.Load() == 0 {
		t.Error("no slow body was answered 408")
	}
	// Each refusal has its line in the REST edge's access log and is counted.
	// A request that became a call (an upload) has the call's line, the others the REST
	// edge's.
	logs := tg.stderr.String()
	if got := strings.Count(logs, `"status":408`) + strings.Count(logs, `"reason":"REQUEST_TIMEOUT"`); int64(got) != answered408.Load() {
		t.Errorf("%d access lines with status 408 or reason REQUEST_TIMEOUT for %d refused slow bodies", got, answered408.Load())
	}
	if got := metricSum(tg.metrics(), "esign_evidence_http_requests_total", `code="408"`); int64(got) != answered408.Load() {
		t.Errorf("%v requests counted with code 408 for %d refused slow bodies", got, answered408.Load())
	}
}

// grpcStatusOf reads a gRPC status answered over a raw HTTP/2 connection.
type rawAnswer struct {
	code    string
	details bool
}

// rawGRPC sends one request with frames built by hand: the message bytes msg behind a
// 5-byte gRPC prefix whose flag and length are given, then END_STREAM. It returns the
// grpc-status the server answers and whether it carries details.
func rawGRPC(t *testing.T, addr, method, token string, flag byte, length uint32, msg []byte) rawAnswer {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", method}, {":authority", "test"},
		{"content-type", "application/grpc"}, {"te", "trailers"}, {"authorization", "Bearer " + token}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	prefix := make([]byte, 5)
	prefix[0] = flag
	binary.BigEndian.PutUint32(prefix[1:], length)
	if err := fr.WriteData(1, true, append(prefix, msg...)); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("%s: no gRPC status: %v", method, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if st := f.PseudoValue("status"); st != "" && st != "200" {
				t.Fatalf("%s: HTTP/2 status %s", method, st)
			}
			var a rawAnswer
			for _, h := range f.Fields {
				switch h.Name {
				case "grpc-status":
					a.code = h.Value
				case "grpc-status-details-bin":
					a.details = true
				}
			}
			if a.code != "" {
				return a
			}
		case *http2.RSTStreamFrame:
			t.Fatalf("%s: stream reset %v instead of a status", method, f.ErrCode)
		case *http2.GoAwayFrame:
			t.Fatalf("%s: GOAWAY %v instead of a status", method, f.ErrCode)
		}
	}
}

// wireString encodes one string field of md named jsonName with raw (possibly invalid)
// bytes.
func wireString(md protoreflect.MessageDescriptor, jsonName string, raw []byte) []byte {
	fd := md.Fields().ByJSONName(jsonName)
	b := protowire.AppendTag(nil, fd.Number(), protowire.BytesType)
	return protowire.AppendBytes(b, raw)
}

// TestAbuseMalformedGRPC: malformed protobuf and invalid UTF-8, sent through a real
// connection and as raw HTTP/2 frames, are INVALID_ARGUMENT with an ErrorInfo (and a
// BadRequest naming the field where one can be named), each with an access line and
// counted; nothing is INTERNAL.
func TestAbuseMalformedGRPC(t *testing.T) {
	tg := startTarget(t, "", "MAX_REQUEST_BYTES=65536")
	file := evidencev1.File_esign_evidence_v1_evidence_proto.Messages()
	createMD := file.ByName("CreatePersonalEvidencePointRequest")
	getMD := file.ByName("GetSubmissionRequest")
	infoMD := file.ByName("FileInfo")
	uploadMD := file.ByName("UploadFileRequest")
	info := wireString(infoMD, "fileName", []byte("a\xff.jpg"))
	uploadInfo := protowire.AppendBytes(protowire.AppendTag(nil, uploadMD.Fields().ByJSONName("info").Number(), protowire.BytesType), info)

	// own: refused by gRPC's own framing checks before any of this service's code runs;
	// the caller gets gRPC's status (without details), the access log and the metrics
	// this service's.
	cases := []struct {
		name, method string
		stream       bool
		payload      []byte
		code         codes.Code
		field        string
		own          bool
	}{
		{"create: eviName not UTF-8", "/esign.evidence.v1.EvidenceService/CreatePersonalEvidencePoint", false, wireString(createMD, "eviName", []byte("a\xffb")), codes.InvalidArgument, "eviName", false},
		{"create: truncated field", "/esign.evidence.v1.EvidenceService/CreatePersonalEvidencePoint", false, append(protowire.AppendTag(nil, 5, protowire.BytesType), 40, 'a', 'b'), codes.InvalidArgument, "name", false},
		{"create: garbage", "/esign.evidence.v1.EvidenceService/CreatePersonalEvidencePoint", false, []byte{0xff, 0xff, 0xff, 0xff}, codes.InvalidArgument, "", false},
		{"get: customBizId not UTF-8", "/esign.evidence.v1.EvidenceService/GetSubmission", false, wireString(getMD, "customBizId", []byte{0xc3, 0x28}), codes.InvalidArgument, "customBizId", false},
		{"upload: fileName not UTF-8", "/esign.evidence.v1.EvidenceService/UploadFile", true, uploadInfo, codes.InvalidArgument, "info.fileName", false},
		{"health: garbage", "/grpc.health.v1.Health/Check", false, []byte{0x0a, 0x09, 'x'}, codes.InvalidArgument, "", false},
		{"too large", "/esign.evidence.v1.EvidenceService/CreatePersonalEvidencePoint", false, wireString(createMD, "mark", bytes.Repeat([]byte("m"), 70000)), codes.ResourceExhausted, "", true},
		{"unknown method", "/esign.evidence.v1.EvidenceService/Nope", false, nil, codes.Unimplemented, "", false},
	}
	before := tg.metrics()
	lines0 := strings.Count(tg.stderr.String(), `"msg":"call"`)
	calls := 0
	tg.underAttack(func() {
		for _, tc := range cases {
			ctx, cancel := context.WithTimeout(tg.auth(context.Background(), tg.token), 10*time.Second)
			var reply []byte
			var err error
			if tc.stream {
				var s grpc.ClientStream
				if s, err = tg.conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, tc.method, grpc.ForceCodecV2(rawCodec{})); err == nil {
					_ = s.SendMsg(&tc.payload)
					_ = s.CloseSend()
					err = s.RecvMsg(&reply)
				}
			} else {
				err = tg.conn.Invoke(ctx, tc.method, &tc.payload, &reply, grpc.ForceCodecV2(rawCodec{}))
			}
			cancel()
			calls++
			st := status.Convert(err)
			if st.Code() != tc.code {
				t.Errorf("%s: %v %q, want %v", tc.name, st.Code(), st.Message(), tc.code)
				continue
			}
			if errorInfo(st) == nil && !tc.own {
				t.Errorf("%s: no ErrorInfo", tc.name)
			}
			if fields := badRequestFields(st); tc.field != "" && (len(fields) == 0 || fields[0] != tc.field) {
				t.Errorf("%s: BadRequest fields %v, want %s", tc.name, fields, tc.field)
			}
		}
		// Broken gRPC framing, by hand-built frames: a message shorter than its prefix
		// says, and a compressed flag without a compression. gRPC itself answers these
		// (INTERNAL, no details) before any of this service's code runs; the service
		// logs and counts them as INVALID_ARGUMENT.
		for _, tc := range []struct {
			name   string
			flag   byte
			length uint32
			msg    []byte
		}{
			{"length beyond the data", 0, 100, []byte{0x0a, 0x01}},
			{"compressed flag without grpc-encoding", 1, 2, []byte{0x0a, 0x00}},
		} {
			a := rawGRPC(t, tg.grpcAddr, "/esign.evidence.v1.EvidenceService/CreatePersonalEvidencePoint", tg.token, tc.flag, tc.length, tc.msg)
			calls++
			if a.code == "" || a.code == "0" {
				t.Errorf("raw frames, %s: grpc-status %q", tc.name, a.code)
			}
		}
	})
	if got := strings.Count(tg.stderr.String(), `"msg":"call"`) - lines0; got < calls {
		t.Errorf("%d access lines for %d malformed calls", got, calls)
	}
	after := tg.metrics()
	if got := metricSum(after, "esign_evidence_calls_total", `code="InvalidArgument"`) - metricSum(before, "esign_evidence_calls_total", `code="InvalidArgument"`); got != float64(calls-2) {
		t.Errorf("%v InvalidArgument calls counted, want %d", got, calls-2)
	}
	if got := metricSum(after, "esign_evidence_calls_total", `method="(unknown)"`); got != 1 {
		t.Errorf("the unknown method counted %v times under (unknown)", got)
	}
	if strings.Contains(tg.stderr.String(), `"code":"Internal"`) {
		t.Errorf("a malformed request was logged as Internal")
	}
}

// restStatus decodes a REST error body as google.rpc.Status.
func restStatus(t *testing.T, body []byte) *status.Status {
	t.Helper()
	var p spb.Status
	if err := protojson.Unmarshal(body, &p); err != nil {
		t.Fatalf("not a google.rpc.Status: %v: %s", err, body)
	}
	return status.FromProto(&p)
}

// TestAbuseBadInputREST: file names with a control character or invalid UTF-8, and
// invalid UTF-8 in a JSON string, are 400 with a BadRequest naming the field; a missing
// or wrong token is 401 with an RFC 6750 Bearer challenge.
func TestAbuseBadInputREST(t *testing.T) {
	tg := startTarget(t, "", "MAX_REQUEST_BYTES=65536", "MAX_FILE_BYTES=4096")
	ctx := context.Background()
	tg.underAttack(func() {
		for _, tc := range []struct {
			path   string
			body   []byte
			reason string
		}{
			{"/v3/evidence/evi-point/psn-realname", bytes.Repeat([]byte(" "), 70000), "REQUEST_TOO_LARGE"},
			{"/v1/files?fileName=big.jpg", bytes.Repeat([]byte("x"), 5000), "FILE_TOO_LARGE"},
		} {
			code, body, err := tg.rest(ctx, http.MethodPost, tc.path, tc.body, tg.token)
			if err != nil {
				t.Fatal(err)
			}
			if ei := errorInfo(restStatus(t, body)); code != http.StatusRequestEntityTooLarge || ei == nil || ei.GetReason() != tc.reason {
				t.Errorf("%s with %d bytes: HTTP %d %s", tc.path, len(tc.body), code, body)
			}
		}
		req, _ := http.NewRequest(http.MethodGet, "http://"+tg.httpAddr+"/v1/submissions/x", nil)
		req.Header.Set("X-Padding", strings.Repeat("p", 128<<10))
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("128 KiB of headers: %v %v", resp, err)
		} else {
			resp.Body.Close()
		}

		for _, name := range []string{"a%FF.jpg", "a%00.jpg", "a%0A.jpg", "a%7F.jpg", "a%C2%85.jpg", "%ED%A0%80.jpg"} {
			code, body, err := tg.rest(ctx, http.MethodPost, "/v1/files?fileName="+name, []byte("bytes"), tg.token)
			if err != nil {
				t.Fatal(err)
			}
			if code != http.StatusBadRequest {
				t.Errorf("fileName=%s: HTTP %d %s", name, code, body)
				continue
			}
			st := restStatus(t, body)
			if errorInfo(st) == nil || !strings.Contains(strings.Join(badRequestFields(st), ","), "fileName") {
				t.Errorf("fileName=%s: %s", name, body)
			}
		}
		for _, name := range []string{"a\x00.jpg", "a\x1b.jpg"} {
			s, err := tg.api.UploadFile(tg.auth(ctx, tg.token))
			if err != nil {
				t.Fatal(err)
			}
			_ = s.Send(&evidencev1.UploadFileRequest{Part: &evidencev1.UploadFileRequest_Info{Info: &evidencev1.FileInfo{FileName: name}}})
			_, err = s.CloseAndRecv()
			if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(strings.Join(badRequestFields(st), ","), "fileName") {
				t.Errorf("gRPC file name %q: %v %v", name, st.Code(), badRequestFields(st))
			}
		}
		bad := bytes.Replace(tg.seed, []byte(`"eviName": "`), []byte("\"eviName\": \"\xff"), 1)
		if bytes.Equal(bad, tg.seed) {
			t.Fatal("seed has no eviName")
		}
		code, body, _ := tg.rest(ctx, http.MethodPost, "/v3/evidence/evi-point/psn-realname", bad, tg.token)
		if code != http.StatusBadRequest || !strings.Contains(strings.Join(badRequestFields(restStatus(t, body)), ","), "eviName") {
			t.Errorf("invalid UTF-8 in eviName: HTTP %d %s", code, body)
		}

		for _, tc := range []struct{ token, want string }{
			{"", `Bearer realm="esign-evidence"`},
			{"wrong-token-0123456789", `Bearer realm="esign-evidence", error="invalid_token"`},
		} {
			for _, path := range []string{"/v1/submissions/x", "/v1/files?fileName=a.jpg"} {
				method := http.MethodGet
				if strings.HasPrefix(path, "/v1/files") {
					method = http.MethodPost
				}
				req, _ := http.NewRequest(method, "http://"+tg.httpAddr+path, strings.NewReader("x"))
				if tc.token != "" {
					req.Header.Set("Authorization", "Bearer "+tc.token)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != tc.want {
					t.Errorf("%s %s with token %q: HTTP %d, WWW-Authenticate %q, want %q", method, path, tc.token, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), tc.want)
				}
				if st := restStatus(t, body); errorInfo(st) == nil {
					t.Errorf("401 without ErrorInfo: %s", body)
				}
			}
		}
	})
}

// TestAbuseConnections: with MAX_CONNECTIONS=60, 150 connections that send nothing:
// those beyond the bound are closed at once and counted, the others are closed when
// they have not sent their first bytes within READ_HEADER_TIMEOUT; a gRPC client that
// pings too often is sent away, and an idle gRPC connection is closed after
// GRPC_MAX_CONNECTION_IDLE.
func TestAbuseConnections(t *testing.T) {
	const (
		limit = 60
		flood = 150
	)
	tg := startTarget(t, "", fmt.Sprintf("MAX_CONNECTIONS=%d", limit), "READ_HEADER_TIMEOUT=2s", "GRPC_MAX_CONNECTION_IDLE=2s")
	var early, late atomic.Int64
	tg.underAttack(func() {
		var wg sync.WaitGroup
		for i := range flood {
			wg.Add(1)
			go func() {
				defer wg.Done()
				addr := tg.grpcAddr
				if i%2 == 1 {
					addr = tg.httpAddr
				}
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					early.Add(1) // refused by the kernel's backlog: refused all the same
					return
				}
				defer c.Close()
				start := time.Now()
				_ = c.SetReadDeadline(start.Add(15 * time.Second))
				_, err = io.Copy(io.Discard, c)
				took := time.Since(start)
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Errorf("an idle connection was still open after %v", took)
					return
				}
				if took < time.Second {
					early.Add(1)
				} else {
					late.Add(1)
				}
			}()
		}
		wg.Wait()

		// Pings more often than the enforcement policy allows: the server sends GOAWAY.
		c, err := net.DialTimeout("tcp", tg.grpcAddr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		_, _ = io.WriteString(c, http2.ClientPreface)
		fr := http2.NewFramer(c, c)
		_ = fr.WriteSettings()
		goaway := make(chan http2.ErrCode, 1)
		go func() {
			for {
				f, err := fr.ReadFrame()
				if err != nil {
					close(goaway)
					return
				}
				if g, ok := f.(*http2.GoAwayFrame); ok {
					goaway <- g.ErrCode
					return
				}
			}
		}()
		var got http2.ErrCode
		var sent bool
	ping:
		for i := range 20 {
			select {
			case code, ok := <-goaway:
				got, sent = code, ok
				break ping
			case <-time.After(50 * time.Millisecond):
				_ = fr.WritePing(false, [8]byte{byte(i)})
			}
		}
		if !sent {
			select {
			case code, ok := <-goaway:
				got, sent = code, ok
			case <-time.After(5 * time.Second):
			}
		}
		if !sent || got != http2.ErrCodeEnhanceYourCalm {
			t.Errorf("a ping flood got GOAWAY %v (sent %v), want ENHANCE_YOUR_CALM", got, sent)
		}
	})
	t.Logf("%d connections refused at once, %d closed after READ_HEADER_TIMEOUT", early.Load(), late.Load())
	if early.Load() == 0 || late.Load() == 0 || late.Load() > limit {
		t.Errorf("want some refused at once and at most %d closed later: %d and %d", limit, early.Load(), late.Load())
	}
	if got := metricSum(tg.metrics(), "esign_evidence_connections_refused_total"); got == 0 {
		t.Error("refused connections not counted")
	}

	// An idle gRPC connection is closed by the server after GRPC_MAX_CONNECTION_IDLE.
	idle, err := grpc.NewClient(tg.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if _, err := evidencev1.NewEvidenceServiceClient(idle).GetSubmission(tg.auth(context.Background(), tg.token), &evidencev1.GetSubmissionRequest{CustomBizId: "x"}); status.Code(err) != codes.NotFound {
		t.Fatalf("call on the idle connection: %v", err)
	}
	waitUntil(t, 10*time.Second, "idle gRPC connection closed by the server", func() (bool, string) {
		s := idle.GetState()
		return s == connectivity.Idle, s.String()
	})
}

// stallUploads starts n uploads by token's caller that send their file's description and
// then nothing, each holding a call until the server ends it: refused counts those refused
// RESOURCE_EXHAUSTED with reason, timedOut those the server ended (UPLOAD_IDLE_TIMEOUT);
// any other end is an error. wg is done when all have ended.
func stallUploads(t *testing.T, ctx context.Context, tg *target, token string, n int, reason string, wg *sync.WaitGroup, refused, timedOut *atomic.Int64) {
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := tg.api.UploadFile(tg.auth(ctx, token))
			if err == nil {
				_ = s.Send(&evidencev1.UploadFileRequest{Part: &evidencev1.UploadFileRequest_Info{Info: &evidencev1.FileInfo{FileName: "hold.jpg"}}})
				err = s.RecvMsg(&evidencev1.UploadFileResponse{})
			}
			switch code, got := reasonOf(err); {
			case code == codes.ResourceExhausted && got == reason:
				refused.Add(1)
			case code == codes.DeadlineExceeded:
				timedOut.Add(1)
			default:
				t.Errorf("stalled upload: %v %q", code, got)
			}
		}()
	}
}

// TestAbuseCallsInFlight: with MAX_CALLS_IN_FLIGHT=40, 60 stalled uploads hold 40 calls:
// the other 20 and further calls are refused at once with RESOURCE_EXHAUSTED (reason
// OVERLOADED), health checks still answer, and calls succeed again once the stalled
// ones end.
func TestAbuseCallsInFlight(t *testing.T) {
	const (
		limit   = 40
		stalled = 60
	)
	// The stalled uploads hold their calls for 5 s: long enough for all of them to have
	// started on a loaded machine before the first one ends.
	// One caller holds them all: its own bound is lifted to the whole, so that this is the
	// global bound's test (TestAbuseCallsInFlightPerCaller is the caller's).
	tg := startTarget(t, "", fmt.Sprintf("MAX_CALLS_IN_FLIGHT=%d", limit), fmt.Sprintf("MAX_CALLS_IN_FLIGHT_PER_CALLER=%d", limit), "UPLOAD_IDLE_TIMEOUT=5s")
	var overloaded, timedOut atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stallUploads(t, ctx, tg, tg.token, stalled, "OVERLOADED", &wg, &overloaded, &timedOut)
	waitUntil(t, 10*time.Second, "the bound reached", func() (bool, string) {
		return overloaded.Load() >= stalled-limit, fmt.Sprint(overloaded.Load())
	})
	start := time.Now()
	_, err := tg.api.CreatePersonalEvidencePoint(tg.auth(ctx, tg.token), tg.req)
	if code, reason := reasonOf(err); code != codes.ResourceExhausted || reason != "OVERLOADED" || time.Since(start) > normalCallBudget {
		t.Errorf("a call beyond the bound: %v %q after %v", code, reason, time.Since(start))
	}
	code, body, _ := tg.rest(ctx, http.MethodPost, "/v3/evidence/evi-point/psn-realname", tg.seed, tg.token)
	if code != http.StatusTooManyRequests {
		t.Errorf("a REST call beyond the bound: HTTP %d %s", code, body)
	}
	hc, herr := http.Get("http://" + tg.httpAddr + "/healthz")
	if herr != nil || hc.StatusCode != http.StatusOK {
		t.Errorf("health beyond the bound: %v %v", hc, herr)
	} else {
		hc.Body.Close()
	}
	wg.Wait()
	if int(overloaded.Load()) != stalled-limit || int(timedOut.Load()) != limit {
		t.Errorf("%d refused and %d admitted, want %d and %d", overloaded.Load(), timedOut.Load(), stalled-limit, limit)
	}
	if err := tg.normalCall(ctx); err != nil {
		t.Errorf("after the stalled calls ended: %v", err)
	}
	_ = os.Getpid
}

// TestAbuseStreamsPerConnection: with MAX_CONCURRENT_STREAMS=10, 25 stalled uploads on
// one connection: at most 10 are in progress at the server at once, the others wait in
// the client, and all end by the idle timeout.
func TestAbuseStreamsPerConnection(t *testing.T) {
	const (
		perConn = 10
		streams = 25
	)
	tg := startTarget(t, "", fmt.Sprintf("MAX_CONCURRENT_STREAMS=%d", perConn), "UPLOAD_IDLE_TIMEOUT=2s")
	c, err := grpc.NewClient(tg.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	api := evidencev1.NewEvidenceServiceClient(c)
	var peak float64
	tg.underAttack(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		var ended atomic.Int64
		for range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := api.UploadFile(tg.auth(ctx, tg.token))
				if err == nil {
					_ = s.Send(&evidencev1.UploadFileRequest{Part: &evidencev1.UploadFileRequest_Info{Info: &evidencev1.FileInfo{FileName: "wait.jpg"}}})
					err = s.RecvMsg(&evidencev1.UploadFileResponse{})
				}
				if code, reason := reasonOf(err); code != codes.DeadlineExceeded || reason != "UPLOAD_IDLE_TIMEOUT" {
					t.Errorf("a waiting upload ended with %v %q", code, reason)
				}
				ended.Add(1)
			}()
		}
		for ended.Load() < streams && ctx.Err() == nil {
			// The gauge counts every call in progress; the normal caller adds at most one.
			peak = max(peak, metric(tg.metrics(), "esign_evidence_calls_in_flight"))
			time.Sleep(100 * time.Millisecond)
		}
		wg.Wait()
	})
	t.Logf("at most %v calls in progress at once", peak)
	if peak > perConn+1 || peak < perConn {
		t.Errorf("%v calls in progress at once with MAX_CONCURRENT_STREAMS=%d", peak, perConn)
	}
}
