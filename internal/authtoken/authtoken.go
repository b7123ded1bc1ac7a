// Package authtoken holds the callers' bearer tokens as SHA-256 hashes, checks a
// presented token against all of them in constant time, and lets the set be replaced
// while the service runs (SIGHUP re-reads AUTH_TOKENS_FILE).
package authtoken

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
)

// Token is one accepted bearer token.
type Token struct {
	// Identity names the caller in logs, metrics and as its customBizId namespace.
	Identity string
	// SHA256 is the SHA-256 of the token; the token itself is never held.
	SHA256 [32]byte
}

// Set is the current set of accepted tokens. It is safe for concurrent use; Replace
// swaps the whole set at once, so a check sees either the old or the new set.
type Set struct {
	tokens atomic.Pointer[[]Token]
}

// NewSet returns a set holding tokens.
func NewSet(tokens []Token) *Set {
	s := &Set{}
	s.Replace(tokens)
	return s
}

// Replace makes tokens the accepted set.
func (s *Set) Replace(tokens []Token) {
	cp := append([]Token(nil), tokens...)
	s.tokens.Store(&cp)
}

// Tokens returns a copy of the accepted set.
func (s *Set) Tokens() []Token {
	if s == nil {
		return nil
	}
	if p := s.tokens.Load(); p != nil {
		return append([]Token(nil), (*p)...)
	}
	return nil
}

// Len is the number of accepted tokens.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	if p := s.tokens.Load(); p != nil {
		return len(*p)
	}
	return 0
}

// Identity returns the caller whose token is tok. It compares the token's hash with
// every accepted hash, without stopping at a match, so timing tells nothing about the
// tokens.
func (s *Set) Identity(tok string) (string, bool) {
	if s == nil || tok == "" {
		return "", false
	}
	p := s.tokens.Load()
	if p == nil {
		return "", false
	}
	sum := sha256.Sum256([]byte(tok))
	found := ""
	for _, t := range *p {
		if subtle.ConstantTimeCompare(sum[:], t.SHA256[:]) == 1 {
			found = t.Identity
		}
	}
	return found, found != ""
}

// MinTokenLength is the shortest token a tokens file may hold.
const MinTokenLength = 16

var validIdentity = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// reserved are names the service gives callers itself: "anonymous" (authentication off),
// "public" (health checks and reflection without credentials), "unauthenticated" (a
// refused call, in the access log and the metrics). No token caller may take one.
var reserved = map[string]bool{"anonymous": true, "public": true, "unauthenticated": true}

// ValidIdentity reports whether name may name a caller: 1 to 64 letters, digits, '.',
// '_' or '-', and not a name the service reserves.
func ValidIdentity(name string) bool {
	return validIdentity.MatchString(name) && !reserved[strings.ToLower(name)]
}

// Parse reads tokens from a file of "<caller> <token>" lines (blank lines and # comments
// allowed) and from hashes given as "<caller>:<sha256 hex>,...". Only the SHA-256 of
// each token is kept. Errors name the file and line, never a token, and quote nothing
// from the file (a line's fields may have been swapped, putting a token first).
func Parse(file, hashes string) ([]Token, error) {
	var out []Token
	seen := map[[32]byte]bool{}
	add := func(id string, sum [32]byte) error {
		if !validIdentity.MatchString(id) {
			return errors.New("the caller name (the first field) must be 1 to 64 letters, digits, '.', '_' or '-'")
		}
		if reserved[strings.ToLower(id)] {
			return errors.New("the caller name (the first field) is one the service reserves (anonymous, public, unauthenticated)")
		}
		if seen[sum] {
			return errors.New("a token is given twice")
		}
		seen[sum] = true
		out = append(out, Token{Identity: id, SHA256: sum})
		return nil
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("cannot read %q", file)
		}
		for i, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			id, tok, ok := strings.Cut(line, " ")
			tok = strings.TrimSpace(tok)
			if !ok || len(tok) < MinTokenLength {
				return nil, fmt.Errorf("%s line %d: want \"<caller> <token>\" with a token of at least %d characters", file, i+1, MinTokenLength)
			}
			if err := add(id, sha256.Sum256([]byte(tok))); err != nil {
				return nil, fmt.Errorf("%s line %d: %w", file, i+1, err)
			}
		}
	}
	for i, entry := range strings.Split(hashes, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		id, hx, _ := strings.Cut(entry, ":")
		raw, err := hex.DecodeString(hx)
		if err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("AUTH_TOKEN_HASHES entry %d: want <caller>:<64 hex digits of SHA-256>", i+1)
		}
		if err := add(id, [32]byte(raw)); err != nil {
			return nil, fmt.Errorf("AUTH_TOKEN_HASHES entry %d: %w", i+1, err)
		}
	}
	return out, nil
}
