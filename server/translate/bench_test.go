package translate

import (
	"testing"

	"github.com/esign-evidence/esign-evidence/upstream"
)

// BenchmarkTranslateAndSign is the service's own work per call besides validation:
// translation to e签宝's wire type, the one marshal, Content-MD5 and the signature.
func BenchmarkTranslateAndSign(b *testing.B) {
	req := loadSeed(b)
	secret := []byte("bench-secret")
	b.ReportAllocs()
	for b.Loop() {
		body, err := ToUpstream(req, upstream.RevisionSeed).Marshal(upstream.RevisionSeed)
		if err != nil {
			b.Fatal(err)
		}
		md5 := upstream.ContentMD5(body)
		_ = upstream.Sign(secret, upstream.StringToSign("POST", upstream.AcceptAll, md5, upstream.ContentTypeJSON, "", upstream.PathPsnRealname))
	}
}
