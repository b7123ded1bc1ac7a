package server_test

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/textproto"
	"strings"
	"testing"

	"github.com/esign-evidence/esign-evidence/server/gateway"
)

// formPart is one part of a multipart/form-data body built by hand.
type formPart struct {
	name, fileName, contentType, transferEncoding string
	data                                          []byte
}

func formBody(t *testing.T, parts ...formPart) ([]byte, string) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		disp := fmt.Sprintf("form-data; name=%q", p.name)
		if p.fileName != "" {
			disp += fmt.Sprintf("; filename=%q", p.fileName)
		}
		h.Set("Content-Disposition", disp)
		if p.contentType != "" {
			h.Set("Content-Type", p.contentType)
		}
		if p.transferEncoding != "" {
			h.Set("Content-Transfer-Encoding", p.transferEncoding)
		}
		pw, err := w.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = pw.Write(p.data)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), w.FormDataContentType()
}

// TestUploadSendsTheFileItself: however a file is sent (gRPC chunks, a raw REST body with
// or without a declared type, a multipart/form-data form as curl -F, Python requests,
// Java or Node send it), e签宝's storage receives exactly the file's bytes: the MD5 the
// simulator computed from what it received, the MD5 and size the service answers and
// those of the file all agree.
func TestUploadSendsTheFileItself(t *testing.T) {
	st := startStack(t, stackOpt{sim: strictSim()})
	face := readFile(t, "face.jpg")
	sum := md5.Sum(face)
	want := base64.StdEncoding.EncodeToString(sum[:])

	check := func(t *testing.T, fileID, answerMD5 string, size int64) {
		t.Helper()
		got, ok := st.sim.ReceivedMD5(fileID)
		if !ok || got != want || answerMD5 != want || size != int64(len(face)) {
			t.Errorf("e签宝 received MD5 %q (uploaded %v); answered MD5 %q, size %d; the file's MD5 %s, size %d",
				got, ok, answerMD5, size, want, len(face))
		}
	}
	t.Run("gRPC", func(t *testing.T) {
		up, err := uploadGRPC(t, st, "face.jpg", face, 1000)
		if err != nil {
			t.Fatal(err)
		}
		check(t, up.GetFileId(), up.GetContentMd5(), up.GetSize())
	})
	form := func(parts ...formPart) func(t *testing.T) ([]byte, string) {
		return func(t *testing.T) ([]byte, string) { return formBody(t, parts...) }
	}
	raw := func(ct string) func(t *testing.T) ([]byte, string) {
		return func(*testing.T) ([]byte, string) { return face, ct }
	}
	for _, tc := range []struct {
		name, query string
		body        func(t *testing.T) ([]byte, string)
	}{
		{"raw, no Content-Type", "?fileName=face.jpg", raw("")},
		{"raw, application/octet-stream", "?fileName=face.jpg", raw("application/octet-stream")},
		{"raw, image/jpeg", "?fileName=face.jpg", raw("image/jpeg")},
		{"form, curl -F file=@face.jpg", "", form(formPart{name: "file", fileName: "face.jpg", contentType: "image/jpeg", data: face})},
		{"form, untyped part after a field (requests)", "", form(formPart{name: "note", data: []byte("x")},
			formPart{name: "file", fileName: "face.jpg", data: face})},
		{"form, another part name with a file name", "?fileName=face.jpg", form(formPart{name: "upload", fileName: "photo.jpg", contentType: "application/octet-stream", data: face})},
		{"form, a directory in the file name", "", form(formPart{name: "file", fileName: `C:\Users\me\face.jpg`, data: face})},
		{"form, quoted-printable", "", form(formPart{name: "file", fileName: "face.jpg", transferEncoding: "quoted-printable",
			data: []byte(qpEncode(face))})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, ct := tc.body(t)
			h := map[string]string{}
			if ct != "" {
				h["Content-Type"] = ct
			}
			resp, b := st.postWith(t, gateway.UploadPath+tc.query, body, h)
			var m struct {
				FileID     string `json:"fileId"`
				ContentMD5 string `json:"contentMd5"`
				Size       int64  `json:"size,string"`
			}
			if err := json.Unmarshal(b, &m); err != nil || resp.StatusCode != 200 {
				t.Fatalf("HTTP %d %s", resp.StatusCode, b)
			}
			check(t, m.FileID, m.ContentMD5, m.Size)
		})
	}
}

