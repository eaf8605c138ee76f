//go:build kafkasasl

// The Kafka clients against a real broker that requires SCRAM: a private
// single-node KRaft broker (the local Kafka install's jars) with a
// SASL_PLAINTEXT and a SASL_SSL listener, started per run. The shared
// broker on :9092 stays PLAINTEXT. Run:
//
//	flock -o /tmp/parley-cpu.lock go test -tags kafkasasl -count=1 -run SASL -v ./infra/kafkalog/
package kafkalog_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/domain"
	"github.com/parley-chat/parley/infra/kafkalog"
	"github.com/parley-chat/parley/internal/testcerts"
	"github.com/parley-chat/parley/internal/testenv"
	"github.com/parley-chat/parley/internal/wsclient"
)

// saslBroker is the private broker: SCRAM users "parley" (SHA-512 and
// SHA-256) with password, over SASL_PLAINTEXT at plain and SASL_SSL at tls
// (a certificate for 127.0.0.1 signed by the CA in caFile).
type saslBroker struct {
	plain, tls string
	caFile     string
	password   string
}

func TestSASL(t *testing.T) {
	b := startSASLBroker(t)
	scram512 := kafkalog.Security{Mechanism: kafkalog.MechanismSCRAMSHA512, User: "parley", Password: b.password}
	for _, c := range []struct {
		name   string
		broker string
		sec    kafkalog.Security
	}{
		{"SCRAM-SHA-512 over SASL_PLAINTEXT", b.plain, scram512},
		{"SCRAM-SHA-512 over SASL_SSL", b.tls, withTLS(scram512, b.caFile)},
		{"SCRAM-SHA-256 over SASL_SSL", b.tls, withTLS(kafkalog.Security{Mechanism: kafkalog.MechanismSCRAMSHA256, User: "parley", Password: b.password}, b.caFile)},
	} {
		t.Run(c.name, func(t *testing.T) { everyClient(t, c.broker, c.sec) })
	}

	// Refusals: each must fail, not hang (bounded by the clients' timeouts).
	for name, c := range map[string]struct {
		broker string
		sec    kafkalog.Security
	}{
		"a wrong password":            {b.plain, kafkalog.Security{Mechanism: kafkalog.MechanismSCRAMSHA512, User: "parley", Password: "wrong"}},
		"an unknown user":             {b.plain, kafkalog.Security{Mechanism: kafkalog.MechanismSCRAMSHA512, User: "mallory", Password: b.password}},
		"no SASL":                     {b.plain, kafkalog.Security{}},
		"TLS without the broker's CA": {b.tls, kafkalog.Security{Mechanism: kafkalog.MechanismSCRAMSHA512, User: "parley", Password: b.password, TLS: true}},
		"no TLS on the TLS listener":  {b.tls, scram512},
	} {
		t.Run("refuses "+name, func(t *testing.T) {
			cfg := kafkalog.Config{Brokers: []string{c.broker}, Topic: "refused", Partitions: 1, ReplicationFactor: 1, MinInsyncReplicas: 1, Security: c.sec}
			done := make(chan error, 1)
			go func() { _, err := kafkalog.EnsureTopic(cfg); done <- err }()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("the topic was created")
				}
				t.Logf("refused: %v", err)
			case <-time.After(90 * time.Second):
				t.Fatal("no answer within 90 s")
			}
		})
	}

	// A whole node (gateway, fanout, projector) configured through the
	// environment as in the manifests: every client it makes, its lag
	// watcher included, authenticates over TLS.
	t.Run("a node over SASL_SSL", func(t *testing.T) {
		t.Setenv("CHAT_KAFKA_BROKERS", b.tls)
		t.Setenv("CHAT_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
		t.Setenv("CHAT_KAFKA_SASL_USER", "parley")
		pw := filepath.Join(t.TempDir(), "password")
		if err := os.WriteFile(pw, []byte(b.password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("CHAT_KAFKA_SASL_PASSWORD_FILE", pw)
		t.Setenv("CHAT_KAFKA_TLS", "true")
		t.Setenv("CHAT_KAFKA_TLS_CA", b.caFile)
		env := testenv.New(t)
		if env.Cfg.KafkaBrokers[0] != b.tls || env.Cfg.KafkaSASLPassword != b.password {
			t.Fatalf("the environment did not reach the config: %v", env.Cfg.KafkaBrokers)
		}
		n := env.StartNode()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		alice, _, err := wsclient.Dial(ctx, n.WS, env.Token("alice"), wsclient.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer alice.Close()
		bob, _, err := wsclient.Dial(ctx, n.WS, env.Token("bob"), wsclient.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer bob.Close()
		raw, err := alice.Request(ctx, "conversation.create", map[string]any{"kind": "group", "title": "t", "members": []string{"bob"}})
		if err != nil {
			t.Fatal(err)
		}
		var conv struct {
			Conversation domain.Conversation `json:"conversation"`
		}
		if err := json.Unmarshal(raw, &conv); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.Request(ctx, "message.send", map[string]any{"conversation_id": conv.Conversation.ConversationID,
			"client_msg_id": "m1", "body": "over SCRAM and TLS"}); err != nil {
			t.Fatal(err)
		}
		for {
			select {
			case p := <-bob.Pushes:
				if p.Type != domain.PushMessageNew {
					continue
				}
			case <-ctx.Done():
				t.Fatal("bob got no message.new: the fanout did not consume over SASL_SSL")
			}
			break
		}
		testenv.WaitFor(t, 30*time.Second, "the projector's row", func() bool {
			return env.Count(`SELECT count(*) FROM {s}.messages WHERE conversation_id=$1`, conv.Conversation.ConversationID) == 1
		})
	})
}

func withTLS(s kafkalog.Security, ca string) kafkalog.Security {
	s.TLS, s.CAFile = true, ca
	return s
}

// everyClient runs each kind of client kafkalog builds against broker:
// admin (EnsureTopic), producer and metadata client (Open, Append,
// HighWaterMarks, GroupLag), live consumer (RunLive), batch consumer and
// partition reader.
func everyClient(t *testing.T, broker string, sec kafkalog.Security) {
	cfg := kafkalog.Config{Brokers: []string{broker}, Topic: "sasl." + testenv.RandHex(4), Partitions: 2, ReplicationFactor: 1,
		MinInsyncReplicas: 1, ClientID: "sasl-test", Security: sec}
	if created, err := kafkalog.EnsureTopic(cfg); err != nil || !created {
		t.Fatalf("EnsureTopic: created %v, %v", created, err)
	}
	l, err := kafkalog.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 10
	for i := range n {
		if _, err := l.Append(ctx, domain.Event{ID: fmt.Sprintf("e%d", i), Type: "test.v1", ConversationID: fmt.Sprintf("c%d", i%3), At: time.Now()}); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	hwm, err := l.HighWaterMarks(ctx)
	if err != nil || hwm[0]+hwm[1] != n {
		t.Fatalf("high-water marks %v (%v), want %d records", hwm, err, n)
	}
	if lag, err := l.GroupLag(ctx, "sasl-nobody"); err != nil || lag[0]+lag[1] != n {
		t.Fatalf("GroupLag %v (%v)", lag, err)
	}

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var mu sync.Mutex
	live, batch := 0, 0
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		_ = kafkalog.RunLive(lctx, kafkalog.LiveConfig{Kafka: cfg.WithClientID("sasl-live"), Group: "sasl-live." + cfg.Topic},
			func(_ context.Context, b []kafkalog.Consumed) error {
				mu.Lock()
				live += len(b)
				mu.Unlock()
				return nil
			}, quiet)
	}()
	bc, err := kafkalog.NewBatchConsumer(kafkalog.BatchConfig{Kafka: cfg.WithClientID("sasl-batch"), Group: "sasl-batch." + cfg.Topic, Size: 100, Wait: time.Millisecond},
		func(_ context.Context, b []kafkalog.Consumed) error {
			mu.Lock()
			batch += len(b)
			mu.Unlock()
			return nil
		}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = bc.Run(lctx) }()
	testenv.WaitFor(t, 60*time.Second, "both consumer groups to read every record", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return live == n && batch == n
	})

	r, err := kafkalog.OpenPartitionReader(cfg.WithClientID("sasl-reader"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	read := 0
	if err := r.ReadRange(ctx, map[int32]int64{}, hwm, 100, func(cs []kafkalog.Consumed) error { read += len(cs); return nil }); err != nil || read != n {
		t.Fatalf("ReadRange: %d records (%v)", read, err)
	}
	admin, err := kafkalog.NewAdmin(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.DeleteTopic(cfg.Topic); err != nil {
		t.Errorf("delete topic: %v", err)
	}
}

// startSASLBroker formats and starts the private broker and waits until
// the SCRAM user can reach it.
func startSASLBroker(t *testing.T) *saslBroker {
	t.Helper()
	libs := kafkaLibs(t)
	java, err := exec.LookPath("java")
	if err != nil {
		t.Fatalf("java is needed (infra/services/up.sh installs it): %v", err)
	}
	dir := t.TempDir()
	caFile, keystore := brokerKeystore(t, dir)
	ports := make([]int, 4)
	for i := range ports {
		ports[i] = testenv.FreePort(t)
	}
	b := &saslBroker{plain: fmt.Sprintf("127.0.0.1:%d", ports[0]), tls: fmt.Sprintf("127.0.0.1:%d", ports[1]),
		caFile: caFile, password: testenv.RandHex(16)}
	jaas := "org.apache.kafka.common.security.scram.ScramLoginModule required;"
	props := fmt.Sprintf(`process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:%[4]d
listeners=SASL_PLAINTEXT://127.0.0.1:%[1]d,SASL_SSL://127.0.0.1:%[2]d,INTERNAL://127.0.0.1:%[3]d,CONTROLLER://127.0.0.1:%[4]d
advertised.listeners=SASL_PLAINTEXT://127.0.0.1:%[1]d,SASL_SSL://127.0.0.1:%[2]d,INTERNAL://127.0.0.1:%[3]d
listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=INTERNAL
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=%[5]s
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=%[5]s
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=%[5]s
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=%[5]s
ssl.keystore.type=PEM
ssl.keystore.location=%[6]s
log.dirs=%[7]s
auto.create.topics.enable=false
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=2
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=2000
num.network.threads=2
num.io.threads=2
`, ports[0], ports[1], ports[2], ports[3], jaas, keystore, filepath.Join(dir, "data"))
	propsFile := filepath.Join(dir, "server.properties")
	if err := os.WriteFile(propsFile, []byte(props), 0o600); err != nil {
		t.Fatal(err)
	}
	root := repoRoot()
	jvm := func(class, heap string, args ...string) *exec.Cmd {
		a := []string{heap, "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
			"-Dkafka.logs.dir=" + filepath.Join(dir, "logs"),
			"-Dlog4j2.configurationFile=" + filepath.Join(root, "infra", "kafka", "log4j2.xml"),
			"-cp", filepath.Join(libs, "*"), class}
		return exec.Command(java, append(a, args...)...)
	}
	format := jvm("kafka.tools.StorageTool", "-Xmx256m", "format", "-t", clusterID(), "-c", propsFile,
		"--add-scram", "SCRAM-SHA-512=[name=parley,password="+b.password+"]",
		"--add-scram", "SCRAM-SHA-256=[name=parley,password="+b.password+"]")
	if out, err := format.CombinedOutput(); err != nil {
		t.Fatalf("kafka storage format: %v\n%s", err, out)
	}
	out, err := os.Create(filepath.Join(dir, "kafka.out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := jvm("kafka.Kafka", "-Xmx384m", propsFile)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		out.Close()
	})
	ready := kafkalog.Config{Brokers: []string{b.plain}, ClientID: "sasl-ready",
		Security: kafkalog.Security{Mechanism: kafkalog.MechanismSCRAMSHA512, User: "parley", Password: b.password}}
	deadline := time.Now().Add(120 * time.Second)
	for {
		admin, err := kafkalog.NewAdmin(ready)
		if err == nil {
			_, _, err = admin.DescribeCluster()
			admin.Close()
			if err == nil {
				return b
			}
		}
		select {
		case werr := <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "logs", "server.log"))
			t.Fatalf("the broker exited: %v\n%s", werr, tail(log, 3000))
		case <-time.After(time.Second):
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "logs", "server.log"))
			t.Fatalf("the broker did not accept SCRAM within 120 s: %v\n%s", err, tail(log, 3000))
		}
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// kafkaLibs is the jars of the local Kafka install: this checkout's
// .data/kafka/libs or, in a git worktree, the main checkout's (or
// PARLEY_KAFKA_LIBS).
func kafkaLibs(t *testing.T) string {
	t.Helper()
	cands := []string{os.Getenv("PARLEY_KAFKA_LIBS"), filepath.Join(repoRoot(), ".data", "kafka", "libs")}
	if out, err := exec.Command("git", "-C", repoRoot(), "rev-parse", "--path-format=absolute", "--git-common-dir").Output(); err == nil {
		cands = append(cands, filepath.Join(filepath.Dir(strings.TrimSpace(string(out))), ".data", "kafka", "libs"))
	}
	for _, c := range cands {
		if m, _ := filepath.Glob(filepath.Join(c, "kafka_2.13-*.jar")); c != "" && len(m) > 0 {
			return c
		}
	}
	t.Fatalf("no Kafka jars in %v: run `go tool task services:up` once", cands)
	return ""
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

// clusterID is a Kafka Uuid: 16 random bytes, base64url, no padding, not
// starting with '-'.
func clusterID() string {
	for {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		if id := base64.RawURLEncoding.EncodeToString(b); id[0] != '-' {
			return id
		}
	}
}

// brokerKeystore writes a CA and the broker's PEM keystore: its PKCS#8 key
// followed by its certificate, signed by the CA (testcerts.Server).
func brokerKeystore(t *testing.T, dir string) (caFile, keystore string) {
	t.Helper()
	caFile, cert, key := testcerts.Server(t, dir)
	k, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	keystore = filepath.Join(dir, "broker.pem")
	if err := os.WriteFile(keystore, append(k, c...), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, keystore
}
