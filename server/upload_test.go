package server_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/server"
	"github.com/esign-evidence/esign-evidence/server/apierror"
	"github.com/esign-evidence/esign-evidence/server/gateway"
	"github.com/esign-evidence/esign-evidence/upstream/esignsim"
)

func strictSim() *esignsim.Simulator {
	return esignsim.New(esignsim.Config{AppID: appID, AppSecret: secret, StrictFileIDs: true})
}

// uploadGRPC streams data as name in chunks of chunk bytes.
func uploadGRPC(t *testing.T, st *stack, name string, data []byte, chunk int) (*evidencev1.UploadFileResponse, error) {
	t.Helper()
	stream, err := st.client.UploadFile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&evidencev1.UploadFileRequest{Part: &evidencev1.UploadFileRequest_Info{Info: &evidencev1.FileInfo{FileName: name}}}); err != nil {
		return stream.CloseAndRecv()
	}
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		if err := stream.Send(&evidencev1.UploadFileRequest{Part: &evidencev1.UploadFileRequest_Chunk{Chunk: data[off:end]}}); err != nil {
			return stream.CloseAndRecv()
		}
	}
	return stream.CloseAndRecv()
}

func uploadREST(t *testing.T, st *stack, name string, data []byte) (int, map[string]any) {
	t.Helper()
	resp, b := st.postWith(t, gateway.UploadPath+"?fileName="+name, data, map[string]string{"Content-Type": "application/octet-stream"})
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The whole flow: upload both sides of the ID card and a face photo, then create
// evidence points with the returned IDs, against a simulator that refuses file IDs it
// never received.
func TestUploadThenCreateEvidence(t *testing.T) {
	st := startStack(t, stackOpt{sim: strictSim()})
	front := readFile(t, "id-front.jpg")
	up, err := uploadGRPC(t, st, "id-front.jpg", front, 1000)
	if err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(front)
	if up.GetSize() != int64(len(front)) || up.GetContentMd5() != base64.StdEncoding.EncodeToString(sum[:]) || len(up.GetFileId()) != 32 {
		t.Errorf("upload answer %v", up)
	}
	code, back := uploadREST(t, st, "id-back.jpg", readFile(t, "id-back.jpg"))
	if code != 200 {
		t.Fatalf("REST upload: %d %v", code, back)
	}
	code, face := uploadREST(t, st, "face.jpg", readFile(t, "face.jpg"))
	if code != 200 {
		t.Fatalf("REST upload: %d %v", code, face)
	}

	req := seedRequest(t)
	req.CardPortrait, req.CardNationalEmblem = up.GetFileId(), back["fileId"].(string)
	if _, err := st.client.CreatePersonalEvidencePoint(context.Background(), req); err != nil {
		t.Fatalf("evidence with uploaded IDs: %v", err)
	}
	req.Verification = &evidencev1.CreatePersonalEvidencePointRequest_Face{Face: &evidencev1.Face{
		InfoVerifySupplier: "s", VerifyTime: "20240324", VerifySerialNumber: "n", FaceImage: face["fileId"].(string),
		FaceImageSimilarScore: "96.5", FaceLiveDetectScore: "99.1"}}
	req.RealNameMethod = evidencev1.RealNameMethod_FACE
	if _, err := st.client.CreatePersonalEvidencePoint(context.Background(), req); err != nil {
		t.Fatalf("face evidence with an uploaded face: %v", err)
	}
	// The seed's example file IDs were never uploaded here: the strict simulator refuses.
	_, err = st.client.CreatePersonalEvidencePoint(context.Background(), seedRequest(t))
	if ei, _ := grpcDetails(err); status.Code(err) != codes.InvalidArgument || ei.GetReason() != apierror.ReasonEsignParameterError {
		t.Errorf("unknown file IDs: %v", err)
	}
}

func TestUploadRefusals(t *testing.T) {
	st := startStack(t, stackOpt{configure: func(o *server.Options) { o.MaxFileBytes = 64 << 10 }})
	img := readFile(t, "id-front.jpg")
	for _, name := range []string{"front", "id/front.jpg", `front?.jpg`, "front😀.jpg", "a:b.png", ""} {
		_, err := uploadGRPC(t, st, name, img, 4096)
		_, br := grpcDetails(err)
		if status.Code(err) != codes.InvalidArgument || len(br.GetFieldViolations()) == 0 || br.GetFieldViolations()[0].GetField() != "info.fileName" {
			t.Errorf("file name %q: %v", name, err)
		}
	}
	code, m := uploadREST(t, st, "id%2Ffront.jpg", img)
	if code != 400 || !strings.Contains(toJSONString(m), "info.fileName") {
		t.Errorf("REST forbidden name: %d %v", code, m)
	}
	// A refused upload's access line is written like a unary call's: with its reason.
	if !hasLine(st.logs.String(), `"msg":"call"`, `"method":"/esign.evidence.v1.EvidenceService/UploadFile"`,
		`"code":"InvalidArgument"`, `"reason":"INVALID_REQUEST"`) {
		t.Errorf("no access line with the reason for a refused upload:\n%s", st.logs.String())
	}
	big := bytes.Repeat([]byte{0xAB}, 100<<10)
	if _, err := uploadGRPC(t, st, "big.jpg", big, 32<<10); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("oversize over gRPC: %v", err)
	}
	if code, m := uploadREST(t, st, "big.jpg", big); code != 413 {
		t.Errorf("oversize over REST: %d %v", code, m)
	}
	if _, err := uploadGRPC(t, st, "empty.jpg", nil, 1); status.Code(err) != codes.InvalidArgument {
		t.Errorf("empty file: %v", err)
	}
	if n := st.sim.Count(); n != 0 {
		t.Errorf("e签宝 received %d requests for refused uploads", n)
	}
	// Still serving.
	if _, err := uploadGRPC(t, st, "id-front.jpg", img, 4096); err != nil {
		t.Errorf("after: %v", err)
	}
}

