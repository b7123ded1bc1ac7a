package esignsim

import (
	"crypto/md5" //nolint:gosec // see ossPut
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/esign-evidence/esign-evidence/upstream"
)

// The simulator's stand-in for e签宝's object storage: POST /v3/files/file-upload-url
// (signed like every call) hands out a one-time PUT URL under ossPrefix; the PUT needs no
// e签宝 signature but must carry exactly the Content-MD5 and Content-Type declared,
// else 403, as the real storage answers.

const (
	ossPrefix = "/sim-oss/"
	// uploadURLLifetime is how long an upload URL is valid (about an hour at e签宝).
	uploadURLLifetime = time.Hour
	// maxFiles bounds how many pending uploads and issued file IDs are remembered.
	maxFiles = 10000
)

type pendingUpload struct {
	fileID, md5, contentType string
	size                     int64
	expires                  time.Time
}

type fileStore struct {
	mu       sync.Mutex
	pending  map[string]pendingUpload // by URL token
	uploaded map[string]string        // file IDs whose bytes arrived → base64 MD5 of those bytes
	order    []string                 // file IDs, oldest first, for the bound
}

func (f *fileStore) init() {
	if f.pending == nil {
		f.pending, f.uploaded = map[string]pendingUpload{}, map[string]string{}
	}
}

// Uploaded reports whether the bytes of fileID were uploaded.
func (s *Simulator) Uploaded(fileID string) bool {
	_, ok := s.ReceivedMD5(fileID)
	return ok
}

// ReceivedMD5 is the base64 MD5 of the bytes the storage received for fileID (computed
// from the bytes as they arrived), and whether any arrived.
func (s *Simulator) ReceivedMD5(fileID string) (string, bool) {
	s.files.mu.Lock()
	defer s.files.mu.Unlock()
	s.files.init()
	sum, ok := s.files.uploaded[fileID]
	return sum, ok
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// fileUploadURL answers POST /v3/files/file-upload-url.
func (s *Simulator) fileUploadURL(w http.ResponseWriter, r *http.Request, body []byte, rec Received) {
	var req struct {
		ContentMD5   string `json:"contentMd5"`
		ContentType  string `json:"contentType"`
		FileName     string `json:"fileName"`
		FileSize     int64  `json:"fileSize"`
		ConvertToPDF *bool  `json:"convertToPDF"`
	}
	msg := ""
	switch err := json.Unmarshal(body, &req); {
	case err != nil:
		msg = "请求体不是有效的JSON对象"
	case req.ContentMD5 == "":
		msg = "contentMd5不能为空"
	default:
		raw, _ := base64.StdEncoding.DecodeString(req.ContentMD5)
		switch {
		case len(raw) != 16:
			msg = "contentMd5格式错误"
		case req.ContentType != upstream.ContentTypeOctetStream && req.ContentType != upstream.ContentTypePDF:
			msg = "contentType不支持"
		case upstream.CheckFileName(req.FileName) != nil:
			msg = "fileName格式错误"
		case req.FileSize <= 0:
			msg = "fileSize必须大于0"
		}
	}
	if msg != "" {
		rec.Status, rec.Code = http.StatusOK, upstream.CodeParameterError
		s.record(rec)
		writeJSON(w, http.StatusOK, map[string]any{"code": upstream.CodeParameterError, "message": "参数错误: " + msg, "data": nil})
		return
	}
	fileID, token := randomHex(16), randomHex(24)
	s.files.mu.Lock()
	s.files.init()
	s.files.pending[token] = pendingUpload{fileID: fileID, md5: req.ContentMD5, contentType: req.ContentType, size: req.FileSize,
		expires: s.cfg.Now().Add(uploadURLLifetime)}
	if len(s.files.pending) > maxFiles {
		for k := range s.files.pending { // drop an arbitrary old one: bounded memory
			delete(s.files.pending, k)
			break
		}
	}
	s.files.mu.Unlock()
	rec.Status = http.StatusOK
	s.record(rec)
	uploadURL := "http://" + r.Host + ossPrefix + token + "?Expires=" + s.cfg.Now().Add(uploadURLLifetime).Format("20060102150405")
	writeJSON(w, http.StatusOK, map[string]any{"code": 0, "message": "成功", "data": map[string]any{"fileId": fileID, "fileUploadUrl": uploadURL}})
}

// ossPut answers the PUT of a file's bytes to an upload URL.
func (s *Simulator) ossPut(w http.ResponseWriter, r *http.Request) {
	token := strings.TrimPrefix(r.URL.Path, ossPrefix)
	s.files.mu.Lock()
	s.files.init()
	p, ok := s.files.pending[token]
	s.files.mu.Unlock()
	deny := func(code string) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, "<Error><Code>"+code+"</Code></Error>")
	}
	switch {
	case r.Method != http.MethodPut:
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	case !ok || s.cfg.Now().After(p.expires):
		deny("AccessDenied")
		return
	case r.Header.Get("Content-Type") != p.contentType, r.Header.Get(upstream.HeaderContentMD5) != p.md5:
		deny("SignatureDoesNotMatch")
		return
	}
	// Hash as the bytes arrive: a file is never held in memory.
	sum := md5.New() //nolint:gosec // e签宝's Content-MD5 is MD5 by specification
	n, err := io.Copy(sum, io.LimitReader(r.Body, p.size+1))
	if err != nil {
		return
	}
	got := base64.StdEncoding.EncodeToString(sum.Sum(nil))
	if n != p.size || got != p.md5 {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, "<Error><Code>InvalidDigest</Code></Error>")
		return
	}
	s.files.mu.Lock()
	delete(s.files.pending, token)
	s.files.uploaded[p.fileID] = got
	s.files.order = append(s.files.order, p.fileID)
	if len(s.files.order) > maxFiles {
		delete(s.files.uploaded, s.files.order[0])
		s.files.order = s.files.order[1:]
	}
	s.files.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// checkFileIDs refuses image fields that are not uploaded file IDs.
func (s *Simulator) checkFileIDs(body []byte) string {
	var m struct {
		CardPortrait       string `json:"cardPortrait"`
		CardNationalEmblem string `json:"cardNationalEmblem"`
		Face               *struct {
			FaceImage string `json:"faceImage"`
		} `json:"face"`
	}
	_ = json.Unmarshal(body, &m)
	check := map[string]string{"cardPortrait": m.CardPortrait, "cardNationalEmblem": m.CardNationalEmblem}
	if m.Face != nil {
		check["face.faceImage"] = m.Face.FaceImage
	}
	for _, k := range []string{"cardPortrait", "cardNationalEmblem", "face.faceImage"} {
		if v, ok := check[k]; ok && !s.Uploaded(v) {
			return k + "文件不存在"
		}
	}
	return ""
}
