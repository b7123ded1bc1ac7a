package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/server/inprocess"
)

// echoService answers with what it was given: the decoded request, the call's incoming
// metadata, its peer and what enter put in its context.
type echoService struct {
	evidencev1.UnimplementedEvidenceServiceServer
}

type admittedKey struct{}

func seen(ctx context.Context, what string) string {
	md, _ := metadata.FromIncomingContext(ctx)
	keys := make([]string, 0, len(md))
	for k, v := range md {
		if k == "x-forwarded-for" || k == "x-forwarded-host" {
			continue // the client's port and the server's address differ between the two servers
		}
		keys = append(keys, k+"="+strings.Join(v, ","))
	}
	slices.Sort(keys)
	p, _ := peer.FromContext(ctx)
	addr := "none"
	if p != nil {
		addr = p.Addr.Network() + " " + strings.Split(p.Addr.String(), ":")[0]
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-request-id", "from-the-call"))
	return fmt.Sprintf("%s|%v|%s|%v", what, keys, addr, ctx.Value(admittedKey{}))
}

func (echoService) CreatePersonalEvidencePoint(ctx context.Context, req *evidencev1.CreatePersonalEvidencePointRequest) (*evidencev1.CreatePersonalEvidencePointResponse, error) {
	if req.GetEviName() == "fail" {
		return nil, status.Error(codes.FailedPrecondition, "failed")
	}
	return &evidencev1.CreatePersonalEvidencePointResponse{EviPointId: seen(ctx, req.GetEviName()+" "+req.GetCardNo())}, nil
}

func (echoService) GetSubmission(ctx context.Context, req *evidencev1.GetSubmissionRequest) (*evidencev1.GetSubmissionResponse, error) {
	return &evidencev1.GetSubmissionResponse{CustomBizId: seen(ctx, req.GetCustomBizId())}, nil
}

// facadeForTest serves the facade over real HTTP, with or without the front door, in
// front of echoService, with an enter that refuses "Bearer bad" (unauthenticated) and
// "Bearer busy" (resource exhausted) and counts what it admits and gives back.
func facadeForTest(t *testing.T, frontDoorOn bool, admitted, released *atomic.Int64) string {
	t.Helper()
	ch := inprocess.New(nil, nil)
	ch.RegisterService(&evidencev1.EvidenceService_ServiceDesc, echoService{})
	enter := func(ctx context.Context, method string) (context.Context, func(), error) {
		md, _ := metadata.FromIncomingContext(ctx)
		switch strings.Join(md.Get("authorization"), ",") {
		case "Bearer bad":
			return nil, nil, status.Error(codes.Unauthenticated, "no")
		case "Bearer busy":
			return nil, nil, status.Error(codes.ResourceExhausted, "busy")
		}
		if _, ok := peer.FromContext(ctx); !ok {
			return nil, nil, status.Error(codes.Internal, "no peer at the edge")
		}
		admitted.Add(1)
		return context.WithValue(ctx, admittedKey{}, method), func() { released.Add(1) }, nil
	}
	h, err := newFacade(t.Context(), ch, Options{MaxBody: 2048, MaxFile: 1 << 20, OpenAPI: []byte(`{"swagger":"2.0"}`), Enter: enter}, frontDoorOn)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// The front door answers every request as the chain of handlers does: the same status,
// headers and body, the same metadata, peer and admission seen by the call, and every
// admitted call's slot given back. Requests to the contract's routes take the front door;
// the others (and the odd ones: other methods, paths ServeMux cleans or redirects) must
// come out the same as well.
func TestFrontDoorAnswersAsTheChain(t *testing.T) {
	var admittedFront, releasedFront, admittedChain, releasedChain atomic.Int64
	front := facadeForTest(t, true, &admittedFront, &releasedFront)
	chain := facadeForTest(t, false, &admittedChain, &releasedChain)
	seed := string(seedBytes(t))
	const rpc = "/v3/evidence/evi-point/psn-realname"
	type req struct {
		method, path, body string
		header             map[string]string
		chunked            bool
	}
	var reqs []req
	bodies := []string{seed, "", "   ", seed + " trailing", `{"eviName": "a", "unknown": 1}`, `{"eviName": "fail"}`,
		`{"cardType": "FOO"}`, strings.Repeat(" ", 3000) + seed, `{"eviName": "` + strings.Repeat("x", 1990) + `"}`}
	headers := []map[string]string{
		nil,
		{"Authorization": "Bearer ok", "X-Request-Id": "abc-123"},
		{"Authorization": "Bearer bad"},
		{"Authorization": "Bearer busy"},
		{"Content-Type": "text/plain", "Grpc-Metadata-Foo": "bar", "X-Forwarded-For": "203.0.113.9"},
	}
	for _, b := range bodies {
		for _, h := range headers {
			reqs = append(reqs, req{method: http.MethodPost, path: rpc, body: b, header: h})
		}
		reqs = append(reqs, req{method: http.MethodPost, path: rpc, body: b, chunked: true})
	}
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions, "BREW"} {
		for _, p := range []string{rpc, "/v1/submissions/abc", OpenAPIPath, HealthPath, UploadPath, "/nope"} {
			reqs = append(reqs, req{method: m, path: p}, req{method: m, path: p, body: seed})
		}
	}
	for _, p := range []string{"/v3//evidence/evi-point/psn-realname", "/v3/evidence/evi-point/psn%2Drealname",
		"/v3/evidence/evi-point%2Fpsn-realname", rpc + "/", "/v3/evidence/./evi-point/psn-realname",
		"/v3/evidence/x/../evi-point/psn-realname", rpc + "?eviName=q", "/v1/submissions/a%2Fb", "/v1/submissions/",
		"/V3/evidence/evi-point/psn-realname", "/v3/evidence/evi-chain/create", OpenAPIPath, UploadPath + "?fileName=a.jpg"} {
		reqs = append(reqs, req{method: http.MethodPost, path: p, body: seed}, req{method: http.MethodPost, path: p, body: seed, header: headers[2]})
	}
	answer := func(base string, q req) string {
		var body io.Reader
		if q.body != "" {
			body = strings.NewReader(q.body)
			if q.chunked {
				body = io.MultiReader(body) // no length: sent chunked
			}
		}
		hr, err := http.NewRequest(q.method, base+q.path, body)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range q.header {
			hr.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(hr)
		if err != nil {
			return "error " + err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		resp.Header.Del("Date")
		var hs []string
		for k, v := range resp.Header {
			hs = append(hs, k+": "+strings.Join(v, ", "))
		}
		slices.Sort(hs)
		return fmt.Sprintf("%d\n%s\n%s", resp.StatusCode, strings.Join(hs, "\n"), b)
	}
	served := 0
	for _, q := range reqs {
		got, want := answer(front, q), answer(chain, q)
		if got != want {
			t.Errorf("%s %s (%d bytes, headers %v, chunked %v):\nfront door:\n%s\nchain:\n%s", q.method, q.path, len(q.body), q.header, q.chunked, got, want)
		}
		if strings.HasPrefix(got, "200") && strings.Contains(got, "eviPointId") {
			served++
		}
	}
	if served < 3 {
		t.Errorf("only %d calls served: the comparison compares refusals only", served)
	}
	if admittedFront.Load() != admittedChain.Load() || releasedFront.Load() != admittedFront.Load() || releasedChain.Load() != admittedChain.Load() {
		t.Errorf("admitted %d, released %d (front door); admitted %d, released %d (chain)",
			admittedFront.Load(), releasedFront.Load(), admittedChain.Load(), releasedChain.Load())
	}
}
