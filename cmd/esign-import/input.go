package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
	"github.com/esign-evidence/esign-evidence/validation"
)

// maxLineBytes bounds one line of the input: the service's default request limit.
const maxLineBytes = 1 << 20

// imageField is one of the request's file-ID fields that a line may fill from a local
// image instead.
type imageField struct {
	// key is the input's own key naming the local file, e.g. "cardPortraitFile".
	key string
	// target is the request field the uploaded file's ID goes to, in JSON names.
	target string
	// get and set read and write the target field of a request.
	get func(*evidencev1.CreatePersonalEvidencePointRequest) string
	set func(*evidencev1.CreatePersonalEvidencePointRequest, string)
}

var imageFields = []imageField{
	{
		key: "cardPortraitFile", target: "cardPortrait",
		get: (*evidencev1.CreatePersonalEvidencePointRequest).GetCardPortrait,
		set: func(r *evidencev1.CreatePersonalEvidencePointRequest, id string) { r.CardPortrait = id },
	},
	{
		key: "cardNationalEmblemFile", target: "cardNationalEmblem",
		get: (*evidencev1.CreatePersonalEvidencePointRequest).GetCardNationalEmblem,
		set: func(r *evidencev1.CreatePersonalEvidencePointRequest, id string) { r.CardNationalEmblem = id },
	},
	{
		key: "faceImageFile", target: "face.faceImage",
		get: func(r *evidencev1.CreatePersonalEvidencePointRequest) string { return r.GetFace().GetFaceImage() },
		set: func(r *evidencev1.CreatePersonalEvidencePointRequest, id string) {
			if r.GetFace() != nil {
				r.GetFace().FaceImage = id
			}
		},
	},
}

// pendingFileID stands in for a file ID while a line is validated before its image is
// uploaded: it satisfies the file-ID rules, and is never sent.
const pendingFileID = "pending-upload"

// row is one line of the input, parsed and checked.
type row struct {
	line int
	// seq is the row's place among the input's rows (blank lines are not rows).
	seq int
	// key is the line's customBizId ("" when it has none, or the line is unreadable).
	key string
	// req is the request, with pendingFileID in each field an image fills.
	req *evidencev1.CreatePersonalEvidencePointRequest
	// images maps an imageFields index to the image's absolute path.
	images map[int]string
	// violations make the line invalid: it is not sent.
	violations []validation.FieldViolation
}

func (r *row) invalid() bool { return len(r.violations) > 0 }

// parser turns lines into rows: the REST facade's strict JSON decoding, the contract's
// rules as the server runs them, and the importer's own rules (customBizId required and
// unique in the file, named images readable).
type parser struct {
	dir  string // the input file's folder: image paths are relative to it
	v    *validation.Validator
	seen map[string]int // customBizId → first line
}

func newParser(inputPath string, v *validation.Validator) (*parser, error) {
	abs, err := filepath.Abs(inputPath)
	if err != nil {
		return nil, err
	}
	return &parser{dir: filepath.Dir(abs), v: v, seen: map[string]int{}}, nil
}

var requestDescriptor = (&evidencev1.CreatePersonalEvidencePointRequest{}).ProtoReflect().Descriptor()

// parse checks one line. A line that cannot be read at all is a row with violations.
func (p *parser) parse(line int, text []byte) *row {
	r := &row{line: line}
	add := func(field, rule, desc string) {
		r.violations = append(r.violations, validation.FieldViolation{Field: field, Rule: rule, Description: desc})
	}
	sp := splitImageKeys(text)
	r.key = sp.key
	r.violations = sp.violations
	if vs := validation.CheckJSON(sp.body, requestDescriptor); len(vs) > 0 {
		r.violations = append(r.violations, vs...)
		return r
	}
	req := &evidencev1.CreatePersonalEvidencePointRequest{}
	if err := protojson.Unmarshal(sp.body, req); err != nil {
		// CheckJSON accepts only what protojson takes; its error would quote the input.
		add("", "json.decode", "the line could not be decoded")
		return r
	}
	r.req = req
	if r.key == "" {
		add("customBizId", "customBizId.required", "is required on every line: it is what makes a re-run safe")
	} else if first, dup := p.seen[r.key]; dup {
		add("customBizId", "customBizId.unique", fmt.Sprintf("is already used by line %d", first))
	} else {
		p.seen[r.key] = line
	}
	for i, f := range imageFields {
		if !sp.present[f.key] {
			continue
		}
		switch {
		case f.get(req) != "":
			add(f.key, "image.conflict", "cannot be given together with "+f.target+": give one of them")
			continue
		case f.key == "faceImageFile" && req.GetFace() == nil:
			add(f.key, "image.needs_face", "is only for a line with a face block")
			continue
		}
		// The field is filled from the image: its own rules are not the problem here.
		f.set(req, pendingFileID)
		name, ok := sp.files[f.key]
		if !ok {
			continue // its value was not a file name: reported already
		}
		path, err := p.image(name)
		if err != nil {
			add(f.key, "image.unreadable", err.Error())
			continue
		}
		if r.images == nil {
			r.images = map[int]string{}
		}
		r.images[i] = path
	}
	if err := p.v.Validate(req); err != nil {
		var verr *validation.Error
		if !errors.As(err, &verr) {
			add("", "validation.internal", "the rules could not be evaluated")
		} else {
			r.violations = append(r.violations, verr.Violations...)
		}
	}
	return r
}

