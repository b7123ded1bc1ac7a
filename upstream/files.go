package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// PathFileUploadURL is e签宝's call that returns a pre-signed upload URL for a file.
const PathFileUploadURL = "/v3/files/file-upload-url"

// FileUploadOp is e签宝's file upload: a signed request for an upload URL, then the PUT
// of the bytes. Sending it again only leaves an unused file behind.
var FileUploadOp = Register(Operation{Name: "file-upload", Method: http.MethodPost, Path: PathFileUploadURL,
	Kind: KindUpload, Makes: "the file"})

// Content types e签宝 accepts for an upload.
const (
	ContentTypeOctetStream = "application/octet-stream"
	ContentTypePDF         = "application/pdf"
)

// FileUpload describes a file to upload.
type FileUpload struct {
	// Name is the file's name with its extension.
	Name string
	// ContentType is ContentTypeOctetStream or ContentTypePDF.
	ContentType string
	// Size is the file's length in bytes.
	Size int64
	// ContentMD5 is ContentMD5 of the file's bytes.
	ContentMD5 string
	// Body reads the file's bytes from the start; it is read once, by the PUT.
	Body io.Reader
}

// forbiddenFileName matches what e签宝 refuses in a file name: / \ : * " < > | ? and
// emoji.
var forbiddenFileName = regexp.MustCompile(`[/\\:*"<>|?\x{1F000}-\x{1FAFF}\x{2600}-\x{27BF}\x{FE0F}\x{200D}]`)

var fileExtension = regexp.MustCompile(`^.+\.[A-Za-z0-9]{1,10}$`)

// CheckFileName returns an error if e签宝 would refuse name, or if it holds a control
// character or bytes that are not UTF-8 (a name e签宝 would store as given and show to
// people).
func CheckFileName(name string) error {
	switch {
	case !utf8.ValidString(name):
		return errors.New("fileName must be valid UTF-8")
	case strings.ContainsFunc(name, unicode.IsControl):
		return errors.New("fileName must not contain control characters")
	case strings.TrimSpace(name) == "":
		return errors.New("fileName must not be empty")
	case forbiddenFileName.MatchString(name):
		return errors.New(`fileName must not contain / \ : * " < > | ? or emoji`)
	case !fileExtension.MatchString(name):
		return errors.New("fileName must end in an extension such as .jpg, .png or .pdf")
	}
	return nil
}

// ContentTypeFor is the content type to declare for a file name: PDF for .pdf, octet
// stream for anything else (images included, as e签宝's upload documentation says).
func ContentTypeFor(name string) string {
	if strings.HasSuffix(strings.ToLower(name), ".pdf") {
		return ContentTypePDF
	}
	return ContentTypeOctetStream
}

// UploadError: e签宝's storage refused or failed the PUT of a file's bytes. Nothing that
// matters was created (an unused file ID at most), so a new upload is safe.
type UploadError struct {
	// Status is the PUT's HTTP status; 0 when no answer came back.
	Status int
	Err    error
}

func (e *UploadError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("e签宝 file storage refused the upload: HTTP %d", e.Status)
	}
	return "e签宝 file storage upload failed: " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *UploadError) Unwrap() error { return e.Err }

// Outcome is OutcomeRefused when the storage answered 4xx, else OutcomeNotSent: either
// way no file exists that a retry could duplicate harmfully.
func (e *UploadError) Outcome() Outcome {
	if e.Status >= 400 && e.Status < 500 {
		return OutcomeRefused
	}
	return OutcomeNotSent
}

// RetrySafe is true: uploading again creates at most one more unused file ID.
func (e *UploadError) RetrySafe() bool { return true }

// TraceID is always "": the storage answers without e签宝's trace header.
func (e *UploadError) TraceID() string { return "" }

// Kind names the outcome.
func (e *UploadError) Kind() string { return "upload_failed" }

// UploadFile performs e签宝's two upload steps: a signed request for an upload URL
// (declaring name, type, size and MD5), then a PUT of the bytes to that URL with the
// same Content-MD5 and Content-Type. It returns the file ID. The upload URL is a
// credential: it appears in no error and no log.
func (c *Client) UploadFile(ctx context.Context, f FileUpload) (string, error) {
	if err := CheckFileName(f.Name); err != nil {
		return "", &InvalidRequestError{Fields: []string{"fileName"}, Reason: err.Error()}
	}
	if f.ContentType != ContentTypeOctetStream && f.ContentType != ContentTypePDF {
		return "", &InvalidRequestError{Fields: []string{"contentType"}, Reason: "must be application/octet-stream or application/pdf"}
	}
	if f.Size <= 0 {
		return "", &InvalidRequestError{Fields: []string{"fileSize"}, Reason: "the file is empty"}
	}
	body, err := json.Marshal(map[string]any{
		"contentMd5":   f.ContentMD5,
		"contentType":  f.ContentType,
		"fileName":     f.Name,
		"fileSize":     f.Size,
		"convertToPDF": false,
	})
	if err != nil {
		return "", &InvalidRequestError{Reason: "cannot encode the upload request"}
	}
	var data struct {
		FileID        string `json:"fileId"`
		FileUploadURL string `json:"fileUploadUrl"`
	}
	trace, err := c.post(ctx, FileUploadOp.Path, body, []string{f.Name}, &data)
	if err != nil {
		return "", FileUploadOp.classify(err)
	}
	u, perr := url.Parse(data.FileUploadURL)
	if data.FileID == "" || perr != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", &MalformedResponseError{Status: http.StatusOK, Reason: "no usable fileId and fileUploadUrl", Trace: trace}
	}
	if err := c.put(ctx, data.FileUploadURL, f); err != nil {
		return "", err
	}
	return data.FileID, nil
}

// put sends the file's bytes to the pre-signed URL.
func (c *Client) put(ctx context.Context, uploadURL string, f FileUpload) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, uploadURL, f.Body)
	if err != nil {
		return &UploadError{Err: errors.New("cannot build the upload request")}
	}
	req.ContentLength = f.Size
	req.Header.Set("Content-Type", f.ContentType)
	req.Header.Set(HeaderContentMD5, f.ContentMD5)
	resp, err := c.http.Do(req)
	if err != nil {
		// transportCause drops the URL, which is a credential.
		return &UploadError{Err: transportCause(ctx, err)}
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, c.maxResp))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode != http.StatusOK {
		return &UploadError{Status: resp.StatusCode}
	}
	return nil
}
