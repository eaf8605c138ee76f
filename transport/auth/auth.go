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
type Verifier struct {
	keys   jwt.VerificationKeySet
	policy Policy
}

// Policy adds checks to the signature and exp: the token's aud and iss
// when set (CHAT_JWT_AUDIENCE, CHAT_JWT_ISSUER), and a longest lifetime
// (CHAT_JWT_MAX_LIFETIME: exp - iat, or exp - now without iat), so that a
// leaked long-lived token is refused. Zero values check nothing.
type Policy struct {
	Audience    string
	Issuer      string
	MaxLifetime time.Duration
}

// With returns v checking p too.
func (v Verifier) With(p Policy) Verifier {
	v.policy = p
	return v
}

// Identity is a verified token's user and expiry: a connection opened with
// it is closed when it expires.
type Identity struct {
	User    string
	Expires time.Time
}

// OpensAt refuses, with unauthorized, an identity whose token has expired
// by now, though within the verifier's clock-skew leeway: a connection
// opened with it would be closed as it opened.
func (id Identity) OpensAt(now time.Time) error {
	if !now.Before(id.Expires) {
		return fmt.Errorf("%w: token expired", domain.ErrUnauthorized)
	}
	return nil
}

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
// signature, a missing or past exp, an iat in the future and a missing or
// malformed sub are all refused.
func (v Verifier) Verify(token string) (string, error) {
	id, err := v.Identify(token)
	return id.User, err
}

// Identify verifies token (as Verify) and returns its user and expiry.
func (v Verifier) Identify(token string) (Identity, error) {
	if len(token) > 4096 {
		return Identity{}, fmt.Errorf("%w: token too long", domain.ErrUnauthorized)
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithLeeway(5 * time.Second)}
	if v.policy.Audience != "" {
		opts = append(opts, jwt.WithAudience(v.policy.Audience))
	}
	if v.policy.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.policy.Issuer))
	}
	claims := jwt.RegisteredClaims{}
	_, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return v.keys, nil }, opts...)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", domain.ErrUnauthorized, err)
	}
	if err := domain.ValidateUserID("sub", claims.Subject); err != nil {
		return Identity{}, fmt.Errorf("%w: token sub must be 1-64 chars of [A-Za-z0-9_.-]", domain.ErrUnauthorized)
	}
	exp := claims.ExpiresAt.Time
	if max := v.policy.MaxLifetime; max > 0 {
		from := time.Now()
		if claims.IssuedAt != nil {
			from = claims.IssuedAt.Time
		}
		if exp.Sub(from) > max {
			return Identity{}, fmt.Errorf("%w: token lives longer than the %v this server accepts", domain.ErrUnauthorized, max)
		}
	}
	return Identity{User: claims.Subject, Expires: exp}, nil
}

// Mint signs a token for user valid for ttl.
func Mint(secret, user string, ttl time.Duration) (string, error) {
	return MintFor(secret, user, ttl, Policy{})
}

// MintFor signs a token for user valid for ttl, with p's audience and
// issuer, so that a server checking them accepts it.
func MintFor(secret, user string, ttl time.Duration, p Policy) (string, error) {
	if err := domain.ValidateUserID("user_id", user); err != nil {
		return "", err
	}
	now := time.Now()
	claims := jwt.RegisteredClaims{
		Subject: user, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)), Issuer: p.Issuer,
	}
	if p.Audience != "" {
		claims.Audience = jwt.ClaimStrings{p.Audience}
	}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
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
		// The scheme is case-insensitive (RFC 9110, 11.1).
		if len(h) > len("Bearer ") && strings.EqualFold(h[:len("Bearer ")], "Bearer ") {
			return strings.TrimSpace(h[len("Bearer "):])
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
