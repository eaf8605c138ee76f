// Package auth verifies and mints Parley's JWTs (HS256, sub = user id).
package auth

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-chat/parley/domain"
)

// Verifier checks tokens.
type Verifier struct{ keys jwt.VerificationKeySet }

// NewVerifier accepts tokens signed with the HS256 secret or, during a
// rotation, with one of the previous secrets (docs/runbook.md).
func NewVerifier(secret string, previous ...string) Verifier {
	v := Verifier{keys: jwt.VerificationKeySet{Keys: []jwt.VerificationKey{[]byte(secret)}}}
	for _, p := range previous {
		v.keys.Keys = append(v.keys.Keys, []byte(p))
	}
	return v
}

// Verify returns the token's user id. alg none, other algorithms, a wrong
// signature, a missing or past exp and a missing or malformed sub are all
// refused.
func (v Verifier) Verify(token string) (string, error) {
	if len(token) > 4096 {
		return "", fmt.Errorf("%w: token too long", domain.ErrUnauthorized)
	}
	claims := jwt.RegisteredClaims{}
	_, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return v.keys, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithLeeway(5*time.Second))
	if err != nil {
		return "", fmt.Errorf("%w: %v", domain.ErrUnauthorized, err)
	}
	if err := domain.ValidateUserID("sub", claims.Subject); err != nil {
		return "", fmt.Errorf("%w: token sub must be 1-64 chars of [A-Za-z0-9_.-]", domain.ErrUnauthorized)
	}
	return claims.Subject, nil
}

// Mint signs a token for user valid for ttl.
func Mint(secret, user string, ttl time.Duration) (string, error) {
	if err := domain.ValidateUserID("user_id", user); err != nil {
		return "", err
	}
	now := time.Now()
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject: user, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	})
	s, err := t.SignedString([]byte(secret))
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}

// Subprotocol is the WebSocket subprotocol of the native protocol. A browser,
// which cannot set headers on a WebSocket, offers it together with its token
// as a second subprotocol: new WebSocket(url, ["parley", "bearer." + token]).
// The server selects "parley" and never echoes the token.
const Subprotocol = "parley"

// BearerProtocolPrefix starts the subprotocol that carries a token.
const BearerProtocolPrefix = "bearer."

// FromRequest reads the token of a request: the Authorization bearer header,
// or, on /ws (allowWS), the "bearer.<jwt>" entry of Sec-WebSocket-Protocol,
// or the access_token query parameter, in that order. The first of them
// present is the token, whatever it holds.
func FromRequest(r *http.Request, allowWS bool) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
		return ""
	}
	if !allowWS {
		return ""
	}
	if t, ok := fromSubprotocols(r.Header.Values("Sec-WebSocket-Protocol")); ok {
		return t
	}
	return r.URL.Query().Get("access_token")
}

// fromSubprotocols finds the bearer entry among the offered subprotocols
// (a comma-separated list, possibly over several header lines).
func fromSubprotocols(lines []string) (string, bool) {
	for _, line := range lines {
		for p := range strings.SplitSeq(line, ",") {
			if t, ok := strings.CutPrefix(strings.TrimSpace(p), BearerProtocolPrefix); ok {
				return t, true
			}
		}
	}
	return "", false
}
