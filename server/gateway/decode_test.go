package gateway

import (
	"bytes"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	evidencev1 "github.com/esign-evidence/esign-evidence/gen/go/esign/evidence/v1"
)

// heldBodiesAgree fails t unless the gateway's decoder, given body as strictBodies hands
// it on, decodes it, or refuses it, exactly as runtime.JSONPb's decoder does: the same
// message, the same error.
func heldBodiesAgree(t *testing.T, body []byte) {
	t.Helper()
	heldBodiesAgreeAs(t, body, newPersonal)
}

func newPersonal() proto.Message { return &evidencev1.CreatePersonalEvidencePointRequest{} }
func newChain() proto.Message    { return &evidencev1.CreateEvidenceChainRequest{} }

// heldBodiesAgreeAs is heldBodiesAgree for the messages newMessage makes.
func heldBodiesAgreeAs(t *testing.T, body []byte, newMessage func() proto.Message) {
	t.Helper()
	codec := newMarshaler()
	got, want := newMessage(), newMessage()
	gotErr := codec.NewDecoder(newHeldBody(body)).Decode(got)
	wantErr := codec.JSONPb.NewDecoder(bytes.NewReader(body)).Decode(want)
	if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
		t.Fatalf("%q: error %v, runtime.JSONPb's %v", body, gotErr, wantErr)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("%q: decoded %v, runtime.JSONPb's %v", body, got, want)
	}
}

// The gateway's decoder decodes, or refuses, every body as runtime.JSONPb's does.
func TestHeldBodyDecoderAgreesWithJSONPb(t *testing.T) {
	seed := string(seedBytes(t))
	for _, b := range []string{
		seed,
		seed + " \n\t",
		" \n" + seed,
		seed + " trailing",
		seed + seed,
		seed + "}",
		`{}`, `{} {}`, `{}x`, ``, `   `, `{`, `[]`, `null`, `"x"`, `1`,
		`{"eviName": "a", "unknown": 1}`, `{"cardType": "FOO"}`, `{"timeStamp": "12x"}`,
		`{"eviName": "a"} {"name": "b"}`, `{"eviName": "a", "eviName": "b"}`, "\xff",
		`{"eviName": "` + "\xff" + `"}`, `{"eviName": "\ud800"}`, `{"timeStamp": 1e3}`,
		strings.Replace(seed, `"THREEELEMENTS"`, `2`, 1),
		strings.Replace(seed, `"threeElements"`, `"threeElements": null, "x"`, 1),
		// The forms quickDecode takes, and those next to them it leaves to protojson.
		strings.Replace(seed, `"1742809059000"`, `1742809059000`, 1),
		strings.Replace(seed, `"1742809059000"`, `-1742809059000`, 1),
		strings.Replace(seed, `"1742809059000"`, `"-1742809059000"`, 1),
		strings.Replace(seed, `"1742809059000"`, `0`, 1),
		strings.Replace(seed, `"1742809059000"`, `"0"`, 1),
		strings.Replace(seed, `"1742809059000"`, `-0`, 1),
		strings.Replace(seed, `"1742809059000"`, `"-0"`, 1),
		strings.Replace(seed, `"1742809059000"`, `"01"`, 1),
		strings.Replace(seed, `"1742809059000"`, `"+1"`, 1),
		strings.Replace(seed, `"1742809059000"`, `" 1"`, 1),
		strings.Replace(seed, `"1742809059000"`, `""`, 1),
		strings.Replace(seed, `"1742809059000"`, `"-"`, 1),
		strings.Replace(seed, `"1742809059000"`, `1742809059000.0`, 1),
		strings.Replace(seed, `"1742809059000"`, `"1.5e3"`, 1),
		strings.Replace(seed, `"1742809059000"`, `9223372036854775807`, 1),
		strings.Replace(seed, `"1742809059000"`, `9223372036854775808`, 1),
		strings.Replace(seed, `"1742809059000"`, `"-9223372036854775808"`, 1),
		strings.Replace(seed, `"1742809059000"`, `"-9223372036854775809"`, 1),
		strings.Replace(seed, `"1742809059000"`, `true`, 1),
		strings.Replace(seed, `"1742809059000"`, `null`, 1),
		strings.Replace(seed, `"eviName"`, `"evi_name"`, 1),
		strings.Replace(seed, `"eviName"`, `"evi_name": "x", "eviName"`, 1),
		strings.Replace(seed, `"eviName"`, `"EviName"`, 1),
		strings.Replace(seed, `"eviName"`, `"evi\u004eame"`, 1),
		strings.Replace(seed, `"测试张三"`, `"测试\u5f20三"`, 1),
		strings.Replace(seed, `"测试张三"`, `"a\"b"`, 1),
		strings.Replace(seed, `"测试张三"`, `"a\tb"`, 1),
		strings.Replace(seed, `"测试张三"`, "\"a\tb\"", 1),
		strings.Replace(seed, `"测试张三"`, `""`, 1),
		strings.Replace(seed, `"测试张三"`, `12`, 1),
		strings.Replace(seed, `"测试张三"`, `true`, 1),
		strings.Replace(seed, `"THREEELEMENTS"`, `"threeelements"`, 1),
		strings.Replace(seed, `"THREEELEMENTS"`, `"NO_SUCH_METHOD"`, 1),
		strings.Replace(seed, `"THREEELEMENTS"`, `"REAL_NAME_METHOD_UNSPECIFIED"`, 1),
		strings.Replace(seed, `"threeElements"`, `"face": {"faceImage": "x"}, "threeElements"`, 1),
		strings.Replace(seed, `"threeElements"`, `"face": null, "threeElements"`, 1),
		strings.Replace(seed, `"threeElements"`, `"three_elements"`, 1),
		strings.Replace(seed, `"threeElements": {`, `"threeElements": {}, "x": {`, 1),
		strings.Replace(seed, `"threeElements": {`, `"threeElements": [{`, 1),
		strings.Replace(seed, `"mobile"`, `"unknown"`, 1),
		`{"threeElements": {}}`, `{"threeElements": {"mobile": "1", "mobile": "2"}}`,
		`{"face": {}}`, `{"threeElements": {"mobile": ""}}`, `{"eviName": ""}`,
		`{"eviName": "a",}`, `{"eviName" "a"}`, `{"eviName": "a"`, `{"eviName": "a"}}`,
		`{"eviName": "` + strings.Repeat("长", 300) + `"}`,
	} {
		heldBodiesAgree(t, []byte(b))
	}
}

