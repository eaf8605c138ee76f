package deploy_test

// Secure by default, as far as files can show it: no secret in the
// repository (generated ones only, and the manifests do not render without
// them), every container locked down, NetworkPolicies that let only
// Parley's roles reach the stores, the generated settings a valid chatd
// configuration, and the Redis ACL rules of the manifests the ones the
// code is tested with.

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	yaml "go.yaml.in/yaml/v3"

	"github.com/parley-chat/parley/infra/config"
	"github.com/parley-chat/parley/infra/redisstore"
)

// k8sKinds groups the documents of deploy/k8s/*.yaml by kind.
func k8sKinds(t *testing.T) map[string][]map[string]any {
	t.Helper()
	kinds := map[string][]map[string]any{}
	for _, p := range files(t, ".yaml") {
		if !strings.HasPrefix(p, "k8s/") {
			continue
		}
		for _, d := range yamlDocs(t, p) {
			k, _ := d["kind"].(string)
			kinds[k] = append(kinds[k], d)
		}
	}
	return kinds
}

// No Secret with data is shipped: the kustomization lists no Secret
// resource, generates every Secret from files under secrets/, which git
// ignores, and no literal.
func TestNoSecretShipped(t *testing.T) {
	kinds := k8sKinds(t)
	for _, s := range kinds["Secret"] {
		t.Errorf("deploy/k8s ships a Secret (%v): generate it (gen-secrets.sh, secretGenerator)", dig(s, "metadata", "name"))
	}
	kust := yamlDocs(t, "k8s/kustomization.yaml")[0]
	for _, r := range kust["resources"].([]any) {
		for _, d := range yamlDocs(t, filepath.Join("k8s", r.(string))) {
			if d["kind"] == "Secret" {
				t.Errorf("resource %s holds a Secret", r)
			}
		}
	}
	gens, _ := kust["secretGenerator"].([]any)
	if len(gens) < 8 {
		t.Fatalf("%d generated Secrets, want jwt, kafka, redis, db-owner, db-gateway, db-fanout, db-projector, db-passwords", len(gens))
	}
	for _, g := range gens {
		g := g.(map[string]any)
		if g["literals"] != nil {
			t.Errorf("secretGenerator %v has literals", g["name"])
		}
		var srcs []any
		for _, k := range []string{"envs", "files"} {
			if l, ok := g[k].([]any); ok {
				srcs = append(srcs, l...)
			}
		}
		if len(srcs) == 0 {
			t.Errorf("secretGenerator %v reads no file", g["name"])
		}
		for _, src := range srcs {
			_, path, _ := strings.Cut(src.(string), "=")
			if path == "" {
				path = src.(string)
			}
			if !strings.HasPrefix(path, "secrets/") {
				t.Errorf("secretGenerator %v reads %s, outside the generated secrets/", g["name"], path)
			}
		}
	}
	ignored, err := exec.Command("git", "check-ignore", "-q", "k8s/secrets/jwt.env").CombinedOutput()
	if err != nil {
		t.Errorf("git does not ignore deploy/k8s/secrets/ (%v %s): a generated secret could be committed", err, ignored)
	}
	if out, err := exec.Command("git", "check-ignore", "-q", ".env").CombinedOutput(); err != nil {
		t.Errorf("git does not ignore deploy/.env (%v %s)", err, out)
	}
}

// podSpecs returns every pod template of the manifests by workload name.
func podSpecs(t *testing.T, kinds map[string][]map[string]any) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, k := range []string{"Deployment", "Job", "StatefulSet", "DaemonSet"} {
		for _, d := range kinds[k] {
			spec, ok := dig(d, "spec", "template", "spec").(map[string]any)
			if !ok {
				t.Fatalf("%s %v has no pod template", k, dig(d, "metadata", "name"))
			}
			out[dig(d, "metadata", "name").(string)] = spec
		}
	}
	if len(out) < 4 {
		t.Fatalf("found %d workloads, want the 3 Deployments and the Job", len(out))
	}
	return out
}

