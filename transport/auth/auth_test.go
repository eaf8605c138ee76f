package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-chat/parley/domain"
)

const secret = "s3cret"

func sign(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifyRefusesBadTokens(t *testing.T) {
	v := NewVerifier(secret)
	exp := time.Now().Add(time.Hour).Unix()
	good := sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "alice", "exp": exp})
	if u, err := v.Verify(good); err != nil || u != "alice" {
		t.Fatalf("good token: %q %v", u, err)
	}
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sub": "alice", "exp": exp})
	for name, tok := range map[string]string{
		"alg none":      none,
		"wrong secret":  sign(t, jwt.SigningMethodHS256, []byte("other"), jwt.MapClaims{"sub": "alice", "exp": exp}),
		"HS512":         sign(t, jwt.SigningMethodHS512, []byte(secret), jwt.MapClaims{"sub": "alice", "exp": exp}),
		"expired":       sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(-time.Hour).Unix()}),
		"no exp":        sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "alice"}),
		"missing sub":   sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"exp": exp}),
		"bad sub":       sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "a b/c", "exp": exp}),
		"long sub":      sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": strings.Repeat("a", 65), "exp": exp}),
		"garbage":       "not.a.token",
		"empty":         "",
		"tampered body": good[:len(good)-3] + "abc",
	} {
		if _, err := v.Verify(tok); !errors.Is(err, domain.ErrUnauthorized) {
			t.Errorf("%s: %v, want unauthorized", name, err)
		}
	}
}

func TestMintRoundTrip(t *testing.T) {
	tok, err := Mint(secret, "bob", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if u, err := NewVerifier(secret).Verify(tok); err != nil || u != "bob" {
		t.Fatalf("%q %v", u, err)
	}
	if _, err := Mint(secret, "bad user", time.Minute); err == nil {
		t.Fatal("minted a token for an invalid user id")
	}
}

func FuzzVerify(f *testing.F) {
	tok, _ := Mint(secret, "alice", time.Hour)
	f.Add(tok)
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		u, err := NewVerifier(secret).Verify(s)
		if err == nil && domain.ValidateUserID("sub", u) != nil {
			t.Fatalf("accepted invalid sub %q", u)
		}
	})
}

// During a secret rotation tokens of the previous secrets stay valid; others
// are still refused.
func TestVerifyAcceptsPreviousSecrets(t *testing.T) {
	exp := time.Now().Add(time.Hour).Unix()
	v := NewVerifier("new", "old", "older")
	for _, key := range []string{"new", "old", "older"} {
		tok := sign(t, jwt.SigningMethodHS256, []byte(key), jwt.MapClaims{"sub": "alice", "exp": exp})
		if u, err := v.Verify(tok); err != nil || u != "alice" {
			t.Errorf("token signed with %q: %q %v", key, u, err)
		}
	}
	stale := sign(t, jwt.SigningMethodHS256, []byte("retired"), jwt.MapClaims{"sub": "alice", "exp": exp})
	if _, err := v.Verify(stale); !errors.Is(err, domain.ErrUnauthorized) {
		t.Errorf("token of a retired secret: %v, want unauthorized", err)
	}
	if _, err := NewVerifier("new").Verify(sign(t, jwt.SigningMethodHS256, []byte("old"), jwt.MapClaims{"sub": "alice", "exp": exp})); err == nil {
		t.Error("a previous secret is accepted without being configured")
	}
}

