package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/internal/pgtest"
	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/server/apierror"
	"github.com/esign-evidence/esign-evidence/upstream/esignsim"
)

// chainJSON is e签宝's own example body of an evidence-chain create, with the service's
// key beside it.
const chainJSON = `{
  "templateId": "aaaaaa4-0001-aaaa-aaaa-aaaaaaaaaaa",
  "name": "张三 劳动合同 证据链",
  "points": [
    {"eviPointType": 0, "eviPointId": "P1234567890123456789"},
    {"eviPointType": 3, "eviPointId": "identity-flow-0001"},
    {"eviPointType": 5, "eviPointId": "sign-flow-0001"}
  ],
  "customBizId": "chain-rest-1"
}`

func chainRequest(key string) *evidencev1.CreateEvidenceChainRequest {
	return &evidencev1.CreateEvidenceChainRequest{
		TemplateId: "aaaaaa4-0001-aaaa-aaaa-aaaaaaaaaaa",
		Name:       "李四 租赁合同",
		Points: []*evidencev1.EvidenceChainPoint{
			{EviPointType: 0, EviPointId: "H0000000000000000007"},
			{EviPointType: 1, EviPointId: "sign-service-9"},
		},
		CustomBizId: key,
	}
}

func (st *stack) postChain(t *testing.T, body string) (int, []byte) {
	t.Helper()
	resp, err := st.http.Post(st.restURL+"/v3/evidence/evi-chain/create", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// A chain created over gRPC and over REST (e签宝's own JSON, the key beside it): e签宝
// receives exactly its body — the key is never sent — and the answer carries the chain's ID
// and what was billed; a repeat is a replay, billed nothing.
func TestEvidenceChainOverGRPCAndREST(t *testing.T) {
	st := startStack(t, stackOpt{})

	got, err := st.client.CreateEvidenceChain(context.Background(), chainRequest("chain-grpc-1"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got.GetEviChainId(), "C") || got.GetBillPointIdCount() != 1 || got.GetReplayed() ||
		len(got.GetBillPoints()) != 1 || got.GetBillPoints()[0].GetEviPointId() != "sign-service-9" || got.GetBillPoints()[0].GetEviPointType() != 1 {
		t.Fatalf("answer %v", got)
	}
	sent := st.sim.Received()
	if len(sent) != 1 || sent[0].Path != "/v3/evidence/evi-chain/create" {
		t.Fatalf("e签宝 received %v", sent)
	}
	var wire map[string]any
	if err := json.Unmarshal(sent[0].Body, &wire); err != nil {
		t.Fatal(err)
	}
	if _, ok := wire["customBizId"]; ok || len(wire) != 3 || wire["name"] != "李四 租赁合同" {
		t.Errorf("e签宝 body %s", sent[0].Body)
	}
	if !bytes.Contains(sent[0].Body, []byte("李四")) {
		t.Errorf("the name was escaped, not sent as UTF-8: %s", sent[0].Body)
	}

	again, err := st.client.CreateEvidenceChain(context.Background(), chainRequest("chain-grpc-1"))
	if err != nil || !again.GetReplayed() || !proto.Equal(again.GetBillPoints()[0], got.GetBillPoints()[0]) || again.GetEviChainId() != got.GetEviChainId() {
		t.Fatalf("replay %v %v", again, err)
	}
	if n := st.sim.Count(); n != 1 {
		t.Errorf("e签宝 received %d requests, want 1", n)
	}

	code, body := st.postChain(t, chainJSON)
	if code != http.StatusOK {
		t.Fatalf("REST %d %s", code, body)
	}
	var rest struct {
		EviChainID       string `json:"eviChainId"`
		BillPointIDCount int    `json:"billPointIdCount"`
		BillPoints       []struct {
			EviPointType int    `json:"eviPointType"`
			EviPointID   string `json:"eviPointId"`
		} `json:"billPoints"`
	}
	if err := json.Unmarshal(body, &rest); err != nil || !strings.HasPrefix(rest.EviChainID, "C") || rest.BillPointIDCount != 2 || len(rest.BillPoints) != 2 {
		t.Fatalf("REST answer %s (%v)", body, err)
	}
	if code, again := st.postChain(t, chainJSON); code != http.StatusOK || !bytes.Contains(again, []byte(`"replayed":true`)) || !bytes.Contains(again, []byte(rest.EviChainID)) {
		t.Fatalf("REST replay %d %s", code, again)
	}
	if billed := st.sim.Tally(esignsim.TallyBilledPoints); billed != 3 {
		t.Errorf("e签宝 billed %d points, want 1 + 2", billed)
	}

	// GetSubmission names the operation and returns the chain.
	sub, err := st.client.GetSubmission(context.Background(), &evidencev1.GetSubmissionRequest{CustomBizId: "chain-rest-1", Operation: "CreateEvidenceChain"})
	if err != nil {
		t.Fatal(err)
	}
	answer := &evidencev1.CreateEvidenceChainResponse{}
	if err := sub.GetResult().UnmarshalTo(answer); err != nil || answer.GetEviChainId() != rest.EviChainID || answer.GetBillPointIdCount() != 2 ||
		sub.GetState() != evidencev1.SubmissionState_SUBMISSION_STATE_SUCCEEDED || sub.GetEviPointId() != "" {
		t.Errorf("GetSubmission %v (%v)", sub, err)
	}
	// The same key names another submission for the personal operation.
	if _, err := st.client.GetSubmission(context.Background(), &evidencev1.GetSubmissionRequest{CustomBizId: "chain-rest-1"}); status.Code(err) != codes.NotFound {
		t.Errorf("personal lookup of a chain's key: %v", err)
	}
	// The access line shows the chain's identifiers.
	waitFor(t, func() bool {
		return len(logLines(t, st.logs.String(), map[string]string{"msg": "call", "evi_chain_id": rest.EviChainID})) == 2
	})
}

// The same key with a different chain is refused, and nothing is sent.
func TestEvidenceChainKeyReused(t *testing.T) {
	st := startStack(t, stackOpt{})
	if _, err := st.client.CreateEvidenceChain(context.Background(), chainRequest("chain-reuse")); err != nil {
		t.Fatal(err)
	}
	other := chainRequest("chain-reuse")
	other.Name = "另一个证据链"
	_, err := st.client.CreateEvidenceChain(context.Background(), other)
	info, _ := grpcDetails(err)
	if status.Code(err) != codes.AlreadyExists || info.GetReason() != apierror.ReasonIdempotencyKeyReused {
		t.Fatalf("got %v", err)
	}
	if n := st.sim.Count(); n != 1 {
		t.Errorf("e签宝 received %d requests, want 1", n)
	}
}

// Chains that break the contract are refused naming the field, with nothing sent.
func TestEvidenceChainValidation(t *testing.T) {
	st := startStack(t, stackOpt{})
	many := chainRequest("")
	many.Points = nil
	for i := range 101 {
		many.Points = append(many.Points, &evidencev1.EvidenceChainPoint{EviPointType: 5, EviPointId: fmt.Sprintf("flow-%d", i)})
	}
	cases := []struct {
		name        string
		edit        func(*evidencev1.CreateEvidenceChainRequest)
		field, rule string
	}{
		{"101 points", func(r *evidencev1.CreateEvidenceChainRequest) { r.Points = many.Points }, "points", "repeated.max_items"},
		{"no points", func(r *evidencev1.CreateEvidenceChainRequest) { r.Points = nil }, "points", "repeated.min_items"},
		{"type 2", func(r *evidencev1.CreateEvidenceChainRequest) { r.Points[1].EviPointType = 2 }, "points[1].eviPointType", "int32.in"},
		{"blank id", func(r *evidencev1.CreateEvidenceChainRequest) { r.Points[1].EviPointId = "  " }, "points[1].eviPointId", "string.pattern"},
		{"empty id", func(r *evidencev1.CreateEvidenceChainRequest) { r.Points[1].EviPointId = "" }, "points[1].eviPointId", "required"},
		{"type 0 not an evidence point", func(r *evidencev1.CreateEvidenceChainRequest) { r.Points[0].EviPointId = "X1" }, "points[0].eviPointId", "eviPointId.evidence_point"},
		{"duplicate point", func(r *evidencev1.CreateEvidenceChainRequest) {
			r.Points = append(r.Points, &evidencev1.EvidenceChainPoint{EviPointType: 3, EviPointId: "sign-service-9"})
		}, "points", "points.unique"},
		{"no template", func(r *evidencev1.CreateEvidenceChainRequest) { r.TemplateId = "" }, "templateId", "required"},
		{"no name", func(r *evidencev1.CreateEvidenceChainRequest) { r.Name = "" }, "name", "required"},
		{"blank name", func(r *evidencev1.CreateEvidenceChainRequest) { r.Name = " \u3000 " }, "name", "string.pattern"},
		{"control character in name", func(r *evidencev1.CreateEvidenceChainRequest) { r.Name = "a\nb" }, "name", "string.pattern"},
		{"long key", func(r *evidencev1.CreateEvidenceChainRequest) { r.CustomBizId = strings.Repeat("k", 37) }, "customBizId", "string.max_len"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := chainRequest("")
			c.edit(req)
			_, err := st.client.CreateEvidenceChain(context.Background(), req)
			_, br := grpcDetails(err)
			found := false
			for _, v := range br.GetFieldViolations() {
				found = found || (v.GetField() == c.field && v.GetReason() == c.rule)
			}
			if status.Code(err) != codes.InvalidArgument || !found {
				t.Errorf("got %v, violations %v; want %s at %s", err, br.GetFieldViolations(), c.rule, c.field)
			}
		})
	}
	// Over REST the same, and an unknown field is refused naming it.
	code, body := st.postChain(t, `{"templateId":"t","name":"n","points":[{"eviPointType":2,"eviPointId":"x"}]}`)
	if code != http.StatusBadRequest || !contains(decodeStatus(t, body).fields(), "points[0].eviPointType") {
		t.Errorf("REST type 2: %d %s", code, body)
	}
	code, body = st.postChain(t, `{"templateId":"t","name":"n","points":[{"eviPointType":1,"eviPointId":"x"}],"appendTo":"C1"}`)
	if code != http.StatusBadRequest || !contains(decodeStatus(t, body).fields(), "appendTo") {
		t.Errorf("REST unknown field: %d %s", code, body)
	}
	if n := st.sim.Count(); n != 0 {
		t.Errorf("e签宝 received %d requests for refused chains", n)
	}
}

// Two replicas on one PostgreSQL, the same chain and key from callers on both at once:
// one e签宝 call, one bill, and every caller the same chain.
func TestEvidenceChainTwoReplicasOnePostgres(t *testing.T) {
	dsn := pgtest.DSN(t)
	sim := esignsim.New(esignsim.Config{AppID: appID, AppSecret: secret})
	sim.Inject(esignsim.Fault{Latency: 150 * time.Millisecond})
	var stacks []*stack
	for range 2 {
		store, err := submission.OpenPostgres(context.Background(), dsn, submission.PostgresOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		stacks = append(stacks, startStack(t, stackOpt{sim: sim, store: store}))
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		answers = map[string]int{}
	)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := stacks[i%2].client.CreateEvidenceChain(context.Background(), chainRequest("chain-replicas"))
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := json.Marshal([]any{resp.GetEviChainId(), resp.GetBillPointIdCount(), resp.GetBillPoints()[0].GetEviPointId()})
			mu.Lock()
			answers[string(b)]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(answers) != 1 {
		t.Errorf("answers %v", answers)
	}
	if n := sim.Count(); n != 1 {
		t.Errorf("e签宝 received %d requests for 20 duplicates across two replicas", n)
	}
	if billed := sim.Tally(esignsim.TallyBilledPoints); billed != 1 {
		t.Errorf("e签宝 billed %d points", billed)
	}
}
