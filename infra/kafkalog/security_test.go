package kafkalog

import (
	"crypto/tls"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/parley-chat/parley/internal/testcerts"
)

func TestSecurityValidate(t *testing.T) {
	ca := testcerts.CA(t)
	notPEM := filepath.Join(t.TempDir(), "x.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := []Security{
		{},
		{TLS: true},
		{TLS: true, CAFile: ca},
		{Mechanism: MechanismSCRAMSHA512, User: "u", Password: "p"},
		{Mechanism: MechanismSCRAMSHA256, User: "u", Password: "p", TLS: true, CAFile: ca},
		{Mechanism: MechanismPlain, User: "u", Password: "p", TLS: true},
	}
	for _, s := range ok {
		if err := s.Validate(); err != nil {
			t.Errorf("%+v: %v", s, err)
		}
	}
	bad := map[string]Security{
		"needs a user":        {Mechanism: MechanismSCRAMSHA512, Password: "p"},
		"and a password":      {Mechanism: MechanismSCRAMSHA512, User: "u"},
		"unknown SASL":        {Mechanism: "GSSAPI", User: "u", Password: "p"},
		"in the clear":        {Mechanism: MechanismPlain, User: "u", Password: "p"},
		"without a mechanism": {User: "u", Password: "p"},
		"TLS is off":          {CAFile: ca},
		"no PEM certificate":  {TLS: true, CAFile: notPEM},
		"no such file":        {TLS: true, CAFile: filepath.Join(t.TempDir(), "missing.pem")},
	}
	for want, s := range bad {
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: error %v, want one saying %q", s, err, want)
		}
		if err != nil && s.Password != "" && strings.Contains(err.Error(), s.Password+" ") {
			t.Errorf("%+v: the error shows the password: %v", s, err)
		}
	}
}

// Every Sarama client gets the mechanism, the credentials and TLS with
// the CA; the config passes Sarama's own validation.
func TestSaramaOptions(t *testing.T) {
	ca := testcerts.CA(t)
	for _, c := range []struct {
		sec  Security
		mech sarama.SASLMechanism
	}{
		{Security{Mechanism: MechanismSCRAMSHA512, User: "parley", Password: "s3cret", TLS: true, CAFile: ca}, sarama.SASLTypeSCRAMSHA512},
		{Security{Mechanism: MechanismSCRAMSHA256, User: "parley", Password: "s3cret"}, sarama.SASLTypeSCRAMSHA256},
		{Security{Mechanism: MechanismPlain, User: "parley", Password: "s3cret", TLS: true}, sarama.SASLTypePlaintext},
	} {
		sc, err := Config{Brokers: []string{"b:9093"}, ClientID: "id", Security: c.sec}.Sarama()
		if err != nil {
			t.Fatal(err)
		}
		if err := sc.Validate(); err != nil {
			t.Errorf("%s: sarama rejects the config: %v", c.sec.Mechanism, err)
		}
		s := sc.Net.SASL
		if !s.Enable || !s.Handshake || s.Mechanism != c.mech || s.User != "parley" || s.Password != "s3cret" || sc.ClientID != "id" {
			t.Errorf("%s: SASL %+v, client id %q", c.sec.Mechanism, s, sc.ClientID)
		}
		if (s.SCRAMClientGeneratorFunc != nil) != strings.HasPrefix(c.sec.Mechanism, "SCRAM") {
			t.Errorf("%s: SCRAM client generator set: %v", c.sec.Mechanism, s.SCRAMClientGeneratorFunc != nil)
		}
		if sc.Net.TLS.Enable != c.sec.TLS || c.sec.TLS && sc.Net.TLS.Config == nil {
			t.Errorf("%s: TLS %v %v, want %v", c.sec.Mechanism, sc.Net.TLS.Enable, sc.Net.TLS.Config, c.sec.TLS)
		}
		if c.sec.CAFile != "" && (sc.Net.TLS.Config.RootCAs == nil || sc.Net.TLS.Config.MinVersion != tls.VersionTLS12) {
			t.Errorf("%s: TLS config without the CA's pool or minimum version", c.sec.Mechanism)
		}
	}
	sc, err := Config{Brokers: []string{"localhost:9092"}}.Sarama()
	if err != nil || sc.Net.SASL.Enable || sc.Net.TLS.Enable {
		t.Errorf("the zero Security: SASL %v TLS %v err %v, want PLAINTEXT", sc.Net.SASL.Enable, sc.Net.TLS.Enable, err)
	}
	if _, err := (Config{Security: Security{Mechanism: MechanismSCRAMSHA512}}).Sarama(); err == nil {
		t.Error("a mechanism without credentials builds a client config")
	}
}

