// Package config reads Parley's configuration from the environment
// (PROTOCOL.md "Configuration"). The zero value of every optional field
// means its documented default.
package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// Roles a process can run.
const (
	RoleGateway   = "gateway"
	RoleFanout    = "fanout"
	RoleProjector = "projector"
)

// DevSecret signs tokens when CHAT_DEV_AUTH=true and no secret is set. It is
// public: never run dev auth in production.
const DevSecret = "parley-dev-secret-not-for-production"

// DBPoolSize is the Postgres connections each process may hold
// (infra/app); searches may take at most half of them.
const DBPoolSize = 20

// Config is every setting of a Parley process.
type Config struct {
	HTTPAddr     string   `env:"CHAT_HTTP_ADDR" envDefault:":8080"`
	NodeID       string   `env:"CHAT_NODE_ID"`
	DatabaseURL  string   `env:"CHAT_DATABASE_URL" envDefault:"postgres://localhost:5432/chat?sslmode=disable"`
	RedisURL     string   `env:"CHAT_REDIS_URL" envDefault:"redis://localhost:6379/0"`
	KafkaBrokers []string `env:"CHAT_KAFKA_BROKERS" envDefault:"localhost:9092" envSeparator:","`
	JWTSecret    string   `env:"CHAT_JWT_SECRET"`
	DevAuth      bool     `env:"CHAT_DEV_AUTH" envDefault:"false"`
	Roles        []string `env:"CHAT_ROLES" envDefault:"gateway,fanout,projector" envSeparator:","`

	// Kafka authentication and encryption (kafkalog.Security): SASL with
	// PLAIN or SCRAM, the password inline or in a file (a mounted Secret),
	// TLS verified against the system's roots or the CA file.
	KafkaSASLMechanism    string `env:"CHAT_KAFKA_SASL_MECHANISM"`
	KafkaSASLUser         string `env:"CHAT_KAFKA_SASL_USER"`
	KafkaSASLPassword     string `env:"CHAT_KAFKA_SASL_PASSWORD"`
	KafkaSASLPasswordFile string `env:"CHAT_KAFKA_SASL_PASSWORD_FILE"`
	KafkaTLS              bool   `env:"CHAT_KAFKA_TLS" envDefault:"false"`
	KafkaTLSCA            string `env:"CHAT_KAFKA_TLS_CA"`

	// Extensions, documented in docs/runbook.md.
	Topic             string        `env:"CHAT_KAFKA_TOPIC" envDefault:"chat.events"`
	Partitions        int32         `env:"CHAT_KAFKA_PARTITIONS" envDefault:"8"`
	ReplicationFactor int16         `env:"CHAT_KAFKA_REPLICATION_FACTOR" envDefault:"1"`
	MinInsyncReplicas int           `env:"CHAT_KAFKA_MIN_INSYNC_REPLICAS" envDefault:"1"`
	ProduceLinger     time.Duration `env:"CHAT_KAFKA_LINGER" envDefault:"0s"`
	ProduceExpectWait time.Duration `env:"CHAT_KAFKA_EXPECT_WAIT" envDefault:"1ms"`
	Compression       string        `env:"CHAT_KAFKA_COMPRESSION" envDefault:"none"`
	GroupPrefix       string        `env:"CHAT_GROUP_PREFIX" envDefault:""`
	DBSchema          string        `env:"CHAT_DB_SCHEMA" envDefault:"chat"`
	RedisPrefix       string        `env:"CHAT_REDIS_PREFIX" envDefault:"parley"`
	BatchSize         int           `env:"CHAT_PROJECTOR_BATCH" envDefault:"1000"`
	// BatchWait is how long the projector gathers a batch after its first
	// record: the read models' CPU is mostly per batch, and at 1 000 msg/s
	// batches of 500 ms cost the projector and Postgres about a third less
	// per message than the fetch-sized batches of about 100 before
	// (docs/benchmarks.md, session 8). A reader that waits for the read
	// model (sync, the membership and reply checks) hurries the projector
	// (projections.HurryChannel), so it waits for one fetch and one apply,
	// not for the batch; history and conversation lists, which do not
	// wait, can be up to this much behind the log.
	BatchWait time.Duration `env:"CHAT_PROJECTOR_WAIT" envDefault:"500ms"`
	// ProjectorFetchWait is how long the projector's fetch waits for 64 KiB
	// to gather; batches are gathered by BatchWait, so this only bounds how
	// long a hurried read waits for records the broker holds.
	ProjectorFetchWait time.Duration `env:"CHAT_PROJECTOR_FETCH_WAIT" envDefault:"100ms"`
	// HopGather is how long the fan-out's hand-off reader lets records
	// gather after a read that returned some: fewer Redis reads and larger
	// batches under load, for at most this much latency. (Gateways take
	// their deliveries from a channel Redis pushes to: nothing to gather.)
	HopGather time.Duration `env:"CHAT_HOP_GATHER" envDefault:"0s"`
	// PresenceDebounce is how long a user whose last connection closed
	// still shows online (a reload or a network switch does not flap).
	PresenceDebounce time.Duration `env:"CHAT_PRESENCE_DEBOUNCE" envDefault:"5s"`
	RateLimit        float64       `env:"CHAT_RATE_LIMIT" envDefault:"20"`
	RateBurst        int           `env:"CHAT_RATE_BURST" envDefault:"40"`
	APIRateLimit     float64       `env:"CHAT_API_RATE_LIMIT" envDefault:"20"`
	APIRateBurst     int           `env:"CHAT_API_RATE_BURST" envDefault:"40"`
	SendQueue        int           `env:"CHAT_SEND_QUEUE" envDefault:"256"`
	// SearchConcurrency bounds the searches a node runs at once
	// (projections.SearchLimit), within its Postgres pool (DBPoolSize).
	SearchConcurrency int `env:"CHAT_SEARCH_CONCURRENCY" envDefault:"4"`
	// SearchTimeout bounds one search's query (projections.Reader).
	SearchTimeout   time.Duration `env:"CHAT_SEARCH_TIMEOUT" envDefault:"5s"`
	MaxConnsPerUser int           `env:"CHAT_MAX_CONNS_PER_USER" envDefault:"32"`
	MaxConns        int           `env:"CHAT_MAX_CONNS" envDefault:"100000"`
	// MaxHTTPConns bounds the node's open TCP connections on its public
	// listener, WebSockets, polls and idle keep-alives together; past it
	// new connections wait in the kernel's backlog. 0: MaxConns + 1024.
	MaxHTTPConns     int           `env:"CHAT_MAX_HTTP_CONNS" envDefault:"0"`
	AllowedOrigins   []string      `env:"CHAT_ALLOWED_ORIGINS" envSeparator:","`
	WebNodes         []string      `env:"CHAT_WEB_NODES" envSeparator:","` // origins the browser client may fail over to (transport/web)
	ShutdownTimeout  time.Duration `env:"CHAT_SHUTDOWN_TIMEOUT" envDefault:"10s"`
	IdemPendingStale time.Duration `env:"CHAT_IDEM_PENDING_STALE" envDefault:"10s"`
	PingInterval     time.Duration `env:"CHAT_WS_PING_INTERVAL" envDefault:"25s"`
	HeaderTimeout    time.Duration `env:"CHAT_HTTP_HEADER_TIMEOUT" envDefault:"10s"`
	// BodyTimeout bounds reading a whole request (headers and body), and
	// WriteTimeout writing its response; a WebSocket upgrade clears both.
	// WriteTimeout must outlast a Socket.IO long poll (the ping interval).
	BodyTimeout  time.Duration `env:"CHAT_HTTP_BODY_TIMEOUT" envDefault:"30s"`
	WriteTimeout time.Duration `env:"CHAT_HTTP_WRITE_TIMEOUT" envDefault:"60s"`
	// SIOMaxPending bounds the Socket.IO sessions not yet authenticated
	// (no namespace joined; each lives at most 10 s).
	SIOMaxPending int    `env:"CHAT_SOCKETIO_MAX_PENDING" envDefault:"1024"`
	AdvertiseAddr string `env:"CHAT_ADVERTISE_ADDR"`
	// JWTPrevious are secrets still accepted (never used to sign) while
	// clients' tokens of a rotated-out CHAT_JWT_SECRET expire.
	JWTPrevious []string `env:"CHAT_JWT_PREVIOUS_SECRETS" envSeparator:","`
	// JWTAudience and JWTIssuer, when set, must be the tokens' aud and iss;
	// JWTMaxLifetime refuses tokens that live longer (exp - iat).
	JWTAudience    string        `env:"CHAT_JWT_AUDIENCE"`
	JWTIssuer      string        `env:"CHAT_JWT_ISSUER"`
	JWTMaxLifetime time.Duration `env:"CHAT_JWT_MAX_LIFETIME" envDefault:"168h"`
	// OpsAddr is the operational listener (/metrics, detailed /readyz,
	// pprof when Pprof): loopback by default, so that only the node's own
	// host (or a port-forward, or a scraper the manifests let in) reaches
	// it; "off" disables it.
	OpsAddr   string `env:"CHAT_OPS_ADDR" envDefault:"127.0.0.1:9091"`
	Pprof     bool   `env:"CHAT_PPROF"`
	LogFormat string `env:"CHAT_LOG_FORMAT"`
	LogLevel  string `env:"CHAT_LOG_LEVEL" envDefault:"info"`
}

