package upstream_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/esign-evidence/esign-evidence/upstream"
)

func TestUploadFileAgainstSimulator(t *testing.T) {
	e := newEnv(t, upstream.RevisionSeed)
	data := []byte("%PDF-1.4 not really")
	id, err := e.client.UploadFile(context.Background(), upstream.FileUpload{
		Name: "scan.pdf", ContentType: upstream.ContentTypeFor("scan.pdf"), Size: int64(len(data)),
		ContentMD5: upstream.ContentMD5(data), Body: bytes.NewReader(data)})
	if err != nil {
		t.Fatal(err)
	}
	if !e.sim.Uploaded(id) {
		t.Error("the simulator did not receive the bytes")
	}
	if upstream.ContentTypeFor("a.JPG") != upstream.ContentTypeOctetStream || upstream.ContentTypeFor("a.PDF") != upstream.ContentTypePDF {
		t.Error("content type by extension")
	}
}

func TestUploadFileNameChecks(t *testing.T) {
	for _, name := range []string{"noext", "a/b.jpg", `a\b.jpg`, "a:b.jpg", "a*.jpg", `a".jpg`, "a<b.jpg", "a>b.jpg", "a|b.jpg", "a?.jpg", "smile😀.jpg", " ",
		"a\x00.jpg", "a\n.jpg", "a\x7f.jpg", "a\u0085.jpg", "a\xff.jpg"} {
		if upstream.CheckFileName(name) == nil {
			t.Errorf("%q accepted", name)
		}
	}
	for _, name := range []string{"身份证正面.jpg", "id-front.JPEG", "scan 2025.pdf"} {
		if err := upstream.CheckFileName(name); err != nil {
			t.Errorf("%q refused: %v", name, err)
		}
	}
}

// The storage refusing the PUT is an UploadError; the upload URL is in no error text.
func TestUploadRejectedByStorage(t *testing.T) {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		_, _ = w.Write([]byte(`{"code":0,"data":{"fileId":"f1","fileUploadUrl":"` + srv.URL + `/bucket/obj?Signature=SECRETSIG"}}`))
	}))
	defer srv.Close()
	c, _ := upstream.New(upstream.Config{BaseURL: srv.URL, AppID: testAppID, AppSecret: testSecret})
	_, err := c.UploadFile(context.Background(), upstream.FileUpload{Name: "a.jpg", ContentType: upstream.ContentTypeOctetStream, Size: 1, ContentMD5: upstream.ContentMD5([]byte("x")), Body: strings.NewReader("x")})
	var ue *upstream.UploadError
	if !errors.As(err, &ue) || ue.Status != 403 || !ue.RetrySafe() {
		t.Fatalf("got %v", err)
	}
	if strings.Contains(err.Error(), "SECRETSIG") || strings.Contains(err.Error(), "/bucket/") {
		t.Errorf("the upload URL leaks: %v", err)
	}
}