// Every container, init containers included, runs as non-root with no
// privilege escalation, a read-only root, no capability, the
// RuntimeDefault seccomp profile; no pod uses the host's namespaces or
// paths, or a service account token; the namespace enforces the
// "restricted" Pod Security Standard.
func TestPodSecurity(t *testing.T) {
	kinds := k8sKinds(t)
	for name, spec := range podSpecs(t, kinds) {
		pod, _ := spec["securityContext"].(map[string]any)
		if spec["automountServiceAccountToken"] != false {
			t.Errorf("%s: automountServiceAccountToken is not false", name)
		}
		for _, k := range []string{"hostNetwork", "hostPID", "hostIPC"} {
			if spec[k] == true {
				t.Errorf("%s: %s", name, k)
			}
		}
		vols, _ := spec["volumes"].([]any)
		for _, v := range vols {
			if v.(map[string]any)["hostPath"] != nil {
				t.Errorf("%s: hostPath volume %v", name, v)
			}
		}
		var containers []any
		for _, k := range []string{"initContainers", "containers"} {
			if l, ok := spec[k].([]any); ok {
				containers = append(containers, l...)
			}
		}
		for _, c := range containers {
			c := c.(map[string]any)
			where := name + "/" + c["name"].(string)
			sc, _ := c["securityContext"].(map[string]any)
			either := func(k string) any {
				if v, ok := sc[k]; ok {
					return v
				}
				return pod[k]
			}
			if either("runAsNonRoot") != true {
				t.Errorf("%s: runAsNonRoot is not true", where)
			}
			if u, ok := either("runAsUser").(int); ok && u == 0 {
				t.Errorf("%s: runs as uid 0", where)
			}
			if dig(either("seccompProfile"), "type") != "RuntimeDefault" {
				t.Errorf("%s: seccompProfile is not RuntimeDefault", where)
			}
			if sc["allowPrivilegeEscalation"] != false {
				t.Errorf("%s: allowPrivilegeEscalation is not false", where)
			}
			if sc["readOnlyRootFilesystem"] != true {
				t.Errorf("%s: readOnlyRootFilesystem is not true", where)
			}
			if sc["privileged"] == true {
				t.Errorf("%s: privileged", where)
			}
			drop, _ := dig(sc, "capabilities", "drop").([]any)
			if !slices.Contains(drop, any("ALL")) || dig(sc, "capabilities", "add") != nil {
				t.Errorf("%s: capabilities %v, want drop [ALL] and no add", where, sc["capabilities"])
			}
		}
	}
	ns := kinds["Namespace"]
	if len(ns) != 1 || dig(ns[0], "metadata", "labels", "pod-security.kubernetes.io/enforce") != "restricted" {
		t.Errorf("the namespace does not enforce the restricted Pod Security Standard")
	}
}

// ----------------------------------------------------------------- NetworkPolicy

// pod is a pod as NetworkPolicies see it.
type pod struct {
	name   string
	ns     string
	nsTags map[string]string // the namespace's labels
	labels map[string]string
}

func parleyPod(component string) pod {
	return pod{name: component, ns: "parley", nsTags: map[string]string{"kubernetes.io/metadata.name": "parley"},
		labels: map[string]string{"app.kubernetes.io/name": "parley", "app.kubernetes.io/component": component}}
}

func storePod(name string) pod {
	return pod{name: name, ns: "parley", nsTags: map[string]string{"kubernetes.io/metadata.name": "parley"},
		labels: map[string]string{"app.kubernetes.io/name": name}}
}

