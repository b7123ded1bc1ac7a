package esignsim

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/esign-evidence/esign-evidence/upstream"
)

// The checks below are the API reference's own rules for the evidence-point body
// (required fields, documented lengths, enums, the block matching the method) plus the
// identity-document formats e签宝 documents for its account API. Lengths are counted in
// UTF-16 code units, as Java's String.length() counts them.

var realNameMethods = map[string]string{
	upstream.MethodThreeElements: "threeElements",
	upstream.MethodBankCardFour:  "bankCardFour",
	upstream.MethodFace:          "face",
}

var cardFormats = map[string]*regexp.Regexp{
	"CRED_PSN_CH_IDCARD":   regexp.MustCompile(`^([0-9]{17}[0-9Xx]|[0-9]{15})$`),
	"CRED_PSN_CH_HONGKONG": regexp.MustCompile(`^[Hh]([0-9]{8}|[0-9]{10})$`),
	"CRED_PSN_CH_MACAO":    regexp.MustCompile(`^[Mm]([0-9]{8}|[0-9]{10})$`),
	"CRED_PSN_CH_TWCARD":   regexp.MustCompile(`^([0-9]{8}|[0-9]{10})$`),
	"CRED_PSN_PASSPORT":    regexp.MustCompile(`^[A-Za-z0-9]{1,25}$`),
	"CRED_PSN_FOREIGN":     nil,
	"CRED_PSN_OTHER":       nil,
}

var blockFields = map[string][]string{
	"threeElements": {"infoVerifySupplier", "verifyTime", "verifySerialNumber", "mobile", "smsCode", "smsSupplier"},
	"bankCardFour":  {"infoVerifySupplier", "verifyTime", "verifySerialNumber", "openingBank", "bankCard", "mobile", "smsCode", "smsSupplier"},
	"face":          {"infoVerifySupplier", "verifyTime", "verifySerialNumber", "faceImage", "faceImageSimilarScore", "faceLiveDetectScore"},
}

var certFields = []string{
	"certAgreementReadTitle", "certAgreementReadVersion", "certAgreementReadHash",
	"certAgreementReadTime", "certAgreementReadType", "certAgreementReadIP",
}

// checkPsnBody returns "" if body is acceptable, else the text after "参数错误: ".
func checkPsnBody(body []byte, rev upstream.Revision) string {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return "请求体不是有效的JSON对象"
	}
	str := func(obj map[string]json.RawMessage, k string) (string, string) {
		raw, ok := obj[k]
		if !ok || string(raw) == "null" {
			return "", ""
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", k + "类型错误"
		}
		return s, ""
	}
	required := func(obj map[string]json.RawMessage, prefix, k string) (string, string) {
		s, msg := str(obj, k)
		if msg != "" {
			return "", prefix + msg
		}
		if strings.TrimSpace(s) == "" {
			return "", prefix + k + "不能为空"
		}
		return s, ""
	}

	eviName, msg := required(m, "", "eviName")
	if msg != "" {
		return msg
	}
	if javaLen(eviName) > 64 {
		return "eviName不能超过64个字符"
	}
	bizID, msg := str(m, "customBizId")
	if msg != "" {
		return msg
	}
	if javaLen(bizID) > 36 {
		return "customBizId不能超过36个字符"
	}
	method, msg := required(m, "", "realNameMethod")
	if msg != "" {
		return msg
	}
	block, ok := realNameMethods[method]
	if !ok {
		return "realNameMethod不支持的实名方式"
	}
	if msg := checkTimeStamp(m["timeStamp"], rev); msg != "" {
		return msg
	}
	for _, k := range []string{"name", "cardNo", "cardPortrait", "cardNationalEmblem"} {
		if _, msg := required(m, "", k); msg != "" {
			return msg
		}
	}
	cardType, msg := str(m, "cardType")
	if msg != "" {
		return msg
	}
	if cardType == "" {
		cardType = upstream.CardTypeMainlandID
	}
	format, ok := cardFormats[cardType]
	if !ok {
		return "cardType不支持的证件类型"
	}
	cardNo, _ := str(m, "cardNo")
	if format != nil && !format.MatchString(cardNo) {
		// e签宝's messages may quote the value they reject, as this one does.
		return "证件号格式不正确: " + cardNo
	}
	if _, msg := str(m, "mark"); msg != "" {
		return msg
	}

	var inner map[string]json.RawMessage
	if raw, ok := m[block]; !ok || string(raw) == "null" {
		return block + "不能为空"
	} else if err := json.Unmarshal(raw, &inner); err != nil || inner == nil {
		return block + "类型错误"
	}
	for _, k := range blockFields[block] {
		if _, msg := required(inner, block+".", k); msg != "" {
			return msg
		}
	}

	if rev == upstream.Revision2025 {
		for _, k := range certFields {
			if _, msg := required(m, "", k); msg != "" {
				return msg
			}
		}
		if t, _ := str(m, "certAgreementReadType"); t != "CHECK" && t != "CLICK" {
			return "certAgreementReadType取值错误"
		}
		if t, _ := str(m, "certAgreementReadTime"); !validBeijingTime(t) {
			return "certAgreementReadTime格式错误"
		}
	}
	return ""
}

func checkTimeStamp(raw json.RawMessage, rev upstream.Revision) string {
	if len(raw) == 0 || string(raw) == "null" {
		return "timeStamp不能为空"
	}
	if rev == upstream.Revision2025 {
		var s string
		if json.Unmarshal(raw, &s) != nil || !validBeijingTime(s) {
			return "timeStamp格式错误, 应为yyyy-MM-dd HH:mm:ss"
		}
		return ""
	}
	// A Java long: a JSON number, or a string of digits that Jackson coerces.
	s := string(raw)
	if unq, err := strconv.Unquote(s); err == nil {
		s = unq
	}
	if _, err := strconv.ParseInt(s, 10, 64); err != nil {
		return "timeStamp格式错误"
	}
	return ""
}

func validBeijingTime(s string) bool {
	_, err := time.Parse(upstream.BeijingLayout, s)
	return err == nil
}

// javaLen is Java's String.length(): UTF-16 code units.
func javaLen(s string) int {
	return len(utf16.Encode([]rune(s)))
}