// So does it for the evidence chain's request (a repeated message field, int32s).
func TestHeldChainBodyDecoderAgreesWithJSONPb(t *testing.T) {
	for _, b := range []string{
		chainBody,
		`{"templateId": "t", "points": []}`,
		`{"points": [{}]}`,
		`{"points": [null]}`,
		`{"points": null}`,
		`{"points": {}}`,
		`{"points": [{"eviPointType": 2147483647}, {"evi_point_type": "-2147483648"}]}`,
		`{"points": [{"eviPointType": -1}]}`,
		`{"points": [{"eviPointType": 2147483648}]}`,
		`{"points": [{"eviPointType": 1, "eviPointId": "P1"}], "points": []}`,
		`{"points": [{"eviPointType": 1}, 2]}`,
		`{"points": [{"eviPointType": 1}]`,
		`{"points": [{"eviPointType": 1},]}`,
		`{"points": [{"eviPointId": "` + strings.Repeat("x", 200) + `"}, {"eviPointId": "y"}]}`,
	} {
		heldBodiesAgreeAs(t, []byte(b), newChain)
	}
}

// chainBody is an evidence chain's request as a REST client sends it.
const chainBody = `{"templateId": "7f0c2a1e", "name": "借款合同证据链",
  "points": [{"eviPointType": 0, "eviPointId": "P123"}, {"eviPointType": 1, "eviPointId": "abc"}]}`

// The seed and an evidence chain's request take quickDecode (the cheap path is not
// left, unseen, to protojson), and decode to protojson's message.
func TestQuickDecodeTakesPlainBodies(t *testing.T) {
	seed := string(seedBytes(t))
	for _, c := range []struct {
		body string
		msg  func() proto.Message
	}{
		{seed, newPersonal},
		{strings.Replace(seed, `"1742809059000"`, `1742809059000`, 1), newPersonal},
		{strings.Replace(seed, `"threeElements"`, `"three_elements"`, 1), newPersonal},
		{chainBody, newChain},
	} {
		got, want := c.msg(), c.msg()
		if !quickDecode([]byte(c.body), got) {
			t.Fatalf("quickDecode refused %s", c.body)
		}
		if err := protojson.Unmarshal([]byte(c.body), want); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("quickDecode: %v, protojson: %v", got, want)
		}
	}
}

