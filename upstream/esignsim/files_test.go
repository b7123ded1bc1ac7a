package esignsim_test

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/esign-evidence/esign-evidence/upstream"
)

func b64md5(b []byte) string {
	s := md5.Sum(b)
	return base64.StdEncoding.EncodeToString(s[:])
}

// uploadURL asks the simulator for an upload URL, signed as the recipe says.
func uploadURL(t *testing.T, base string, body []byte, ct string) (string, string) {
	t.Helper()
	req, _ := json.Marshal(map[string]any{"contentMd5": b64md5(body), "contentType": ct, "fileName": "front.jpg", "fileSize": len(body), "convertToPDF": false})
	resp, m := signed{path: upstream.PathFileUploadURL, body: req}.do(t, base)
	if resp.StatusCode != 200 || m["code"] != float64(0) {
		t.Fatalf("file-upload-url: %d %v", resp.StatusCode, m)
	}
	d := m["data"].(map[string]any)
	return d["fileId"].(string), d["fileUploadUrl"].(string)
}

func put(t *testing.T, url string, body []byte, ct, md5 string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Content-MD5", md5)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestUploadSteps(t *testing.T) {
	body := []byte("\xff\xd8\xff\xe0 a jpeg, more or less")
	octet := upstream.ContentTypeOctetStream
	cases := []struct {
		name     string
		body     []byte
		ct, md5  string
		status   int
		uploaded bool
	}{
		{"as declared", body, octet, b64md5(body), 200, true},
		{"another Content-Type", body, "image/jpeg", b64md5(body), 403, false},
		{"another Content-MD5", body, octet, b64md5([]byte("x")), 403, false},
		{"bytes that do not match the declared MD5", append([]byte("Z"), body[1:]...), octet, b64md5(body), 400, false},
		{"fewer bytes than declared", body[:10], octet, b64md5(body), 400, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sim, base := newSim(t, upstream.RevisionSeed)
			id, u := uploadURL(t, base, body, octet)
			if got := put(t, u, tc.body, tc.ct, tc.md5); got != tc.status {
				t.Errorf("PUT status %d, want %d", got, tc.status)
			}
			if sim.Uploaded(id) != tc.uploaded {
				t.Errorf("uploaded = %v", sim.Uploaded(id))
			}
		})
	}
	t.Run("an unknown upload URL", func(t *testing.T) {
		_, base := newSim(t, upstream.RevisionSeed)
		if got := put(t, base+"/sim-oss/nope", body, octet, b64md5(body)); got != 403 {
			t.Errorf("status %d", got)
		}
	})
	t.Run("a URL used twice", func(t *testing.T) {
		_, base := newSim(t, upstream.RevisionSeed)
		_, u := uploadURL(t, base, body, octet)
		put(t, u, body, octet, b64md5(body))
		if got := put(t, u, body, octet, b64md5(body)); got != 403 {
			t.Errorf("status %d", got)
		}
	})
	t.Run("a forbidden file name", func(t *testing.T) {
		_, base := newSim(t, upstream.RevisionSeed)
		req, _ := json.Marshal(map[string]any{"contentMd5": b64md5(body), "contentType": octet, "fileName": "a?b.jpg", "fileSize": len(body)})
		_, m := signed{path: upstream.PathFileUploadURL, body: req}.do(t, base)
		if m["code"] != float64(upstream.CodeParameterError) {
			t.Errorf("got %v", m)
		}
	})
	t.Run("the upload-url call is signed like every call", func(t *testing.T) {
		_, base := newSim(t, upstream.RevisionSeed)
		req, _ := json.Marshal(map[string]any{"contentMd5": b64md5(body), "contentType": octet, "fileName": "a.jpg", "fileSize": len(body)})
		resp, m := signed{path: upstream.PathFileUploadURL, body: req, secret: "wrong"}.do(t, base)
		if resp.StatusCode != 401 || m["message"] != upstream.ReasonInvalidSignature {
			t.Errorf("got %d %v", resp.StatusCode, m)
		}
	})
}
