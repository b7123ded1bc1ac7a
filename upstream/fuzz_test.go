package upstream

import (
	"errors"
	"strings"
	"testing"
)

// FuzzDecodeResponse feeds arbitrary e签宝 answers to the decoder: it never panics,
// returns either success with an eviPointId field decoded or one of the package's typed
// errors, and never lets a personal value through into an error's text.
func FuzzDecodeResponse(f *testing.F) {
	f.Add(200, []byte(`{"code":0,"message":null,"data":{"eviPointId":"P1904811111836663815"}}`))
	f.Add(200, []byte(`{"code":1435002,"message":"参数错误: 证件号130401199601018395格式不正确","data":null}`))
	f.Add(401, []byte(`{"success":false,"code":401,"message":"INVALID_SIGNATURE"}`))
	f.Add(403, []byte(`{"success":false,"code":403,"message":"IP白名单不匹配"}`))
	f.Add(200, []byte(`{"code":0,"data":null}`))
	f.Add(502, []byte(`<html>bad gateway</html>`))
	f.Add(200, []byte(`{"code":0,"data":{"eviPointId":`))
	f.Add(429, []byte(``))
	personal := []string{"130401199601018395", "测试张三", "19800002222"}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 100 || status > 599 {
			return
		}
		var out struct {
			EviPointID string `json:"eviPointId"`
		}
		err := decodeResponse(status, body, "trace-1", func() []string { return personal }, &out)
		if err == nil {
			if status != 200 {
				t.Fatalf("success on HTTP %d", status)
			}
			return
		}
		var e Error
		if !errors.As(err, &e) {
			t.Fatalf("untyped error %T: %v", err, err)
		}
		for _, p := range personal {
			if strings.Contains(err.Error(), p) {
				t.Fatalf("error %q leaks %q", err, p)
			}
		}
	})
}
