package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/internal/pgtest"
	"github.com/esign-evidence/esign-evidence/internal/submission"
	"github.com/esign-evidence/esign-evidence/server/apierror"
	"github.com/esign-evidence/esign-evidence/upstream/esignsim"
)

func withBizID(b []byte, id string) []byte {
	return bytes.Replace(b, []byte(`"eviName"`), []byte(`"customBizId": "`+id+`", "eviName"`), 1)
}

func TestReplayOverGRPCAndREST(t *testing.T) {
	st := startStack(t, stackOpt{})
	req := seedRequest(t)
	req.CustomBizId = "order-1001"
	first, err := st.client.CreatePersonalEvidencePoint(context.Background(), req)
	if err != nil || first.GetReplayed() {
		t.Fatalf("first: %v %v", first, err)
	}
	again, err := st.client.CreatePersonalEvidencePoint(context.Background(), req)
	if err != nil || !again.GetReplayed() || again.GetEviPointId() != first.GetEviPointId() {
		t.Fatalf("replay: %v %v", again, err)
	}
	// The same request over REST, written the other ways e签宝's JSON allows: timeStamp as a
	// number, cardType and realNameMethod omitted. After defaults it is the same payload.
	body := withBizID(seedJSON(t), "order-1001")
	body = bytes.Replace(body, []byte(`"1742809059000"`), []byte(`1742809059000`), 1)
	body = bytes.Replace(body, []byte(`"cardType": "CRED_PSN_CH_IDCARD",`), nil, 1)
	body = bytes.Replace(body, []byte(`"realNameMethod": "THREEELEMENTS",`), nil, 1)
	code, b := st.post(t, body)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	if code != 200 || out["replayed"] != true || out["eviPointId"] != first.GetEviPointId() {
		t.Fatalf("REST replay: %d %s", code, b)
	}
	if n := st.sim.Count(); n != 1 {
		t.Errorf("e签宝 received %d requests", n)
	}
	// A fresh request says replayed: false explicitly.
	code, b = st.post(t, withBizID(seedJSON(t), "order-1002"))
	if code != 200 || !strings.Contains(string(b), `"replayed":false`) {
		t.Errorf("fresh: %d %s", code, b)
	}
}

func TestSameKeyDifferentPayload(t *testing.T) {
	st := startStack(t, stackOpt{})
	req := seedRequest(t)
	req.CustomBizId = "order-2001"
	if _, err := st.client.CreatePersonalEvidencePoint(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	req.GetThreeElements().VerifySerialNumber = "No7654321"
	_, err := st.client.CreatePersonalEvidencePoint(context.Background(), req)
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("got %v", err)
	}
	if ei, _ := grpcDetails(err); ei.GetReason() != apierror.ReasonIdempotencyKeyReused {
		t.Errorf("reason %v", ei)
	}
	code, b := st.post(t, withBizID(bytes.Replace(seedJSON(t), []byte("No1234567"), []byte("No0000000"), 1), "order-2001"))
	if code != http.StatusConflict || !strings.Contains(string(b), apierror.ReasonIdempotencyKeyReused) {
		t.Errorf("REST: %d %s", code, b)
	}
	if n := st.sim.Count(); n != 1 {
		t.Errorf("e签宝 received %d requests", n)
	}
}

func TestGetSubmission(t *testing.T) {
	st := startStack(t, stackOpt{})
	req := seedRequest(t)
	req.CustomBizId = "order-3001"
	created, err := st.client.CreatePersonalEvidencePoint(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := st.client.GetSubmission(context.Background(), &evidencev1.GetSubmissionRequest{CustomBizId: "order-3001"})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetState() != evidencev1.SubmissionState_SUBMISSION_STATE_SUCCEEDED || got.GetEviPointId() != created.GetEviPointId() ||
		got.GetAttempts() != 1 || got.GetCreateTime() == nil || got.GetUpdateTime().AsTime().Before(got.GetCreateTime().AsTime()) {
		t.Errorf("got %v", got)
	}
	resp, err := http.Get(st.restURL + "/v1/submissions/order-3001")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"state":"SUBMISSION_STATE_SUCCEEDED"`) || !strings.Contains(string(b), created.GetEviPointId()) {
		t.Errorf("REST: %d %s", resp.StatusCode, b)
	}
	for _, pii := range []string{"130401199601018395", "测试张三", "19800002222"} {
		if strings.Contains(string(b), pii) {
			t.Errorf("lookup returns personal data %q", pii)
		}
	}
	_, err = st.client.GetSubmission(context.Background(), &evidencev1.GetSubmissionRequest{CustomBizId: "never-used"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("unknown key: %v", err)
	}
	resp, err = http.Get(st.restURL + "/v1/submissions/never-used")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("REST unknown key: %d", resp.StatusCode)
	}
}

func TestMain(m *testing.M) { pgtest.Main(m) }

// Two service instances on one PostgreSQL database, hit with the same request at once:
// e签宝 receives it once.
func TestTwoInstancesOnePostgres(t *testing.T) {
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
	req := seedRequest(t)
	req.CustomBizId = "order-replicas"
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		ids = map[string]int{}
	)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := stacks[i%2].client.CreatePersonalEvidencePoint(context.Background(), req)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			ids[resp.GetEviPointId()]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(ids) != 1 {
		t.Errorf("eviPointIds %v", ids)
	}
	if n := sim.Count(); n != 1 {
		t.Errorf("e签宝 received %d requests for 50 duplicates across two instances", n)
	}
}

// 50 concurrent identical requests to one instance: one e签宝 call.
func TestConcurrentDuplicatesOneInstance(t *testing.T) {
	st := startStack(t, stackOpt{})
	st.sim.Inject(esignsim.Fault{Latency: 150 * time.Millisecond})
	body := withBizID(seedJSON(t), "order-burst")
	var wg sync.WaitGroup
	var mu sync.Mutex
	ids := map[string]int{}
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var id string
			if i%2 == 0 {
				req := seedRequest(t)
				req.CustomBizId = "order-burst"
				resp, err := st.client.CreatePersonalEvidencePoint(context.Background(), req)
				if err != nil {
					t.Error(err)
					return
				}
				id = resp.GetEviPointId()
			} else {
				code, b := st.post(t, body)
				var m map[string]any
				_ = json.Unmarshal(b, &m)
				if code != 200 {
					t.Errorf("REST %d %s", code, b)
					return
				}
				id, _ = m["eviPointId"].(string)
			}
			mu.Lock()
			ids[id]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(ids) != 1 || st.sim.Count() != 1 {
		t.Errorf("ids %v, e签宝 received %d", ids, st.sim.Count())
	}
}