// matches reports whether labels satisfy a LabelSelector (matchLabels
// only: the manifests use nothing else, and the test refuses the rest).
func matches(t *testing.T, sel any, labels map[string]string) bool {
	t.Helper()
	m, _ := sel.(map[string]any)
	if m["matchExpressions"] != nil {
		t.Fatalf("selector %v: matchExpressions are not evaluated by this test", sel)
	}
	ml, _ := m["matchLabels"].(map[string]any)
	for k, v := range ml {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// peerMatches reports whether a NetworkPolicyPeer of a policy in namespace
// ns selects p.
func peerMatches(t *testing.T, peer map[string]any, ns string, p pod) bool {
	t.Helper()
	if peer["ipBlock"] != nil {
		t.Fatalf("peer %v: ipBlock is not evaluated by this test", peer)
	}
	nsSel, hasNS := peer["namespaceSelector"]
	podSel, hasPod := peer["podSelector"]
	if hasNS && !matches(t, nsSel, p.nsTags) || !hasNS && p.ns != ns {
		return false
	}
	return !hasPod || matches(t, podSel, p.labels)
}

// portMatches reports whether a rule's ports admit port (none: all).
func portMatches(rule map[string]any, port int) bool {
	ports, ok := rule["ports"].([]any)
	if !ok {
		return true
	}
	for _, pp := range ports {
		if v, _ := pp.(map[string]any)["port"].(int); v == port {
			return true
		}
	}
	return false
}

// allows reports whether the policies let from open a TCP connection to
// to's port: the egress side of from and the ingress side of to must both
// allow it (a pod that no policy of a direction selects is open in it).
func allows(t *testing.T, policies []map[string]any, from, to pod, port int) bool {
	t.Helper()
	side := func(self, other pod, dir, peerKey string) bool {
		isolated := false
		for _, np := range policies {
			ns, _ := dig(np, "metadata", "namespace").(string)
			if ns == "" {
				ns = "parley"
			}
			if ns != self.ns || !matches(t, dig(np, "spec", "podSelector"), self.labels) {
				continue
			}
			types, _ := dig(np, "spec", "policyTypes").([]any)
			if !slices.Contains(types, any(dir)) {
				continue
			}
			isolated = true
			rules, _ := dig(np, "spec", strings.ToLower(dir)).([]any)
			for _, r := range rules {
				r := r.(map[string]any)
				if !portMatches(r, port) {
					continue
				}
				peers, ok := r[peerKey].([]any)
				if !ok {
					return true // no peers listed: anyone
				}
				for _, p := range peers {
					if peerMatches(t, p.(map[string]any), ns, other) {
						return true
					}
				}
			}
		}
		return !isolated
	}
	return side(from, to, "Egress", "to") && side(to, from, "Ingress", "from")
}

// Only the Parley roles that use a store reach it, on its port; Prometheus
// alone reaches the ops listeners; anyone reaches the gateways' port; an
// other pod of the namespace reaches nothing.
func TestNetworkPolicies(t *testing.T) {
	policies := k8sKinds(t)["NetworkPolicy"]
	var denyAll bool
	for _, np := range policies {
		types, _ := dig(np, "spec", "policyTypes").([]any)
		sel, _ := dig(np, "spec", "podSelector").(map[string]any)
		if len(sel) == 0 && slices.Contains(types, any("Ingress")) && slices.Contains(types, any("Egress")) &&
			dig(np, "spec", "ingress") == nil && dig(np, "spec", "egress") == nil {
			denyAll = true
		}
	}
	if !denyAll {
		t.Fatal("no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rule)")
	}
	stores := map[string]int{"kafka": 9093, "redis": 6379, "postgres": 5432}
	want := map[string][]string{ // store -> the components that may reach it
		"kafka":    {"gateway", "fanout", "projector", "migrate"},
		"redis":    {"gateway", "fanout"},
		"postgres": {"gateway", "fanout", "projector", "migrate"},
	}
	intruder := pod{name: "intruder", ns: "parley", nsTags: map[string]string{"kubernetes.io/metadata.name": "parley"},
		labels: map[string]string{"app.kubernetes.io/name": "something-else"}}
	elsewhere := pod{name: "a pod of another namespace", ns: "default", nsTags: map[string]string{"kubernetes.io/metadata.name": "default"},
		labels: map[string]string{"app.kubernetes.io/name": "parley", "app.kubernetes.io/component": "gateway"}}
	prometheus := pod{name: "prometheus", ns: "monitoring", nsTags: map[string]string{"kubernetes.io/metadata.name": "monitoring"},
		labels: map[string]string{"app.kubernetes.io/name": "prometheus"}}
	components := []string{"gateway", "fanout", "projector", "migrate"}
	for store, port := range stores {
		for _, c := range components {
			if got, exp := allows(t, policies, parleyPod(c), storePod(store), port), slices.Contains(want[store], c); got != exp {
				t.Errorf("%s -> %s:%d allowed %v, want %v", c, store, port, got, exp)
			}
		}
		for _, other := range []pod{intruder, elsewhere, prometheus} {
			if allows(t, policies, other, storePod(store), port) {
				t.Errorf("%s -> %s:%d is allowed", other.name, store, port)
			}
		}
		// The store's own pods reach each other (replication, quorum).
		if !allows(t, policies, storePod(store), storePod(store), port) {
			t.Errorf("%s cannot reach its own peers", store)
		}
	}
	for _, c := range []string{"gateway", "fanout", "projector"} {
		if !allows(t, policies, prometheus, parleyPod(c), 9091) {
			t.Errorf("Prometheus cannot scrape the %s's ops listener", c)
		}
		for _, other := range []pod{intruder, parleyPod("gateway")} {
			if other.name != c && allows(t, policies, other, parleyPod(c), 9091) {
				t.Errorf("%s reaches the %s's ops listener", other.name, c)
			}
		}
	}
	if !allows(t, policies, elsewhere, parleyPod("gateway"), 8080) || !allows(t, policies, parleyPod("gateway"), parleyPod("gateway"), 8080) {
		t.Error("clients, or gateways forwarding Socket.IO polls, cannot reach the gateways' port")
	}
	if allows(t, policies, intruder, parleyPod("projector"), 8080) {
		t.Error("the projector's public port is open to the namespace")
	}
	// The ports the policies open are the ones the settings name.
	cm := k8sKinds(t)["ConfigMap"][0]
	for _, b := range strings.Split(dig(cm, "data", "CHAT_KAFKA_BROKERS").(string), ",") {
		if !strings.HasSuffix(b, ":"+strconv.Itoa(stores["kafka"])) {
			t.Errorf("CHAT_KAFKA_BROKERS names %s; the NetworkPolicies open :%d", b, stores["kafka"])
		}
	}
	if dig(cm, "data", "CHAT_OPS_ADDR") != ":9091" {
		t.Errorf("CHAT_OPS_ADDR is %v; the NetworkPolicies and the scrape annotations use :9091", dig(cm, "data", "CHAT_OPS_ADDR"))
	}
	// docs/deploy.md says what each policy allows.
	doc, err := os.ReadFile("../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, np := range policies {
		if n := dig(np, "metadata", "name").(string); !bytes.Contains(doc, []byte("`"+n+"`")) {
			t.Errorf("docs/deploy.md does not describe the NetworkPolicy %s", n)
		}
	}
}

// ----------------------------------------------------------------- generated secrets

// writeCA writes a CA certificate (PEM) to dir.
func writeCA(t *testing.T, dir string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "stores CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// genSecrets copies deploy/k8s to a temporary directory and runs its
// gen-secrets.sh there; it returns the copy.
func genSecrets(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	k8s := filepath.Join(dir, "k8s")
	if err := os.CopyFS(k8s, os.DirFS("k8s")); err != nil {
		t.Fatal(err)
	}
	_ = os.RemoveAll(filepath.Join(k8s, "secrets")) // a developer's own, if any
	cmd := exec.Command("bash", filepath.Join(k8s, "gen-secrets.sh"))
	cmd.Env = append(os.Environ(), "CA="+writeCA(t, dir))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gen-secrets.sh: %v\n%s", err, out)
	}
	return k8s
}

// readEnv reads a KEY=value file.
func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			out[k] = v
		}
	}
	return out
}