// BenchmarkDecodeSeed is the seed's decoding by the gateway's decoder (quickDecode) and
// by protojson, side by side.
func BenchmarkDecodeSeed(b *testing.B) {
	seed := seedBytes(b)
	codec := newMarshaler()
	b.Run("gateway", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m := &evidencev1.CreatePersonalEvidencePointRequest{}
			if err := codec.NewDecoder(newHeldBody(seed)).Decode(m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("protojson", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m := &evidencev1.CreatePersonalEvidencePointRequest{}
			if err := codec.UnmarshalOptions.Unmarshal(seed, m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A body already partly read, and a reader that is not a held body, are decoded by
// runtime.JSONPb's decoder.
func TestDecoderOfOtherReaders(t *testing.T) {
	seed := seedBytes(t)
	codec := newMarshaler()
	held := newHeldBody(append(append([]byte{}, seed...), seed...))
	if _, err := held.Seek(int64(len(seed)), io.SeekStart); err != nil {
		t.Fatal(err)
	}
	got := &evidencev1.CreatePersonalEvidencePointRequest{}
	if err := codec.NewDecoder(held).Decode(got); err != nil || got.GetEviName() == "" {
		t.Fatalf("the second value of a partly read body: %v, %v", got, err)
	}
	got.Reset()
	if err := codec.NewDecoder(io.MultiReader(bytes.NewReader(seed), strings.NewReader(" x"))).Decode(got); err != nil || got.GetEviName() == "" {
		t.Fatalf("another reader: %v, %v", got, err)
	}
}

// FuzzHeldBodyDecoder: whatever the body, the gateway's decoder agrees with
// runtime.JSONPb's.
func FuzzHeldBodyDecoder(f *testing.F) {
	seed := seedBytes(f)
	f.Add(seed)
	f.Add(append(append([]byte{}, seed...), " x"...))
	f.Add([]byte(`{"eviName": "a"} {}`))
	f.Add([]byte(` `))
	f.Add([]byte(`{"eviName": "a", "eviName": "b"}`))
	f.Add([]byte(chainBody))
	f.Add([]byte(`{"points": [{"eviPointType": "1", "evi_point_id": "P1"}], "name": "n"}`))
	f.Add([]byte(strings.Replace(string(seed), `"1742809059000"`, `-0`, 1)))
	f.Fuzz(func(t *testing.T, body []byte) {
		heldBodiesAgree(t, body)
		heldBodiesAgreeAs(t, body, newChain)
	})
}

// Bodies built from the contract's own fields, in every form quickDecode takes and the
// forms next to them, decode as runtime.JSONPb decodes them: quickDecode takes its
// share of them, and protojson the rest.
func TestHeldBodyDecoderAgreesOnGeneratedBodies(t *testing.T) {
	rng := rand.New(rand.NewPCG(24, 1))
	values := []string{`"a"`, `""`, `"测试"`, `"a\"b"`, `"\u0041"`, `"1742809059000"`, `1742809059000`, `-1`, `"-1"`,
		`0`, `"0"`, `-0`, `"00"`, `1.0`, `1e3`, `"1e3"`, `2147483648`, `"9223372036854775808"`, `true`, `false`, `null`,
		`"THREEELEMENTS"`, `"FACE"`, `"CRED_PSN_CH_IDCARD"`, `"BANKCARDFOUR"`, `2`, `[]`, `{}`, `[1]`, `["a"]`, `{"x": 1}`}
	var object func(md protoreflect.MessageDescriptor, depth int) string
	object = func(md protoreflect.MessageDescriptor, depth int) string {
		fields := md.Fields()
		var parts []string
		for range rng.IntN(6) {
			fd := fields.Get(rng.IntN(fields.Len()))
			name := fd.JSONName()
			switch rng.IntN(8) {
			case 0:
				name = fd.TextName()
			case 1:
				name = "unknown"
			}
			var v string
			switch {
			case fd.Kind() == protoreflect.MessageKind && depth < 3 && rng.IntN(4) > 0:
				v = object(fd.Message(), depth+1)
				if fd.IsList() {
					v = "[" + v + ", " + object(fd.Message(), depth+1) + "]"
				}
			case fd.Kind() == protoreflect.EnumKind && rng.IntN(2) == 0:
				v = `"` + string(fd.Enum().Values().Get(rng.IntN(fd.Enum().Values().Len())).Name()) + `"`
			default:
				v = values[rng.IntN(len(values))]
			}
			parts = append(parts, `"`+name+`": `+v)
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	taken := 0
	for _, newMessage := range []func() proto.Message{newPersonal, newChain} {
		md := newMessage().ProtoReflect().Descriptor()
		for range 3000 {
			body := []byte(object(md, 0))
			heldBodiesAgreeAs(t, body, newMessage)
			if quickDecode(body, newMessage()) {
				taken++
			}
		}
	}
	if taken < 300 {
		t.Fatalf("quickDecode took %d of 6,000 generated bodies: the test no longer reaches it", taken)
	}
	t.Logf("quickDecode took %d of 6,000 generated bodies", taken)
}

// The gateway's marshaler writes every message of the contract, filled at random,
// byte for byte as runtime.JSONPb does, whether quickEncode writes it or protojson; and
// quickEncode writes the answers of the evidence operations.
func TestMarshalAgreesWithJSONPb(t *testing.T) {
	rng := rand.New(rand.NewPCG(24, 2))
	strs := []string{"", "a", "P123", "测试", "a\"b", "a\\b", "a\nb", "\x7f", "\u2028", "<&>", "\xff"}
	var fill func(m protoreflect.Message, depth int)
	value := func(m protoreflect.Message, fd protoreflect.FieldDescriptor, depth int) (protoreflect.Value, bool) {
		switch fd.Kind() {
		case protoreflect.StringKind:
			return protoreflect.ValueOfString(strs[rng.IntN(len(strs))]), true
		case protoreflect.BoolKind:
			return protoreflect.ValueOfBool(rng.IntN(2) == 0), true
		case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
			return protoreflect.ValueOfInt32(int32(rng.Uint32())), true
		case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
			return protoreflect.ValueOfInt64(int64(rng.Uint64())), true
		case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
			return protoreflect.ValueOfUint32(rng.Uint32()), true
		case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
			return protoreflect.ValueOfUint64(rng.Uint64()), true
		case protoreflect.BytesKind:
			return protoreflect.ValueOfBytes([]byte("ab")), true
		case protoreflect.EnumKind:
			vs := fd.Enum().Values()
			if rng.IntN(5) == 0 {
				return protoreflect.ValueOfEnum(99), true // no name: protojson writes the number
			}
			return protoreflect.ValueOfEnum(vs.Get(rng.IntN(vs.Len())).Number()), true
		case protoreflect.MessageKind:
			if depth > 2 {
				return protoreflect.Value{}, false
			}
			var e protoreflect.Message
			if fd.IsList() {
				e = m.Mutable(fd).List().NewElement().Message()
			} else {
				e = m.NewField(fd).Message()
			}
			fill(e, depth+1)
			return protoreflect.ValueOfMessage(e), true
		}
		return protoreflect.Value{}, false
	}
	fill = func(m protoreflect.Message, depth int) {
		fields := m.Descriptor().Fields()
		for i := range fields.Len() {
			fd := fields.Get(i)
			if fd.IsMap() || rng.IntN(3) == 0 {
				continue
			}
			if fd.IsList() {
				l := m.Mutable(fd).List()
				for range rng.IntN(3) {
					if v, ok := value(m, fd, depth); ok {
						l.Append(v)
					}
				}
				continue
			}
			if v, ok := value(m, fd, depth); ok {
				m.Set(fd, v)
			}
		}
	}
	codec := newMarshaler()
	msgs := evidencev1.File_esign_evidence_v1_evidence_proto.Messages()
	quick := map[protoreflect.FullName]int{}
	for i := range msgs.Len() {
		mt, err := protoregistry.GlobalTypes.FindMessageByName(msgs.Get(i).FullName())
		if err != nil {
			t.Fatal(err)
		}
		for range 300 {
			m := mt.New()
			fill(m, 0)
			got, gotErr := codec.Marshal(m.Interface())
			want, wantErr := codec.JSONPb.Marshal(m.Interface())
			if (gotErr == nil) != (wantErr == nil) || !bytes.Equal(got, want) {
				t.Fatalf("%s: %s (%v), runtime.JSONPb: %s (%v)", mt.Descriptor().FullName(), got, gotErr, want, wantErr)
			}
			if _, ok := quickEncode(m, nil, 0); ok {
				quick[mt.Descriptor().FullName()]++
			}
		}
	}
	for _, m := range []proto.Message{&evidencev1.CreatePersonalEvidencePointResponse{}, &evidencev1.CreateEvidenceChainResponse{}} {
		if quick[m.ProtoReflect().Descriptor().FullName()] < 50 {
			t.Errorf("quickEncode wrote %d of 300 %s", quick[m.ProtoReflect().Descriptor().FullName()], m.ProtoReflect().Descriptor().FullName())
		}
		// Unset, too (every field written with its zero value).
		got, _ := codec.Marshal(m)
		want, _ := codec.JSONPb.Marshal(m)
		if !bytes.Equal(got, want) {
			t.Errorf("empty %T: %s, runtime.JSONPb: %s", m, got, want)
		}
	}
	t.Logf("quickEncode wrote: %v", quick)
}

// BenchmarkEncodeAnswer is an evidence point's answer written by the gateway's
// marshaler (quickEncode) and by runtime.JSONPb's, side by side.
func BenchmarkEncodeAnswer(b *testing.B) {
	answer := &evidencev1.CreatePersonalEvidencePointResponse{EviPointId: "P1742809059000123456", Replayed: false}
	codec := newMarshaler()
	b.Run("gateway", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := codec.Marshal(answer); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("protojson", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := codec.JSONPb.Marshal(answer); err != nil {
				b.Fatal(err)
			}
		}
	})
}
