package main

import (
	"fmt"
	"os"
	"strings"
	"testing"

	pvalidate "buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
)

// section returns the text of the "### name" section of the reference.
func section(t *testing.T, doc, name string) string {
	t.Helper()
	start := strings.Index(doc, "\n### "+name+"\n")
	if start < 0 {
		t.Fatalf("no section %q", name)
	}
	rest := doc[start+1:]
	if end := strings.Index(rest[4:], "\n## "); end >= 0 {
		rest = rest[:end+4]
	}
	if end := strings.Index(rest[4:], "\n### "); end >= 0 {
		rest = rest[:end+4]
	}
	return rest
}

// The committed reference (make gen-check keeps it what the plugin writes) documents
// every method with its REST route, every field of every message with its JSON name and
// each of its validation rules, and every enum value: what a client team needs without
// opening the proto.
func TestReferenceCoversTheContract(t *testing.T) {
	b, err := os.ReadFile("../../docs/api-reference.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	fd := evidencev1.File_esign_evidence_v1_evidence_proto

	for i := 0; i < fd.Services().Len(); i++ {
		svc := fd.Services().Get(i)
		for j := 0; j < svc.Methods().Len(); j++ {
			m := svc.Methods().Get(j)
			sec := section(t, doc, string(m.Name()))
			if !strings.Contains(sec, fmt.Sprintf("`/%s/%s`", svc.FullName(), m.Name())) {
				t.Errorf("%s: gRPC name missing", m.Name())
			}
			if rule, _ := proto.GetExtension(m.Options(), annotations.E_Http).(*annotations.HttpRule); rule != nil {
				path := rule.GetPost() + rule.GetGet()
				path = pathParam.ReplaceAllStringFunc(path, func(s string) string {
					return "{" + m.Input().Fields().ByName(protoreflect.Name(pathParam.FindStringSubmatch(s)[1])).JSONName() + "}"
				})
				if !strings.Contains(sec, path) {
					t.Errorf("%s: REST path %s missing", m.Name(), path)
				}
			}
			if !strings.Contains(sec, "| 401 |") {
				t.Errorf("%s: its error statuses are missing", m.Name())
			}
		}
	}

	var check func(md protoreflect.MessageDescriptor)
	check = func(md protoreflect.MessageDescriptor) {
		sec := section(t, doc, string(md.Name()))
		for i := 0; i < md.Fields().Len(); i++ {
			f := md.Fields().Get(i)
			row := ""
			for _, line := range strings.Split(sec, "\n") {
				if strings.HasPrefix(line, "| `"+f.JSONName()+"`") {
					row = line
				}
			}
			if row == "" {
				t.Errorf("%s: no row for %s", md.Name(), f.JSONName())
				continue
			}
			rules, _ := proto.GetExtension(f.Options(), pvalidate.E_Field).(*pvalidate.FieldRules)
			if rules.GetRequired() && !strings.Contains(row, "`required`") {
				t.Errorf("%s.%s: required not shown: %s", md.Name(), f.JSONName(), row)
			}
			s := rules.GetString()
			if p := s.GetPattern(); p != "" && !strings.Contains(row, "`"+strings.ReplaceAll(p, "|", `\|`)+"`") {
				t.Errorf("%s.%s: pattern %s not shown: %s", md.Name(), f.JSONName(), p, row)
			}
			if s.HasMaxLen() && !strings.Contains(row, fmt.Sprintf("`string.max_len` = %d", s.GetMaxLen())) {
				t.Errorf("%s.%s: max_len not shown: %s", md.Name(), f.JSONName(), row)
			}
			for _, v := range s.GetIn() {
				if v != "" && !strings.Contains(row, "`"+v+"`") {
					t.Errorf("%s.%s: allowed value %s not shown: %s", md.Name(), f.JSONName(), v, row)
				}
			}
			for _, c := range rules.GetCel() {
				if !strings.Contains(row, "`"+c.GetId()+"`") {
					t.Errorf("%s.%s: rule %s not shown: %s", md.Name(), f.JSONName(), c.GetId(), row)
				}
			}
		}
		mr, _ := proto.GetExtension(md.Options(), pvalidate.E_Message).(*pvalidate.MessageRules)
		for _, c := range mr.GetCel() {
			if !strings.Contains(sec, "- `"+c.GetId()+"`") {
				t.Errorf("%s: message rule %s not shown", md.Name(), c.GetId())
			}
		}
		for i := 0; i < md.Messages().Len(); i++ {
			if !md.Messages().Get(i).IsMapEntry() {
				check(md.Messages().Get(i))
			}
		}
	}
	for i := 0; i < fd.Messages().Len(); i++ {
		check(fd.Messages().Get(i))
	}
	for i := 0; i < fd.Enums().Len(); i++ {
		e := fd.Enums().Get(i)
		sec := section(t, doc, string(e.Name()))
		for j := 0; j < e.Values().Len(); j++ {
			v := e.Values().Get(j)
			if !strings.Contains(sec, fmt.Sprintf("| `%s` | %d |", v.Name(), v.Number())) {
				t.Errorf("%s: value %s missing", e.Name(), v.Name())
			}
		}
		if strings.Contains(sec, "buf:lint") {
			t.Errorf("%s: a lint directive leaked into the prose", e.Name())
		}
	}
}