// FromRequest takes the Authorization header, else on /ws the bearer
// subprotocol (what browsers send), else the access_token query parameter.
func TestFromRequest(t *testing.T) {
	type hdr = map[string][]string
	for _, c := range []struct {
		name   string
		target string
		header hdr
		ws     bool
		want   string
	}{
		{"authorization", "/ws", hdr{"Authorization": {"Bearer a.b.c"}}, true, "a.b.c"},
		{"authorization wins", "/ws?access_token=q.q.q", hdr{"Authorization": {"Bearer a.b.c"}, "Sec-Websocket-Protocol": {"parley, bearer.s.s.s"}}, true, "a.b.c"},
		{"scheme in any case", "/api/v1/conversations", hdr{"Authorization": {"bearer a.b.c"}}, false, "a.b.c"},
		{"scheme in capitals", "/ws", hdr{"Authorization": {"BEARER a.b.c"}}, true, "a.b.c"},
		{"not bearer", "/ws?access_token=q.q.q", hdr{"Authorization": {"Basic eDp5"}}, true, ""},
		{"subprotocol", "/ws", hdr{"Sec-Websocket-Protocol": {"parley, bearer.s.s.s"}}, true, "s.s.s"},
		{"subprotocol first", "/ws", hdr{"Sec-Websocket-Protocol": {"bearer.s.s.s,parley"}}, true, "s.s.s"},
		{"subprotocol second line", "/ws", hdr{"Sec-Websocket-Protocol": {"parley", " bearer.s.s.s "}}, true, "s.s.s"},
		{"subprotocol wins over query", "/ws?access_token=q.q.q", hdr{"Sec-Websocket-Protocol": {"parley, bearer.s.s.s"}}, true, "s.s.s"},
		{"empty bearer subprotocol", "/ws?access_token=q.q.q", hdr{"Sec-Websocket-Protocol": {"parley, bearer."}}, true, ""},
		{"parley alone", "/ws?access_token=q.q.q", hdr{"Sec-Websocket-Protocol": {"parley"}}, true, "q.q.q"},
		{"query", "/ws?access_token=q.q.q", nil, true, "q.q.q"},
		{"none", "/ws", nil, true, ""},
		{"API: no subprotocol", "/api/v1/conversations", hdr{"Sec-Websocket-Protocol": {"parley, bearer.s.s.s"}}, false, ""},
		{"API: no query", "/api/v1/conversations?access_token=q.q.q", nil, false, ""},
	} {
		r := httptest.NewRequest(http.MethodGet, c.target, nil)
		for k, v := range c.header {
			r.Header[k] = v
		}
		if got := FromRequest(r, c.ws); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// With a policy, aud and iss must match and a token may not live longer
// than MaxLifetime; MintFor mints what the policy accepts.
func TestPolicy(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	p := Policy{Audience: "parley", Issuer: "https://id.example", MaxLifetime: 24 * time.Hour}
	v := NewVerifier(secret).With(p)
	good, _ := MintFor(secret, "ann", time.Hour, p)
	id, err := v.Identify(good)
	if err != nil || id.User != "ann" || time.Until(id.Expires) > time.Hour || time.Until(id.Expires) < 59*time.Minute {
		t.Fatalf("a token the policy accepts: %+v %v", id, err)
	}
	now := time.Now()
	for name, claims := range map[string]jwt.MapClaims{
		"no aud":       {"sub": "ann", "iss": p.Issuer, "exp": now.Add(time.Hour).Unix()},
		"other aud":    {"sub": "ann", "aud": "other", "iss": p.Issuer, "exp": now.Add(time.Hour).Unix()},
		"other iss":    {"sub": "ann", "aud": "parley", "iss": "https://evil.example", "exp": now.Add(time.Hour).Unix()},
		"too long":     {"sub": "ann", "aud": "parley", "iss": p.Issuer, "iat": now.Unix(), "exp": now.Add(48 * time.Hour).Unix()},
		"long, no iat": {"sub": "ann", "aud": "parley", "iss": p.Issuer, "exp": now.Add(30 * 24 * time.Hour).Unix()},
		// An iat in the future would shorten the lifetime measured from it.
		"future iat": {"sub": "ann", "aud": "parley", "iss": p.Issuer, "iat": now.Add(30 * 24 * time.Hour).Unix(), "exp": now.Add(31 * 24 * time.Hour).Unix()},
	} {
		if _, err := v.Verify(sign(t, jwt.SigningMethodHS256, []byte(secret), claims)); !errors.Is(err, domain.ErrUnauthorized) {
			t.Errorf("%s: %v, want unauthorized", name, err)
		}
	}
	// Without a policy, aud and iss are not required.
	if _, err := NewVerifier(secret).Verify(sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "ann", "exp": now.Add(time.Hour).Unix()})); err != nil {
		t.Errorf("no policy: %v", err)
	}
}
