package upstream_test

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"testing"

	"github.com/esign-evidence/esign-evidence/upstream"
)

// The expected values here are recomputed inside the test from the documented recipe
// (the shared e签宝 facts), with the standard library only, not with the package's own
// helpers.

func recipeMD5(body []byte) string {
	sum := md5.Sum(body)
	return base64.StdEncoding.EncodeToString(sum[:])
}

func recipeSign(secret, s string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(s))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func TestContentMD5DocumentedValues(t *testing.T) {
	// Both values are quoted in e签宝's documentation.
	if got := upstream.ContentMD5(nil); got != "1B2M2Y8AsgTpgAmY7PhCfg==" {
		t.Errorf("MD5 of the empty body = %s", got)
	}
	if got := upstream.ContentMD5([]byte("{}")); got != "mZFLkyvTelC5g8XnyQrpOw==" {
		t.Errorf("MD5 of {} = %s", got)
	}
	chinese := []byte(`{"name":"测试张三","eviName":"测试张三-个人实名证据"}`)
	if got, want := upstream.ContentMD5(chinese), recipeMD5(chinese); got != want {
		t.Errorf("MD5 of a body with Chinese text = %s, want %s", got, want)
	}
}

func TestStringToSign(t *testing.T) {
	got := upstream.StringToSign("post", "*/*", "M", "application/json; charset=UTF-8", "", "/v3/evidence/evi-point/psn-realname")
	// The facts' own example for a POST with no query and body MD5 M.
	want := "POST\n*/*\nM\napplication/json; charset=UTF-8\n\n/v3/evidence/evi-point/psn-realname"
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	// Empty Accept and Content-MD5 keep their line feeds.
	got = upstream.StringToSign("GET", "", "", "", "", "/v3/files/abc")
	if want := "GET\n\n\n\n\n/v3/files/abc"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestCanonicalPathAndQuery(t *testing.T) {
	cases := []struct{ path, query, want string }{
		{"/v3/evidence/evi-point/psn-realname", "", "/v3/evidence/evi-point/psn-realname"},
		{"/v3/files", "pageSize=10&fileId=abc&app=1", "/v3/files?app=1&fileId=abc&pageSize=10"},
		{"/v3/x", "b=2&B=1&a=3", "/v3/x?B=1&a=3&b=2"}, // ASCII order: upper case first
	}
	for _, c := range cases {
		if got := upstream.CanonicalPathAndQuery(c.path, c.query); got != c.want {
			t.Errorf("CanonicalPathAndQuery(%q, %q) = %q, want %q", c.path, c.query, got, c.want)
		}
	}
}

func TestSignFixedInputs(t *testing.T) {
	const secret = "a1b2c3-密钥"
	body := []byte(`{"eviName":"测试张三-个人实名证据","name":"测试张三"}`)
	md5b64 := recipeMD5(body)
	cases := []struct{ name, pathAndQuery string }{
		{"no query", "/v3/evidence/evi-point/psn-realname"},
		{"sorted query", "/v3/files?a=1&b=2&z=9"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sts := "POST\n*/*\n" + md5b64 + "\napplication/json; charset=UTF-8\n\n" + c.pathAndQuery
			want := recipeSign(secret, sts)
			got := upstream.Sign([]byte(secret), upstream.StringToSign("POST", upstream.AcceptAll, upstream.ContentMD5(body), upstream.ContentTypeJSON, "", c.pathAndQuery))
			if got != want {
				t.Errorf("signature %s, want %s", got, want)
			}
		})
	}
	// A known answer, so that a change to the recipe above is noticed too.
	got := upstream.Sign([]byte("secret"), "POST\n*/*\nmZFLkyvTelC5g8XnyQrpOw==\napplication/json; charset=UTF-8\n\n/v3/evidence/evi-point/psn-realname")
	if want := recipeSign("secret", "POST\n*/*\nmZFLkyvTelC5g8XnyQrpOw==\napplication/json; charset=UTF-8\n\n/v3/evidence/evi-point/psn-realname"); got != want {
		t.Errorf("known answer: %s, want %s", got, want)
	}
}
