package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
)

// A path the REST facade serves, asked with a method it does not serve there, is 405
// with an Allow header naming the methods it does, inside the error contract; a path it
// does not serve stays 404.
func TestRESTWrongMethodIs405WithAllow(t *testing.T) {
	st := startStack(t, stackOpt{})
	for _, c := range []struct {
		method, path string
		code         int
		allow        string
	}{
		{http.MethodGet, "/v3/evidence/evi-point/psn-realname", 405, "POST"},
		{http.MethodPut, "/v3/evidence/evi-point/psn-realname", 405, "POST"},
		{http.MethodPost, "/v1/submissions/order-42", 405, "GET"},
		{http.MethodDelete, "/v1/submissions/order-42", 405, "GET"},
		{http.MethodGet, "/v1/files", 405, "POST"},
		{http.MethodPost, "/openapi.json", 405, "GET"},
		{http.MethodPost, "/healthz", 405, "GET"},
		{http.MethodGet, "/v1/nothing-here", 404, ""},
		{http.MethodPost, "/v3/evidence/evi-point/other", 404, ""},
	} {
		req, err := http.NewRequest(c.method, st.restURL+c.path, strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := st.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		route := c.method + " " + c.path
		if resp.StatusCode != c.code || resp.Header.Get("Allow") != c.allow {
			t.Errorf("%s: HTTP %d, Allow %q; want %d, %q", route, resp.StatusCode, resp.Header.Get("Allow"), c.code, c.allow)
		}
		var body struct {
			Message string `json:"message"`
			Details []struct {
				Reason string `json:"reason"`
			} `json:"details"`
		}
		if err := json.Unmarshal(b, &body); err != nil || len(body.Details) == 0 || body.Details[0].Reason != "UNKNOWN_METHOD" {
			t.Errorf("%s: body %s is not a status with UNKNOWN_METHOD", route, b)
		}
		if c.code == 405 && !strings.Contains(body.Message, c.allow) {
			t.Errorf("%s: message %q does not say which method to use", route, body.Message)
		}
	}
}

// An Authorization header without the Bearer scheme (a bare token, Basic, ...) is
// refused with a message that says what to send, over REST and gRPC, without repeating
// the header; a wrong bearer token gets the plain refusal.
func TestNonBearerAuthorizationSaysWhatToSend(t *testing.T) {
	st := startStack(t, stackOpt{configure: tokenAuth(false)})
	const hint = `"Authorization: Bearer <token>"`
	for _, c := range []struct {
		header, challenge string
		hint              bool
	}{
		{billingToken, `Bearer realm="esign-evidence"`, true},
		{"Basic " + billingToken, `Bearer realm="esign-evidence"`, true},
		{"bearer " + billingToken, `Bearer realm="esign-evidence"`, true},
		{"Bearer wrong-token-0123456789", `Bearer realm="esign-evidence", error="invalid_token"`, false},
	} {
		resp, b := st.postWith(t, "/v1/submissions/order-42", nil, map[string]string{"Authorization": c.header})
		var body struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(b, &body)
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != c.challenge {
			t.Errorf("REST %q: HTTP %d, WWW-Authenticate %q; want 401, %q", c.header, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), c.challenge)
		}
		if strings.Contains(body.Message, hint) != c.hint {
			t.Errorf("REST %q: message %q (hint expected: %v)", c.header, body.Message, c.hint)
		}
		if strings.Contains(string(b), billingToken) || strings.Contains(string(b), "wrong-token") {
			t.Errorf("REST %q: the answer repeats the credential: %s", c.header, b)
		}

		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", c.header)
		_, err := st.client.GetSubmission(ctx, &evidencev1.GetSubmissionRequest{CustomBizId: "order-42"})
		s := status.Convert(err)
		if s.Code() != codes.Unauthenticated || strings.Contains(s.Message(), hint) != c.hint || strings.Contains(s.Message(), billingToken) {
			t.Errorf("gRPC %q: %v %q (hint expected: %v)", c.header, s.Code(), s.Message(), c.hint)
		}
	}
}
