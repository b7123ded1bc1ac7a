// Package synthetic makes up people for import files: tests, OPERATIONS.md's esign-import example and
// benchmarks. Every value is invented, but each passes the contract's rules as a real
// one would: mainland ID numbers carry the right check character, mobile numbers are in
// a mainland range, bank cards have 16 digits.
package synthetic

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/esign-evidence/esign-evidence/validation"
)

// Images names the local files a row's images come from; empty fields make the row carry
// file IDs instead.
type Images struct {
	CardPortrait, CardNationalEmblem, Face string
}

// IDNumber returns the i-th made-up 18-character mainland ID number (Beijing Dongcheng
// region code, a birth date in 1970–1999, a sequence number, the GB 11643 check
// character).
func IDNumber(i int) string {
	birth := time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, i%10950)
	body := fmt.Sprintf("110101%s%03d", birth.Format("20060102"), i%1000)
	return body + string(validation.IDCardCheckChar(body))
}

// Row returns the i-th person as one import line's JSON object, in e签宝's names. Rows
// rotate through the three verification methods.
func Row(i int, customBizID string, img Images) map[string]any {
	ts := time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC).UnixMilli() + int64(i)*1000
	m := map[string]any{
		"customBizId": customBizID,
		"eviName":     fmt.Sprintf("历史实名导入-%d", i),
		"name":        fmt.Sprintf("测试用户%d", i),
		"cardNo":      IDNumber(i),
		"timeStamp":   ts,
	}
	setImage(m, "cardPortrait", img.CardPortrait, fmt.Sprintf("%032x", i*7+1))
	setImage(m, "cardNationalEmblem", img.CardNationalEmblem, fmt.Sprintf("%032x", i*7+2))
	serial := fmt.Sprintf("SYN%08d", i)
	mobile := fmt.Sprintf("198%08d", i%100_000_000)
	switch i % 3 {
	case 0:
		m["realNameMethod"] = "THREEELEMENTS"
		m["threeElements"] = map[string]any{
			"infoVerifySupplier": "合成数据供应商", "verifyTime": "20250301",
			"verifySerialNumber": serial, "mobile": mobile, "smsCode": "246810", "smsSupplier": "合成短信",
		}
	case 1:
		m["realNameMethod"] = "BANKCARDFOUR"
		m["bankCardFour"] = map[string]any{
			"infoVerifySupplier": "合成数据供应商", "verifyTime": "20250301", "verifySerialNumber": serial,
			"openingBank": "合成银行", "bankCard": fmt.Sprintf("62220200%08d", i%100_000_000),
			"mobile": mobile, "smsCode": "135790", "smsSupplier": "合成短信",
		}
	default:
		face := map[string]any{
			"infoVerifySupplier": "合成数据供应商", "verifyTime": "20250301", "verifySerialNumber": serial,
			"faceImageSimilarScore": "96.5", "faceLiveDetectScore": "99.1",
		}
		if img.Face != "" {
			m["faceImageFile"] = img.Face
		} else {
			face["faceImage"] = fmt.Sprintf("%032x", i*7+3)
		}
		m["realNameMethod"] = "FACE"
		m["face"] = face
	}
	return m
}

func setImage(m map[string]any, field, file, id string) {
	if file != "" {
		m[field+"File"] = file
		return
	}
	m[field] = id
}

// Line is Row as one line of JSON (without the newline).
func Line(i int, customBizID string, img Images) []byte {
	b, err := json.Marshal(Row(i, customBizID, img))
	if err != nil {
		panic(err) // maps of strings and numbers always marshal
	}
	return b
}
