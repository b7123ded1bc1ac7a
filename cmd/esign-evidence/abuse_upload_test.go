package main

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// spoolFiles counts the upload temporary files of process pid in dir: those named
// there (esign-evidence-upload-*), and those the process holds open under dir (an
// unnamed file shows in /proc/<pid>/fd as "<dir>/#<inode> (deleted)", a removed one as
// "<dir>/esign-evidence-upload-… (deleted)").
func spoolFiles(t *testing.T, pid int, dir string) (named, open int) {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "esign-evidence-upload-*"))
	if err != nil {
		t.Fatal(err)
	}
	named = len(m)
	if pid == 0 {
		return named, 0
	}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err != nil {
			continue
		}
		if rest, ok := strings.CutPrefix(l, dir+"/"); ok && (strings.HasPrefix(rest, "#") || strings.HasPrefix(rest, "esign-evidence-upload-")) {
			open++
		}
	}
	return named, open
}

// multipartBody is a form as curl -F file=@name;type=partType sends it (partType "" for
// none), with a text field before the file.
func multipartBody(t *testing.T, field, name, partType string, data []byte) ([]byte, string) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	_ = w.WriteField("note", "not the file")
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename=%q`, field, name))
	if partType != "" {
		h.Set("Content-Type", partType)
	}
	pw, err := w.CreatePart(h)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = pw.Write(data)
	_ = w.Close()
	return b.Bytes(), w.FormDataContentType()
}

// TestAbuseUploads, against the built binary and an e签宝 simulator that records what
// its storage received: a multipart/form-data upload (curl -F) sends e签宝 the file's
// bytes, not the form (MD5 and size checked at the simulator); a body in another media
// type is refused 415 naming what to send; an upload killed (SIGKILL) with 196 KB
// received leaves no temporary file, before or after a restart, and a named leftover
// from an earlier process is removed at start.
func TestAbuseUploads(t *testing.T) {
	tmp := t.TempDir()
	c := newCrashRig(t, []string{"DB_PATH=" + filepath.Join(t.TempDir(), "sub.db"), "TMPDIR=" + tmp})
	r := c.start()
	face, err := os.ReadFile("../../testdata/face.jpg")
	if err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(face)
	want := base64.StdEncoding.EncodeToString(sum[:])
	post := func(query, contentType string, body io.Reader) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+r.httpAddr+"/v1/files"+query, body)
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		b, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(b, &m)
		return resp.StatusCode, m
	}

	for _, tc := range []struct {
		name, query, partType string
	}{
		{"the file's name from the part, typed", "", "image/jpeg"},
		{"the name from the query, untyped part", "?fileName=face.jpg", ""},
	} {
		body, ct := multipartBody(t, "file", "face.jpg", tc.partType, face)
		code, m := post(tc.query, ct, bytes.NewReader(body))
		if code != http.StatusOK {
			t.Fatalf("multipart upload (%s): HTTP %d %v", tc.name, code, m)
		}
		id, _ := m["fileId"].(string)
		got, ok := c.sim.ReceivedMD5(id)
		t.Logf("multipart upload (%s): form of %d bytes, file of %d; e签宝 received MD5 %s, the file's %s", tc.name, len(body), len(face), got, want)
		if !ok || got != want || m["contentMd5"] != want || m["size"] != fmt.Sprint(len(face)) {
			t.Errorf("multipart upload (%s): e签宝 received MD5 %q (%v), answer %v; the file's MD5 is %s, its size %d", tc.name, got, ok, m, want, len(face))
		}
	}
	for _, ct := range []string{"application/x-www-form-urlencoded", "application/json", "text/plain"} {
		code, m := post("?fileName=face.jpg", ct, bytes.NewReader(face))
		if code != http.StatusUnsupportedMediaType || !strings.Contains(toJSON(m), "multipart/form-data") || !strings.Contains(toJSON(m), "application/octet-stream") {
			t.Errorf("Content-Type %s: HTTP %d %v", ct, code, m)
		}
	}
	body, ct := multipartBody(t, "file", "face.jpg", "text/html", face)
	if code, m := post("", ct, bytes.NewReader(body)); code != http.StatusUnsupportedMediaType {
		t.Errorf("a file part of type text/html: HTTP %d %v", code, m)
	}

	// Killed mid-upload: 196 KB sent of a declared 400 KB, the process holding its
	// temporary file.
	pr, pw := io.Pipe()
	go func() {
		req, _ := http.NewRequest(http.MethodPost, "http://"+r.httpAddr+"/v1/files?fileName=big.jpg", pr)
		req.ContentLength = 400 << 10
		req.Header.Set("Content-Type", "image/jpeg")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	if _, err := pw.Write(bytes.Repeat([]byte{0xd8}, 196<<10)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the upload's temporary file open", func() (bool, string) {
		named, open := spoolFiles(t, r.cmd.Process.Pid, tmp)
		return open == 1, fmt.Sprintf("%d named, %d open", named, open)
	})
	named, _ := spoolFiles(t, r.cmd.Process.Pid, tmp)
	kill(t, r)
	_ = pw.Close()
	after, _ := spoolFiles(t, 0, tmp)
	t.Logf("mid-upload: %d temporary files named in TMPDIR while the upload ran, %d after SIGKILL", named, after)
	if named != 0 || after != 0 {
		t.Errorf("temporary upload files named in TMPDIR: %d during the upload, %d after SIGKILL", named, after)
	}

	// A leftover of an earlier version's (named) temporary file goes at the next start.
	if err := os.WriteFile(filepath.Join(tmp, "esign-evidence-upload-1234"), []byte("old image bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	r2 := c.start()
	if n, _ := spoolFiles(t, 0, tmp); n != 0 {
		t.Errorf("%d temporary files left in TMPDIR after the restart", n)
	}
	if !strings.Contains(r2.stderr.String(), "removed upload temporary files left by an earlier process") {
		t.Errorf("the removal of a leftover is not logged:\n%s", r2.stderr)
	}
}