// MinSecretBytes is the shortest JWT secret accepted outside development:
// HS256 with a short secret can be brute-forced offline from one token.
const MinSecretBytes = 32

// weakSecret says why secret must not sign production tokens: too short,
// the public development secret, or a placeholder left from a template.
func weakSecret(secret string) error {
	switch {
	case secret == DevSecret:
		return errors.New("is the public development secret: anyone can mint tokens with it (generate one: openssl rand -base64 48)")
	case strings.Contains(strings.ToUpper(secret), "REPLACE"), strings.Contains(strings.ToUpper(secret), "CHANGEME"):
		return errors.New("is a placeholder: generate one (openssl rand -base64 48)")
	case len(secret) < MinSecretBytes:
		return fmt.Errorf("is %d bytes: at least %d are needed (openssl rand -base64 48)", len(secret), MinSecretBytes)
	}
	return nil
}

// Load reads the environment and validates it.
func Load() (Config, error) {
	var c Config
	if err := env.Parse(&c); err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	if c.NodeID == "" {
		h, _ := os.Hostname()
		c.NodeID = fmt.Sprintf("%s-%d", h, os.Getpid())
	}
	if c.JWTSecret == "" && c.DevAuth {
		// One well-known secret so every dev node accepts every dev token.
		c.JWTSecret = DevSecret
	}
	for i, r := range c.Roles {
		c.Roles[i] = strings.TrimSpace(r)
	}
	if err := c.readSecretFiles(); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// HTTPConnsLimit is the bound on the public listener's open connections
// (MaxHTTPConns, or MaxConns + 1024 for the HTTP API and Socket.IO polls).
func (c Config) HTTPConnsLimit() int {
	if c.MaxHTTPConns > 0 {
		return c.MaxHTTPConns
	}
	return c.MaxConns + 1024
}

// Has reports whether the process runs role.
func (c Config) Has(role string) bool { return slices.Contains(c.Roles, role) }

// Validate returns every problem at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.JWTSecret == "" && !c.DevAuth {
		bad("CHAT_JWT_SECRET is required unless CHAT_DEV_AUTH=true")
	} else if err := weakSecret(c.JWTSecret); err != nil && !c.DevAuth {
		bad("CHAT_JWT_SECRET %v", err)
	}
	for i, p := range c.JWTPrevious {
		if strings.TrimSpace(p) == "" {
			bad("CHAT_JWT_PREVIOUS_SECRETS: entry %d is empty (an empty secret would accept forged tokens)", i+1)
		} else if err := weakSecret(p); err != nil && !c.DevAuth {
			bad("CHAT_JWT_PREVIOUS_SECRETS: entry %d %v", i+1, err)
		}
	}
	if len(c.Roles) == 0 {
		bad("CHAT_ROLES must name at least one of gateway, fanout, projector")
	}
	for _, r := range c.Roles {
		if r != RoleGateway && r != RoleFanout && r != RoleProjector {
			bad("CHAT_ROLES: unknown role %q (want gateway, fanout or projector)", r)
		}
	}
	if _, err := url.Parse(c.DatabaseURL); err != nil {
		bad("CHAT_DATABASE_URL: %v", redactURL(err))
	}
	if _, err := url.Parse(c.RedisURL); err != nil {
		bad("CHAT_REDIS_URL: %v", redactURL(err))
	}
	if len(c.KafkaBrokers) == 0 || c.KafkaBrokers[0] == "" {
		bad("CHAT_KAFKA_BROKERS must list at least one broker")
	}
	if !slices.Contains([]string{"none", "gzip", "snappy", "lz4", "zstd"}, c.Compression) {
		bad("CHAT_KAFKA_COMPRESSION: %q is not one of none, gzip, snappy, lz4, zstd", c.Compression)
	}
	if err := c.validateKafkaSecurity(); err != nil {
		errs = append(errs, err)
	}
	if c.Partitions < 1 {
		bad("CHAT_KAFKA_PARTITIONS must be >= 1")
	}
	if c.ReplicationFactor < 1 {
		bad("CHAT_KAFKA_REPLICATION_FACTOR must be >= 1")
	}
	// More in-sync replicas required than replicas exist fails every produce.
	if c.MinInsyncReplicas < 1 || c.MinInsyncReplicas > int(c.ReplicationFactor) {
		bad("CHAT_KAFKA_MIN_INSYNC_REPLICAS must be 1-CHAT_KAFKA_REPLICATION_FACTOR (%d)", c.ReplicationFactor)
	}
	if strings.ContainsAny(c.NodeID, ", \t\n{}") {
		bad("CHAT_NODE_ID %q: no commas, spaces or braces (it names the node's delivery stream)", c.NodeID)
	}
	if c.MaxHTTPConns < 0 {
		bad("CHAT_MAX_HTTP_CONNS must be >= 0 (0: CHAT_MAX_CONNS + 1024)")
	}
	if c.BodyTimeout <= 0 || c.HeaderTimeout <= 0 || c.HeaderTimeout > c.BodyTimeout {
		bad("CHAT_HTTP_HEADER_TIMEOUT and CHAT_HTTP_BODY_TIMEOUT must be > 0, the header timeout within the body timeout")
	}
	// The Socket.IO long poll waits up to the ping interval (25 s).
	if c.WriteTimeout < 30*time.Second {
		bad("CHAT_HTTP_WRITE_TIMEOUT must be >= 30s (a Socket.IO long poll waits 25 s)")
	}
	if _, _, err := net.SplitHostPort(c.OpsAddr); c.OpsAddr != "off" && err != nil {
		bad("CHAT_OPS_ADDR %q: want host:port (127.0.0.1:9091) or off", c.OpsAddr)
	}
	if c.JWTMaxLifetime < 0 {
		bad("CHAT_JWT_MAX_LIFETIME must be >= 0 (0: no limit)")
	}
	if c.SIOMaxPending < 1 {
		bad("CHAT_SOCKETIO_MAX_PENDING must be >= 1")
	}
	if c.BatchSize < 1 {
		bad("CHAT_PROJECTOR_BATCH must be >= 1")
	}
	if c.SearchConcurrency < 1 || c.SearchConcurrency > DBPoolSize/2 {
		bad("CHAT_SEARCH_CONCURRENCY must be 1-%d (half the node's Postgres pool; got %d)", DBPoolSize/2, c.SearchConcurrency)
	}
	if c.SearchTimeout < 100*time.Millisecond || c.SearchTimeout > 15*time.Second {
		bad("CHAT_SEARCH_TIMEOUT must be 100ms-15s, within a command's 15 s (got %s)", c.SearchTimeout)
	}
	if c.BatchWait <= 0 || c.BatchWait > 10*time.Second || c.ProjectorFetchWait < 10*time.Millisecond || c.ProjectorFetchWait > 10*time.Second {
		bad("CHAT_PROJECTOR_WAIT must be 1ns-10s and CHAT_PROJECTOR_FETCH_WAIT 10ms-10s")
	}
	if c.HopGather < 0 || c.HopGather > 100*time.Millisecond {
		bad("CHAT_HOP_GATHER must be 0s-100ms")
	}
	if c.PresenceDebounce < 0 || c.PresenceDebounce > time.Minute {
		bad("CHAT_PRESENCE_DEBOUNCE must be 0s-1m")
	}
	if c.RateLimit <= 0 || c.RateBurst < 1 {
		bad("CHAT_RATE_LIMIT must be > 0 and CHAT_RATE_BURST >= 1")
	}
	if c.APIRateLimit <= 0 || c.APIRateBurst < 1 {
		bad("CHAT_API_RATE_LIMIT must be > 0 and CHAT_API_RATE_BURST >= 1")
	}
	if c.SendQueue < 1 {
		bad("CHAT_SEND_QUEUE must be >= 1")
	}
	if c.IdemPendingStale < 100*time.Millisecond || c.IdemPendingStale > 12*time.Hour {
		bad("CHAT_IDEM_PENDING_STALE must be between 100ms and 12h (got %s)", c.IdemPendingStale)
	}
	if c.AdvertiseAddr != "" {
		if host, port, err := net.SplitHostPort(c.AdvertiseAddr); err != nil || host == "" || port == "" {
			bad("CHAT_ADVERTISE_ADDR must be host:port, how other nodes reach this one (got %q)", c.AdvertiseAddr)
		}
	}
	if !validSchema(c.DBSchema) {
		bad("CHAT_DB_SCHEMA must be a lower-case identifier")
	}
	return errors.Join(errs...)
}

