package harness

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/parley-chat/parley/infra/kafkalog"
	"github.com/parley-chat/parley/internal/poll"
	"github.com/parley-chat/parley/internal/testenv"
)

// Kafka is a private one-node KRaft broker (combined broker and controller)
// on random ports, run from the repo's .data/kafka/libs jars.
type Kafka struct {
	Proc
	Port, CtrlPort int
	props          string
	jvm            func(class, heap string, args ...string) *exec.Cmd
}

// NewKafka writes dir/kafka/server.properties and formats the storage; the
// broker logs to dir/logs/kafka.out.
func NewKafka(ctx context.Context, dir string) (*Kafka, error) {
	libs := filepath.Join(RepoRoot(), ".data", "kafka", "libs")
	if m, _ := filepath.Glob(filepath.Join(libs, "kafka_2.13-*.jar")); len(m) == 0 {
		return nil, fmt.Errorf("no Kafka jars in %s: run `bash infra/services/up.sh kafka` once", libs)
	}
	java, err := exec.LookPath("java")
	if err != nil {
		return nil, fmt.Errorf("java: %w", err)
	}
	k := &Kafka{}
	if k.Port, err = testenv.PickPort(); err != nil {
		return nil, err
	}
	if k.CtrlPort, err = testenv.PickPort(); err != nil {
		return nil, err
	}
	kdir := filepath.Join(dir, "kafka")
	if err := mkdirs(filepath.Join(kdir, "data"), filepath.Join(kdir, "logs"), filepath.Join(dir, "logs")); err != nil {
		return nil, err
	}
	k.props = filepath.Join(kdir, "server.properties")
	if err := os.WriteFile(k.props, []byte(kafkaProps(k.Port, k.CtrlPort, filepath.Join(kdir, "data"))), 0o644); err != nil {
		return nil, err
	}
	k.jvm = func(class, heap string, args ...string) *exec.Cmd {
		a := []string{heap, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
			"-Dkafka.logs.dir=" + filepath.Join(kdir, "logs"),
			"-Dlog4j2.configurationFile=" + filepath.Join(RepoRoot(), "infra", "kafka", "log4j2.xml"),
			"-cp", filepath.Join(libs, "*"), class}
		return exec.Command(java, append(a, args...)...)
	}
	format := k.jvm("kafka.tools.StorageTool", "-Xmx256m", "format", "-t", kafkaClusterID(), "-c", k.props, "--ignore-formatted")
	if out, err := format.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("kafka storage format: %w\n%s", err, out)
	}
	k.Name, k.Log = "kafka", filepath.Join(dir, "logs", "kafka.out")
	k.Mk = func() *exec.Cmd { return k.jvm("kafka.Kafka", "-Xmx512m", k.props) }
	return k, nil
}

func kafkaProps(port, ctrl int, data string) string {
	return fmt.Sprintf(`# private broker of a test run (KRaft combined mode, one node)
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:%[2]d
listeners=PLAINTEXT://127.0.0.1:%[1]d,CONTROLLER://127.0.0.1:%[2]d
advertised.listeners=PLAINTEXT://127.0.0.1:%[1]d
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=%[3]s
auto.create.topics.enable=false
num.partitions=8
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=2000
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
`, port, ctrl, data)
}

// kafkaClusterID is a Kafka Uuid: 16 random bytes, base64url, no padding,
// not starting with '-'.
func kafkaClusterID() string {
	for {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		if id := base64.RawURLEncoding.EncodeToString(b); id[0] != '-' {
			return id
		}
	}
}

// Broker is the bootstrap address.
func (k *Kafka) Broker() string { return fmt.Sprintf("127.0.0.1:%d", k.Port) }

// WaitReady waits until the broker answers metadata and, if topic is set,
// every partition of it has a leader.
func (k *Kafka) WaitReady(ctx context.Context, limit time.Duration, topic string) error {
	return poll.Err(ctx, limit, func() error { return k.ready(topic) })
}

func (k *Kafka) ready(topic string) error {
	// Built the way every client is (kafkalog's guard test requires it).
	c, err := kafkalog.NewClient(kafkalog.Config{Brokers: []string{k.Broker()}, ClientID: "harness"})
	if err != nil {
		return err
	}
	defer c.Close()
	if topic == "" {
		return nil
	}
	if err := c.RefreshMetadata(topic); err != nil {
		return err
	}
	parts, err := c.Partitions(topic)
	if err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := c.Leader(topic, p); err != nil {
			return fmt.Errorf("partition %d: %w", p, err)
		}
	}
	return nil
}