// gen-secrets.sh writes strong, private, verify-full settings that, with
// the ConfigMap, make a configuration chatd accepts for every role; it
// refuses to run twice and without a CA.
func TestGenSecrets(t *testing.T) {
	k8s := genSecrets(t)
	sec := filepath.Join(k8s, "secrets")
	err := filepath.WalkDir(sec, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if info, _ := d.Info(); info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is readable by others: %v", p, info.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cm := k8sKinds(t)["ConfigMap"][0]
	caDir := filepath.Join(sec, "ca")
	base := map[string]string{}
	for k, v := range dig(cm, "data").(map[string]any) {
		base[k] = strings.ReplaceAll(v.(string), "/etc/parley/ca", caDir)
	}
	for _, f := range []string{"jwt.env", "kafka.env"} {
		for k, v := range readEnv(t, filepath.Join(sec, f)) {
			base[k] = v
		}
	}
	if len(base["CHAT_JWT_SECRET"]) < 64 || len(base["CHAT_KAFKA_SASL_PASSWORD"]) < 48 {
		t.Errorf("weak generated secrets: JWT %d chars, Kafka password %d", len(base["CHAT_JWT_SECRET"]), len(base["CHAT_KAFKA_SASL_PASSWORD"]))
	}
	roles := map[string][]string{ // role -> its env files, as the Deployments' envFrom
		"gateway":   {"redis.env", "db-gateway.env"},
		"fanout":    {"redis.env", "db-fanout.env"},
		"projector": {"db-projector.env"},
	}
	seenPasswords := map[string]bool{}
	for role, envFiles := range roles {
		env := maps(base)
		env["CHAT_ROLES"] = role
		for _, f := range envFiles {
			for k, v := range readEnv(t, filepath.Join(sec, f)) {
				env[k] = strings.ReplaceAll(v, "/etc/parley/ca", caDir)
			}
		}
		cfg := loadWith(t, env)
		if role != "projector" {
			if !strings.HasPrefix(cfg.RedisURL, "rediss://parley:") || !strings.Contains(cfg.RedisURL, "tls_ca=") {
				t.Errorf("%s: CHAT_REDIS_URL is not TLS with the ACL user and the CA", role)
			}
			rdb, err := redisstore.NewClient(cfg.RedisURL)
			if err != nil {
				t.Errorf("%s: CHAT_REDIS_URL: %v", role, err)
			} else {
				rdb.Close()
			}
		}
		pc, err := pgx.ParseConfig(cfg.DatabaseURL)
		if err != nil {
			t.Fatalf("%s: CHAT_DATABASE_URL: %v", role, err)
		}
		if pc.User != "parley_"+role || pc.TLSConfig == nil || pc.TLSConfig.InsecureSkipVerify || pc.TLSConfig.RootCAs == nil || pc.TLSConfig.ServerName != "postgres" {
			t.Errorf("%s: Postgres as %q, TLS %+v: want the role's own user and verify-full against the CA", role, pc.User, pc.TLSConfig != nil)
		}
		if len(pc.Fallbacks) != 0 {
			t.Errorf("%s: CHAT_DATABASE_URL falls back to a connection without TLS", role)
		}
		if seenPasswords[pc.Password] || len(pc.Password) < 48 {
			t.Errorf("%s: its Postgres password is shared or short", role)
		}
		seenPasswords[pc.Password] = true
	}
	owner := readEnv(t, filepath.Join(sec, "db-owner.env"))["CHAT_DATABASE_URL"]
	if u, err := url.Parse(owner); err != nil || u.User.Username() != "parley" || u.Query().Get("sslmode") != "verify-full" {
		t.Errorf("the owner's URL %v (%v)", u.Redacted(), err)
	}
	for _, l := range []string{"gateway", "fanout", "projector", "analyst"} {
		b, err := os.ReadFile(filepath.Join(sec, "db-passwords", l))
		if err != nil || len(strings.TrimSpace(string(b))) < 48 {
			t.Errorf("db-passwords/%s: %d bytes (%v)", l, len(b), err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(sec, "db-gateway.env")); err != nil || !strings.Contains(string(b), strings.TrimSpace(readFile(t, filepath.Join(sec, "db-passwords", "gateway")))) {
		t.Error("the gateway's URL does not carry the password chatctl roles sets")
	}
	stores := readFile(t, filepath.Join(sec, "STORES.txt"))
	redisPW, _ := url.Parse(readEnv(t, filepath.Join(sec, "redis.env"))["CHAT_REDIS_URL"])
	pw, _ := redisPW.User.Password()
	if !strings.Contains(stores, redisstore.ACLLine("parley", pw, "parley")) {
		t.Error("STORES.txt does not give the Redis ACL line of redisstore.ACLRules")
	}
	if !strings.Contains(stores, "SCRAM-SHA-512=[iterations=8192,password="+base["CHAT_KAFKA_SASL_PASSWORD"]+"]") {
		t.Error("STORES.txt does not create the Kafka SCRAM user with the generated password")
	}

	// A second run would silently diverge from the stores: refused.
	if out, err := exec.Command("bash", filepath.Join(k8s, "gen-secrets.sh")).CombinedOutput(); err == nil {
		t.Errorf("a second run overwrote the secrets:\n%s", out)
	}
	// No CA, no secrets.
	bare := t.TempDir()
	cmd := exec.Command("bash", filepath.Join(k8s, "gen-secrets.sh"), filepath.Join(bare, "secrets"))
	cmd.Env = slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, "CA=") || strings.Contains(e, "_CA=") })
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "CA") {
		t.Errorf("ran without a CA: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(bare, "secrets", "jwt.env")); err == nil {
		t.Error("wrote secrets without a CA")
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func maps(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// loadWith runs config.Load with exactly env as the CHAT_* environment.
func loadWith(t *testing.T, env map[string]string) config.Config {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "CHAT_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	cfg, err := config.Load()
	if err != nil {
		t.Fatalf("chatd refuses the generated configuration (%s): %v", env["CHAT_ROLES"], err)
	}
	return cfg
}

// kustomize renders the manifests as `kubectl apply -k` would (kubectl is
// on the project's machines; no cluster is needed to render): with the
// generated secrets every reference resolves, without them it fails.
func TestKustomizeRenders(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed")
	}
	bare := filepath.Join(t.TempDir(), "k8s")
	if err := os.CopyFS(bare, os.DirFS("k8s")); err != nil {
		t.Fatal(err)
	}
	_ = os.RemoveAll(filepath.Join(bare, "secrets"))
	if out, err := exec.Command(kubectl, "kustomize", bare).CombinedOutput(); err == nil || !strings.Contains(string(out), "secrets/") {
		t.Errorf("kustomize renders without the generated secrets (%v):\n%.500s", err, out)
	}

	out, err := exec.Command(kubectl, "kustomize", genSecrets(t)).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize deploy/k8s: %v\n%s", err, out)
	}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	kinds := map[string]int{}
	objects := map[string]bool{} // kind/name
	var workloads []map[string]any
	for {
		var d map[string]any
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		kind, _ := d["kind"].(string)
		name, _ := dig(d, "metadata", "name").(string)
		kinds[kind]++
		objects[kind+"/"+name] = true
		if kind != "Namespace" && dig(d, "metadata", "namespace") != "parley" {
			t.Errorf("%s %s rendered outside the parley namespace", kind, name)
		}
		if kind == "Deployment" || kind == "Job" {
			workloads = append(workloads, d)
		}
	}
	if kinds["Deployment"] != 3 || kinds["Job"] != 1 || kinds["HorizontalPodAutoscaler"] != 1 || kinds["Secret"] != 8 || kinds["NetworkPolicy"] < 8 {
		t.Errorf("rendered %v", kinds)
	}
	// Every Secret and ConfigMap a pod names is rendered (kustomize gave
	// the generated ones their hashed names).
	refs := 0
	for _, w := range workloads {
		walk(dig(w, "spec", "template", "spec"), func(m map[string]any) {
			for key, kind := range map[string]string{"secretRef": "Secret", "configMapRef": "ConfigMap", "secret": "Secret", "configMap": "ConfigMap"} {
				ref, ok := m[key].(map[string]any)
				if !ok {
					continue
				}
				name, _ := ref["name"].(string)
				if n, ok := ref["secretName"].(string); ok {
					name = n
				}
				refs++
				if !objects[kind+"/"+name] {
					t.Errorf("%v names %s %s, which is not rendered", dig(w, "metadata", "name"), kind, name)
				}
			}
		})
	}
	if refs < 20 {
		t.Errorf("found %d Secret and ConfigMap references, want every pod's", refs)
	}
}

// ----------------------------------------------------------------- compose and ACL rules

var interpolation = regexp.MustCompile(`\$\{[^}]*\}`)

var aclRules = regexp.MustCompile(`resetkeys ~[^ ]+:\* resetchannels [^'"\n]+`)

// The Redis ACL rules of the compose file, of gen-secrets.sh and of
// docs/deploy.md are redisstore.ACLRules, which TestACLUser runs Parley's
// code under.
func TestRedisACLRulesAgree(t *testing.T) {
	for file, prefix := range map[string]string{"docker-compose.yml": "parley", "k8s/gen-secrets.sh": "${REDIS_PREFIX}", "../docs/deploy.md": "parley"} {
		got := aclRules.FindString(readFile(t, file))
		if want := strings.Join(redisstore.ACLRules(prefix), " "); got != want {
			t.Errorf("%s: Redis ACL rules\n  %q\nwant (redisstore.ACLRules)\n  %q", file, got, want)
		}
	}
}

// Compose ships no password (each comes from deploy/.env, generated),
// gives each process its own Postgres role, the projector no Redis, and
// every Parley container a read-only root, no capability and no privilege
// escalation.
func TestComposeSecurity(t *testing.T) {
	raw := readFile(t, "docker-compose.yml")
	secretish := regexp.MustCompile(`(?m)^\s*([A-Z_]*(?:PASSWORD|SECRET)[A-Z_]*):\s*(\S+)`)
	for _, m := range secretish.FindAllStringSubmatch(raw, -1) {
		if !strings.HasPrefix(m[2], "${") {
			t.Errorf("compose sets %s to a literal", m[0])
		}
	}
	if strings.Contains(raw, "sslmode=require") || regexp.MustCompile(`//[a-z_]+:[a-z0-9]+@`).MatchString(raw) {
		t.Error("compose has a literal credential in a URL")
	}
	services := yamlDocs(t, "docker-compose.yml")[0]["services"].(map[string]any)
	dbUser := map[string]string{}
	for name, s := range services {
		svc := s.(map[string]any)
		env, _ := svc["environment"].(map[string]any)
		if svc["image"] != "parley:dev" {
			continue
		}
		if svc["read_only"] != true || !slices.Contains(toSlice(svc["cap_drop"]), any("ALL")) ||
			!slices.Contains(toSlice(svc["security_opt"]), any("no-new-privileges:true")) {
			t.Errorf("compose service %s: want read_only, cap_drop [ALL], no-new-privileges", name)
		}
		if env["CHAT_KAFKA_SASL_MECHANISM"] != "SCRAM-SHA-512" || env["CHAT_KAFKA_SASL_USER"] == nil || env["CHAT_KAFKA_SASL_PASSWORD"] == nil {
			t.Errorf("compose service %s does not authenticate to Kafka with SCRAM-SHA-512", name)
		}
		if u, ok := env["CHAT_DATABASE_URL"].(string); ok {
			pu, err := url.Parse(interpolation.ReplaceAllString(u, "x"))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			dbUser[name] = pu.User.Username()
		}
		if r, ok := env["CHAT_REDIS_URL"].(string); ok && !strings.HasPrefix(r, "redis://parley:${") {
			t.Errorf("compose service %s reaches Redis as %s, not as the ACL user", name, r)
		}
		if env["CHAT_ROLES"] == "projector" && env["CHAT_REDIS_URL"] != nil {
			t.Errorf("the projector is given Redis credentials it does not use")
		}
	}
	for svc, user := range map[string]string{"gateway-1": "parley_gateway", "gateway-2": "parley_gateway", "fanout": "parley_fanout",
		"projector": "parley_projector", "migrate": "parley", "roles": "parley"} {
		if dbUser[svc] != user {
			t.Errorf("compose service %s connects to Postgres as %q, want %q", svc, dbUser[svc], user)
		}
	}
	kafka := fmt.Sprint(services["kafka"])
	for _, want := range []string{"sasl.enabled.mechanisms=SCRAM-SHA-512", "--add-scram", "INTERNAL://127.0.0.1:", "CONTROLLER://127.0.0.1:", "group.min.session.timeout.ms=2000"} {
		if !strings.Contains(kafka, want) {
			t.Errorf("compose kafka lacks %q", want)
		}
	}
	if regexp.MustCompile(`(^|[=,\s])PLAINTEXT://:`).MatchString(kafka) {
		t.Error("compose kafka has a PLAINTEXT listener on every interface")
	}
	if !strings.Contains(fmt.Sprint(services["redis"]), "user default off") {
		t.Error("compose redis keeps its default user")
	}
}

func toSlice(v any) []any {
	s, _ := v.([]any)
	return s
}