// redactURL drops the URL from a parse error: it may hold a password, and
// configuration errors end up in logs.
func redactURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func validSchema(s string) bool {
	if s == "" || len(s) > 50 {
		return false
	}
	for i, r := range s {
		if !(r >= 'a' && r <= 'z' || r == '_' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// readSecretFiles fills secrets given as files (CHAT_*_FILE, e.g. a mounted
// Kubernetes Secret) in place of inline values. One trailing newline is
// dropped: editors and `echo` add it.
func (c *Config) readSecretFiles() error {
	if c.KafkaSASLPasswordFile == "" {
		return nil
	}
	if c.KafkaSASLPassword != "" {
		return errors.New("config: set CHAT_KAFKA_SASL_PASSWORD or CHAT_KAFKA_SASL_PASSWORD_FILE, not both")
	}
	b, err := os.ReadFile(c.KafkaSASLPasswordFile)
	if err != nil {
		return fmt.Errorf("config: CHAT_KAFKA_SASL_PASSWORD_FILE: %w", err)
	}
	c.KafkaSASLPassword = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	return nil
}

// validateKafkaSecurity checks the CHAT_KAFKA_SASL_* and CHAT_KAFKA_TLS*
// settings (kafkalog.Security.Validate checks them again where the clients
// are built; this reports them with the variables' names).
func (c Config) validateKafkaSecurity() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch c.KafkaSASLMechanism {
	case "":
		if c.KafkaSASLUser != "" || c.KafkaSASLPassword != "" {
			bad("CHAT_KAFKA_SASL_USER and CHAT_KAFKA_SASL_PASSWORD need CHAT_KAFKA_SASL_MECHANISM")
		}
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if c.KafkaSASLUser == "" || c.KafkaSASLPassword == "" {
			bad("CHAT_KAFKA_SASL_MECHANISM %s needs CHAT_KAFKA_SASL_USER and CHAT_KAFKA_SASL_PASSWORD (or _FILE)", c.KafkaSASLMechanism)
		}
		if c.KafkaSASLMechanism == "PLAIN" && !c.KafkaTLS {
			bad("CHAT_KAFKA_SASL_MECHANISM PLAIN sends the password in the clear: set CHAT_KAFKA_TLS=true or use SCRAM-SHA-512")
		}
	default:
		bad("CHAT_KAFKA_SASL_MECHANISM: %q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", c.KafkaSASLMechanism)
	}
	if c.KafkaTLSCA != "" {
		if !c.KafkaTLS {
			bad("CHAT_KAFKA_TLS_CA needs CHAT_KAFKA_TLS=true")
		} else if pem, err := os.ReadFile(c.KafkaTLSCA); err != nil {
			bad("CHAT_KAFKA_TLS_CA: %v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			bad("CHAT_KAFKA_TLS_CA %s: no PEM certificate in it", c.KafkaTLSCA)
		}
	}
	return errors.Join(errs...)
}

// Parse reads the environment, secret files included, without validating
// it: for tools that take most settings as flags and need a few from the
// environment (chatbench cleanup reaches Kafka with its security).
func Parse() (Config, error) {
	var c Config
	if err := env.Parse(&c); err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	return c, c.readSecretFiles()
}