// Both franz-go clients (producer, live consumer) get the same mechanism
// and TLS from Config.franzOpts.
func TestFranzOptions(t *testing.T) {
	ca := testcerts.CA(t)
	cfg := Config{Brokers: []string{"b:9093"}, Topic: "t", ClientID: "id",
		Security: Security{Mechanism: MechanismSCRAMSHA512, User: "parley", Password: "s3cret", TLS: true, CAFile: ca}}
	prod, err := producerOpts(cfg)
	if err != nil {
		t.Fatal(err)
	}
	base, err := cfg.franzOpts()
	if err != nil {
		t.Fatal(err)
	}
	for name, opts := range map[string][]kgo.Opt{"producer": prod, "consumer base": base} {
		cl, err := kgo.NewClient(opts...) // connects lazily
		if err != nil {
			t.Fatal(err)
		}
		mechs, _ := cl.OptValue(kgo.SASL).([]sasl.Mechanism)
		tc, _ := cl.OptValue(kgo.DialTLSConfig).(*tls.Config)
		if len(mechs) != 1 || mechs[0].Name() != MechanismSCRAMSHA512 {
			t.Errorf("%s: SASL mechanisms %v", name, mechs)
		}
		if tc == nil || tc.RootCAs == nil {
			t.Errorf("%s: TLS config %v, want one with the CA", name, tc)
		}
		if id, _ := cl.OptValue(kgo.ClientID).(string); id != "id" {
			t.Errorf("%s: client id %v", name, id)
		}
		cl.Close()
	}
	plain, err := Config{Brokers: []string{"localhost:9092"}}.franzOpts()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(plain...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if mechs, _ := cl.OptValue(kgo.SASL).([]sasl.Mechanism); len(mechs) != 0 {
		t.Errorf("the zero Security sets SASL %v", mechs)
	}
	if tc, _ := cl.OptValue(kgo.DialTLSConfig).(*tls.Config); tc != nil {
		t.Error("the zero Security dials TLS")
	}
}

// Sarama's SCRAM conversation, run by franz-go's implementation, on the
// SCRAM-SHA-256 example of RFC 7677 (user "user", password "pencil").
func TestSCRAMClientRFC7677(t *testing.T) {
	nonce, err := base64.RawStdEncoding.DecodeString("rOprNGfwEbeRWgbNEkqO")
	if err != nil {
		t.Fatal(err)
	}
	run := func(serverFinal string) (*scramClient, error) {
		c := &scramClient{nonce: nonce}
		if err := c.Begin("user", "pencil", ""); err != nil {
			t.Fatal(err)
		}
		first, err := c.Step("")
		if err != nil || first != "n,,n=user,r=rOprNGfwEbeRWgbNEkqO" {
			t.Fatalf("client-first %q (%v)", first, err)
		}
		final, err := c.Step("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
		want := "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
		if err != nil || final != want || c.Done() {
			t.Fatalf("client-final %q (%v, done %v), want %q", final, err, c.Done(), want)
		}
		_, err = c.Step(serverFinal)
		return c, err
	}
	c, err := run("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
	if err != nil || !c.Done() {
		t.Fatalf("server-final refused (%v) or not done (%v)", err, c.Done())
	}
	// A server that cannot prove it knows the password is refused.
	c, err = run("v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
	if err == nil || c.Done() {
		t.Fatalf("a wrong server signature: err %v, done %v", err, c.Done())
	}
}