// hasLine reports whether one line of logs contains every one of parts.
func hasLine(logs string, parts ...string) bool {
	for _, line := range strings.Split(logs, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

func toJSONString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// A file at the size limit goes through with memory that does not grow with the file:
// the service spools it to disk and streams it to e签宝. The heap's growth is measured
// for a file of 16 MiB and one of 64 MiB (each at the configured limit); it is buffers
// and garbage between collections, the same for both, never a copy of the file.
func TestUploadMemoryStaysBounded(t *testing.T) {
	// Collect garbage eagerly while measuring, so the heap shows what is live rather
	// than what the collector has not reached yet.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	small := heapGrowthForUpload(t, 16<<20)
	large := heapGrowthForUpload(t, 64<<20)
	t.Logf("heap growth: %.1f MiB for 16 MiB, %.1f MiB for 64 MiB", float64(small)/(1<<20), float64(large)/(1<<20))
	if large > small+12<<20 || large > 32<<20 {
		t.Errorf("heap growth scales with the file: %d bytes for 16 MiB, %d for 64 MiB", small, large)
	}
}

func heapGrowthForUpload(t *testing.T, size int) int64 {
	t.Helper()
	st := startStack(t, stackOpt{configure: func(o *server.Options) { o.MaxFileBytes = int64(size) }})
	// The file is generated chunk by chunk, so the test itself holds no copy of it.
	chunk := bytes.Repeat([]byte("0123456789abcdef"), (256<<10)/16)
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				runtime.ReadMemStats(&m)
				if m.HeapInuse > peak.Load() {
					peak.Store(m.HeapInuse)
				}
			}
		}
	}()
	stream, err := st.client.UploadFile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&evidencev1.UploadFileRequest{Part: &evidencev1.UploadFileRequest_Info{Info: &evidencev1.FileInfo{FileName: "scan.pdf"}}}); err != nil {
		t.Fatal(err)
	}
	for sent := 0; sent < size; sent += len(chunk) {
		if err := stream.Send(&evidencev1.UploadFileRequest{Part: &evidencev1.UploadFileRequest_Chunk{Chunk: chunk}}); err != nil {
			break
		}
	}
	resp, err := stream.CloseAndRecv()
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetSize() != int64(size) || !st.sim.Uploaded(resp.GetFileId()) {
		t.Fatalf("upload %v", resp)
	}
	st.stop()
	return int64(peak.Load()) - int64(base.HeapInuse)
}

// Uploads go through the same guard as evidence calls: each is reported as an e签宝 call
// of its own operation, and once e签宝 has kept failing, the open breaker refuses an
// upload before anything is sent.
func TestUploadsGoThroughTheGuard(t *testing.T) {
	st := startStack(t, stackOpt{})
	img := readFile(t, "id-front.jpg")
	if _, err := uploadGRPC(t, st, "id-front.jpg", img, 4096); err != nil {
		t.Fatal(err)
	}
	if !hasLine(st.logs.String(), `"msg":"e签宝 call"`, `"operation":"file-upload"`, `"outcome":"success"`) {
		t.Errorf("the upload was not reported as an e签宝 call:\n%s", st.logs.String())
	}
	// e签宝 fails to answer until the breaker opens.
	st.sim.Inject(esignsim.Fault{Status: 503, Times: 20})
	for range 8 {
		_, _ = st.client.CreatePersonalEvidencePoint(context.Background(), seedRequest(t))
	}
	before := st.sim.Count()
	_, err := uploadGRPC(t, st, "id-front.jpg", img, 4096)
	if ei, _ := grpcDetails(err); status.Code(err) != codes.Unavailable || ei.GetReason() != apierror.ReasonEsignCircuitOpen {
		t.Errorf("upload with the breaker open: %v", err)
	}
	if n := st.sim.Count(); n != before {
		t.Errorf("e签宝 received %d requests for an upload the breaker refused", n-before)
	}
}
