package upstream

import (
	"crypto/hmac"
	"crypto/md5" //nolint:gosec // e签宝's Content-MD5 is MD5 by specification, not a security choice of ours.
	"crypto/sha256"
	"encoding/base64"
	"sort"
	"strings"
)

// Header names and fixed values of e签宝's "Signature" auth mode (OpenAPI v3).
const (
	HeaderAppID      = "X-Tsign-Open-App-Id"
	HeaderAuthMode   = "X-Tsign-Open-Auth-Mode"
	HeaderTimestamp  = "X-Tsign-Open-Ca-Timestamp"
	HeaderSignature  = "X-Tsign-Open-Ca-Signature"
	HeaderContentMD5 = "Content-MD5"
	// HeaderTraceID is the response header carrying e签宝's trace ID, which e签宝's
	// support asks for when a call is investigated.
	HeaderTraceID = "X-Tsign-Trace-Id"

	// AuthModeSignature is the only auth mode this client uses. Without the header the
	// gateway assumes token mode and answers 401 TOKEN_CANT_BE_NULL.
	AuthModeSignature = "Signature"
	// AcceptAll is the Accept value every e签宝 client sends; it is part of the signature.
	AcceptAll = "*/*"
	// ContentTypeJSON is the Content-Type of every JSON call; it is part of the signature.
	ContentTypeJSON = "application/json; charset=UTF-8"
)

// ContentMD5 returns e签宝's Content-MD5 of body: standard Base64, with padding, of the
// 16 raw bytes of its MD5 (not of the hex digest).
func ContentMD5(body []byte) string {
	sum := md5.Sum(body) //nolint:gosec // see import
	return base64.StdEncoding.EncodeToString(sum[:])
}

// StringToSign builds the string e签宝 signs:
//
//	METHOD \n Accept \n Content-MD5 \n Content-Type \n Date \n PathAndQuery
//
// Every line but the last keeps its LF even when empty. Nobody sends Date, and the
// optional signed-headers block is used by no known client, so it is left out (it then
// adds no line). pathAndQuery must already be canonical (see CanonicalPathAndQuery).
func StringToSign(method, accept, contentMD5, contentType, date, pathAndQuery string) string {
	return strings.ToUpper(method) + "\n" +
		accept + "\n" +
		contentMD5 + "\n" +
		contentType + "\n" +
		date + "\n" +
		pathAndQuery
}

// Sign returns the standard Base64 of HMAC-SHA256 over stringToSign's UTF-8 bytes, keyed
// with the app secret's UTF-8 bytes.
func Sign(secret []byte, stringToSign string) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(stringToSign))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// CanonicalPathAndQuery returns the path and query part of the string to sign: the path
// as sent (no scheme or host) and, when there is a query, its parameters sorted by key in
// ASCII order and joined with '&'. Parameters keep the form they are sent in; parameters
// with the same key keep their order.
func CanonicalPathAndQuery(path, rawQuery string) string {
	if rawQuery == "" {
		return path
	}
	params := strings.Split(rawQuery, "&")
	sort.SliceStable(params, func(i, j int) bool {
		return paramKey(params[i]) < paramKey(params[j])
	})
	return path + "?" + strings.Join(params, "&")
}

func paramKey(p string) string {
	k, _, _ := strings.Cut(p, "=")
	return k
}
