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

// FromRequest reads the bearer token, or for browsers on /ws the
// access_token query parameter.
func FromRequest(r *http.Request, allowQuery bool) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
		return ""
	}
	if allowQuery {
		return r.URL.Query().Get("access_token")
	}
	return ""
}
