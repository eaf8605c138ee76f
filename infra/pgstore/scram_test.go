package pgstore

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// The verifier SetupRoles stores lets a client that knows the password,
// and only such a client, through a SCRAM-SHA-256 exchange (RFC 7677), run
// here the way Postgres runs it against the stored keys, with an
// independent client implementation (franz-go's).
func TestSCRAMVerifierAuthenticates(t *testing.T) {
	const password = "0123456789abcdef0123"
	verifier, err := scramVerifier(password)
	if err != nil {
		t.Fatal(err)
	}
	// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
	mech, rest, _ := strings.Cut(verifier, "$")
	params, keys, _ := strings.Cut(rest, "$")
	iter, salt, _ := strings.Cut(params, ":")
	storedB64, serverB64, _ := strings.Cut(keys, ":")
	stored, err1 := base64.StdEncoding.DecodeString(storedB64)
	serverKey, err2 := base64.StdEncoding.DecodeString(serverB64)
	if mech != "SCRAM-SHA-256" || iter != "4096" || err1 != nil || err2 != nil || len(stored) != 32 || len(serverKey) != 32 {
		t.Fatalf("verifier %q is not SCRAM-SHA-256$4096:salt$stored:server", verifier)
	}
	if v2, _ := scramVerifier(password); v2 == verifier {
		t.Error("two verifiers of one password are equal: the salt is not random")
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	login := func(pw string) error {
		sess, first, err := scram.Auth{User: "u", Pass: pw}.AsSha256Mechanism().Authenticate(context.Background(), "")
		if err != nil {
			return err
		}
		bare := strings.TrimPrefix(string(first), "n,,")
		_, cnonce, _ := strings.Cut(bare, ",r=")
		serverFirst := "r=" + cnonce + "server,s=" + salt + ",i=" + iter
		_, final, err := sess.Challenge([]byte(serverFirst))
		if err != nil {
			return err
		}
		withoutProof, proofB64, _ := strings.Cut(string(final), ",p=")
		proof, _ := base64.StdEncoding.DecodeString(proofB64)
		authMessage := bare + "," + serverFirst + "," + withoutProof
		clientSig := mac(stored, authMessage)
		clientKey := make([]byte, len(proof))
		for i := range proof {
			clientKey[i] = proof[i] ^ clientSig[i%len(clientSig)]
		}
		if sum := sha256.Sum256(clientKey); !bytes.Equal(sum[:], stored) {
			return errAuth
		}
		done, _, err := sess.Challenge([]byte("v=" + base64.StdEncoding.EncodeToString(mac(serverKey, authMessage))))
		if err != nil || !done {
			return errAuth
		}
		return nil
	}
	if err := login(password); err != nil {
		t.Fatalf("the right password: %v", err)
	}
	if err := login(password + "x"); err == nil {
		t.Fatal("a wrong password authenticates")
	}
}

type authError string

func (e authError) Error() string { return string(e) }

const errAuth = authError("authentication failed")

func TestCheckPassword(t *testing.T) {
	for pw, ok := range map[string]bool{
		"0123456789abcdef": true, strings.Repeat("x", 1000): true, "short": false,
		strings.Repeat("x", 1001): false, "0123456789abcdef with spaces": false, "0123456789abcdéf": false,
		"0123456789abcdef'--": true, // quoted by the verifier's format, never inlined
	} {
		if err := checkPassword(pw); (err == nil) != ok {
			t.Errorf("%q (%d bytes): %v", pw, len(pw), err)
		}
	}
}