// qpEncode is data as quoted-printable, every byte escaped.
func qpEncode(data []byte) string {
	var b strings.Builder
	for i, c := range data {
		if i > 0 && i%24 == 0 {
			b.WriteString("=\r\n")
		}
		fmt.Fprintf(&b, "=%02X", c)
	}
	return b.String()
}

// TestUploadRefusesWhatIsNotTheFile: a body in a media type the route does not take is
// refused 415 naming what to send, before any of it is read; a form without its file,
// with two files or with a file part in another type or transfer encoding is refused;
// nothing reaches e签宝.
func TestUploadRefusesWhatIsNotTheFile(t *testing.T) {
	st := startStack(t, stackOpt{sim: strictSim()})
	face := readFile(t, "face.jpg")
	filePart := formPart{name: "file", fileName: "face.jpg", data: face}
	for _, tc := range []struct {
		name        string
		contentType string
		body        []byte
		code        int
		field, rule string
	}{
		{"form-urlencoded (curl --data-binary's default)", "application/x-www-form-urlencoded", face, 415, "Content-Type", "upload.media_type"},
		{"JSON", "application/json", face, 415, "Content-Type", "upload.media_type"},
		{"text", "text/plain; charset=utf-8", face, 415, "Content-Type", "upload.media_type"},
		{"not a media type", "image/", face, 415, "Content-Type", "upload.media_type"},
		{"multipart without a boundary", "multipart/form-data", face, 400, "file", "upload.form"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := st.postWith(t, gateway.UploadPath+"?fileName=face.jpg", tc.body, map[string]string{"Content-Type": tc.contentType})
			checkRefusal(t, resp.StatusCode, b, tc.code, tc.field, tc.rule)
		})
	}
	for _, tc := range []struct {
		name        string
		parts       []formPart
		code        int
		field, rule string
	}{
		{"no file", []formPart{{name: "note", data: []byte("x")}}, 400, "file", "upload.form"},
		{"two files", []formPart{filePart, {name: "other", fileName: "b.jpg", data: face}}, 400, "file", "upload.form"},
		{"a file part in text/html", []formPart{{name: "file", fileName: "face.jpg", contentType: "text/html", data: face}}, 415, "file", "upload.media_type"},
		{"a base64 file part", []formPart{{name: "file", fileName: "face.jpg", transferEncoding: "base64",
			data: []byte(base64.StdEncoding.EncodeToString(face))}}, 415, "file", "upload.media_type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, ct := formBody(t, tc.parts...)
			resp, b := st.postWith(t, gateway.UploadPath+"?fileName=face.jpg", body, map[string]string{"Content-Type": ct})
			checkRefusal(t, resp.StatusCode, b, tc.code, tc.field, tc.rule)
		})
	}
	if n := st.sim.Count(); n != 0 {
		t.Errorf("e签宝 received %d requests for refused uploads", n)
	}
}

func checkRefusal(t *testing.T, code int, body []byte, wantCode int, field, rule string) {
	t.Helper()
	if code != wantCode {
		t.Fatalf("HTTP %d, want %d: %s", code, wantCode, body)
	}
	br := decodeStatus(t, body).detail("BadRequest")
	if br == nil || !strings.Contains(toJSONString(br), `"field":"`+field+`"`) || !strings.Contains(toJSONString(br), `"reason":"`+rule+`"`) {
		t.Errorf("BadRequest %s, want field %s rule %s", toJSONString(br), field, rule)
	}
	if wantCode == 415 && !strings.Contains(string(body), "multipart/form-data") {
		t.Errorf("a 415 that does not say what to send: %s", body)
	}
}