// imageExt is the extension an image must have, as the upload's file-name rule wants it.
var imageExt = regexp.MustCompile(`^\.[A-Za-z0-9]{1,10}$`)

// image resolves an image's path and checks that it is a readable, non-empty file. Its
// errors never contain the name: a file name often contains the person's name.
func (p *parser) image(name string) (string, error) {
	if !imageExt.MatchString(filepath.Ext(name)) {
		return "", errors.New("must name a file with an extension such as .jpg or .png")
	}
	path := name
	if !filepath.IsAbs(path) {
		path = filepath.Join(p.dir, path)
	}
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return "", errors.New("names no readable file (paths are relative to the input file's folder)")
	case !fi.Mode().IsRegular():
		return "", errors.New("names something that is not a regular file")
	case fi.Size() == 0:
		return "", errors.New("names an empty file")
	}
	f, err := os.Open(path)
	if err != nil {
		return "", errors.New("names a file that cannot be opened")
	}
	_ = f.Close()
	return path, nil
}

// split is a line with the importer's own keys taken out.
type split struct {
	// body is the rest of the line, for the contract's decoder.
	body []byte
	// files are the image keys whose values are file names; present has every image key
	// the line gives, whatever its value.
	files   map[string]string
	present map[string]bool
	// key is the top-level customBizId when it is a JSON string, even if the line is
	// otherwise broken (for the report).
	key        string
	violations []validation.FieldViolation
}

// splitImageKeys takes the importer's own keys (cardPortraitFile, cardNationalEmblemFile,
// faceImageFile) out of a line's top-level object and keeps the rest, key order and any
// repeated key kept, for the contract's decoder. A line that is not a JSON object is left
// whole to that decoder, which names what is wrong.
func splitImageKeys(text []byte) split {
	whole := split{body: text}
	dec := json.NewDecoder(bytes.NewReader(text))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return whole
	}
	sp := split{files: map[string]string{}, present: map[string]bool{}}
	var out bytes.Buffer
	out.WriteByte('{')
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return whole
		}
		key, _ := t.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return whole
		}
		if key == "customBizId" {
			_ = json.Unmarshal(raw, &sp.key)
		}
		if isImageKey(key) {
			var name string
			switch {
			case sp.present[key]:
				sp.violations = append(sp.violations, validation.FieldViolation{Field: key, Rule: "json.duplicate_field", Description: "is given more than once"})
			case json.Unmarshal(raw, &name) != nil || strings.TrimSpace(name) == "":
				sp.violations = append(sp.violations, validation.FieldViolation{Field: key, Rule: "image.type", Description: "must be a JSON string naming a file"})
			default:
				sp.files[key] = name
			}
			sp.present[key] = true
			continue
		}
		if out.Len() > 1 {
			out.WriteByte(',')
		}
		k, _ := json.Marshal(key)
		out.Write(k)
		out.WriteByte(':')
		out.Write(raw)
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return whole
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return whole // trailing data: the contract's decoder reports it
	}
	out.WriteByte('}')
	sp.body = out.Bytes()
	return sp
}

func isImageKey(k string) bool {
	for _, f := range imageFields {
		if f.key == k {
			return true
		}
	}
	return false
}

// lineReader yields the input's non-blank lines with their numbers. A line longer than
// maxLineBytes is returned truncated with tooLong set; reading continues after it.
type lineReader struct {
	br   *bufio.Reader
	line int
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the next non-blank line, or io.EOF.
func (l *lineReader) next() (n int, text []byte, tooLong bool, err error) {
	for {
		text, tooLong, err = l.read()
		if err != nil {
			return 0, nil, false, err
		}
		l.line++
		if tooLong || len(bytes.TrimSpace(text)) > 0 {
			return l.line, text, tooLong, nil
		}
	}
}

// read returns one line without its end, at most maxLineBytes of it.
func (l *lineReader) read() ([]byte, bool, error) {
	var buf []byte
	tooLong := false
	for {
		chunk, err := l.br.ReadSlice('\n')
		if len(buf)+len(chunk) > maxLineBytes {
			tooLong = true
		} else {
			buf = append(buf, chunk...)
		}
		switch {
		case err == nil:
			return bytes.TrimRight(buf, "\r\n"), tooLong, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && (len(buf) > 0 || tooLong):
			return bytes.TrimRight(buf, "\r\n"), tooLong, nil
		default:
			return nil, false, err
		}
	}
}

// countRows counts the input's non-blank lines, for the progress display.
func countRows(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	lr := newLineReader(f)
	n := 0
	for {
		_, _, _, err := lr.next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
	}
}

// tooLongRow is the row of a line over maxLineBytes.
func tooLongRow(line int) *row {
	return &row{line: line, violations: []validation.FieldViolation{{
		Rule: "line.too_long", Description: fmt.Sprintf("the line is longer than %d bytes", maxLineBytes),
	}}}
}
