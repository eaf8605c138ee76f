package kafkalog

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// SASL mechanisms (CHAT_KAFKA_SASL_MECHANISM).
const (
	MechanismPlain       = "PLAIN"
	MechanismSCRAMSHA256 = "SCRAM-SHA-256"
	MechanismSCRAMSHA512 = "SCRAM-SHA-512"
)

// Security is how every Kafka client of Parley authenticates to the brokers
// and protects the connection (CHAT_KAFKA_SASL_*, CHAT_KAFKA_TLS*). The zero
// value is PLAINTEXT without SASL: the local development broker.
//
// Both client libraries get it from one place: Config.Sarama for every
// Sarama client, Config.franzOpts for both franz-go clients.
type Security struct {
	Mechanism string // "" (none), PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
	User      string
	Password  string
	TLS       bool
	// CAFile is a PEM file of the certificates that may sign the brokers'
	// (default: the system's roots). Only with TLS.
	CAFile string
}

// Validate reports a mechanism without credentials, an unknown mechanism,
// PLAIN without TLS (it sends the password in the clear), and a CA file
// that is unreadable or given without TLS.
func (s Security) Validate() error {
	var errs []error
	switch s.Mechanism {
	case "":
		if s.User != "" || s.Password != "" {
			errs = append(errs, errors.New("kafka: SASL credentials given without a mechanism"))
		}
	case MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512:
		if s.User == "" || s.Password == "" {
			errs = append(errs, fmt.Errorf("kafka: SASL %s needs a user and a password", s.Mechanism))
		}
		if s.Mechanism == MechanismPlain && !s.TLS {
			errs = append(errs, errors.New("kafka: SASL PLAIN sends the password in the clear: enable TLS or use SCRAM"))
		}
	default:
		errs = append(errs, fmt.Errorf("kafka: unknown SASL mechanism %q (want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)", s.Mechanism))
	}
	if s.CAFile != "" {
		if !s.TLS {
			errs = append(errs, errors.New("kafka: a TLS CA file is given but TLS is off"))
		} else if _, err := s.tlsConfig(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// tlsConfig is the client TLS config, or nil without TLS. The server name
// is left empty: both libraries verify each broker against the host they
// dial.
func (s Security) tlsConfig() (*tls.Config, error) {
	if !s.TLS {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka: TLS CA: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka: TLS CA %s: no PEM certificate in it", s.CAFile)
		}
	}
	return c, nil
}

// baseSarama is the config every Sarama client starts from, before security.
func baseSarama(clientID string) *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V4_0_0_0
	c.ClientID = "parley"
	if clientID != "" {
		c.ClientID = clientID
	}
	c.Metadata.RefreshFrequency = 30 * time.Second
	c.Net.DialTimeout = 5 * time.Second
	return c
}

// applySarama sets s on a Sarama config.
func (s Security) applySarama(c *sarama.Config) error {
	if err := s.Validate(); err != nil {
		return err
	}
	tc, err := s.tlsConfig()
	if err != nil {
		return err
	}
	if tc != nil {
		c.Net.TLS.Enable, c.Net.TLS.Config = true, tc
	}
	if s.Mechanism == "" {
		return nil
	}
	c.Net.SASL.Enable = true
	c.Net.SASL.Handshake = true
	c.Net.SASL.Version = sarama.SASLHandshakeV1
	c.Net.SASL.User, c.Net.SASL.Password = s.User, s.Password
	switch s.Mechanism {
	case MechanismPlain:
		c.Net.SASL.Mechanism = sarama.SASLTypePlaintext
	case MechanismSCRAMSHA256:
		c.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
		c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{sha512: false} }
	case MechanismSCRAMSHA512:
		c.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
		c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{sha512: true} }
	}
	return nil
}

// franzOpts are the connection options of every franz-go client.
func (s Security) franzOpts() ([]kgo.Opt, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	var opts []kgo.Opt
	tc, err := s.tlsConfig()
	if err != nil {
		return nil, err
	}
	if tc != nil {
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if m := s.franzMechanism(); m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

func (s Security) franzMechanism() sasl.Mechanism {
	switch s.Mechanism {
	case MechanismPlain:
		return plain.Auth{User: s.User, Pass: s.Password}.AsMechanism()
	case MechanismSCRAMSHA256:
		return scram.Auth{User: s.User, Pass: s.Password}.AsSha256Mechanism()
	case MechanismSCRAMSHA512:
		return scram.Auth{User: s.User, Pass: s.Password}.AsSha512Mechanism()
	}
	return nil
}

// scramClient is Sarama's SCRAM conversation, run by franz-go's SCRAM
// implementation (Sarama ships none; this spares a second one).
type scramClient struct {
	sha512 bool
	nonce  []byte // fixed client nonce (tests); random when nil
	mech   sasl.Mechanism
	sess   sasl.Session
	done   bool
}

func (c *scramClient) Begin(user, password, authzID string) error {
	a := scram.Auth{Zid: authzID, User: user, Pass: password, Nonce: c.nonce}
	if c.sha512 {
		c.mech = a.AsSha512Mechanism()
	} else {
		c.mech = a.AsSha256Mechanism()
	}
	c.sess, c.done = nil, false
	return nil
}

// Step answers the server's message; the first call (no challenge yet)
// returns the client-first message.
func (c *scramClient) Step(challenge string) (string, error) {
	if c.mech == nil {
		return "", errors.New("scram: Step before Begin")
	}
	if c.sess == nil {
		sess, first, err := c.mech.Authenticate(context.Background(), "")
		if err != nil {
			return "", err
		}
		c.sess = sess
		return string(first), nil
	}
	done, next, err := c.sess.Challenge([]byte(challenge))
	if err != nil {
		return "", err
	}
	c.done = done
	return string(next), nil
}

func (c *scramClient) Done() bool { return c.done }
