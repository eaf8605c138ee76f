// Package deploy_test checks what can be checked here of the deployment files
// (no container engine or cluster runs in CI): they parse, they set only
// environment variables chatd reads, the alerts and the dashboard query only
// metrics Parley exports, and every alert links a runbook section.
package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	yaml "go.yaml.in/yaml/v3"

	"github.com/parley-chat/parley/infra/config"
	_ "github.com/parley-chat/parley/infra/metrics" // registers Parley's metrics
)

// files returns the deploy/ files with one of exts, relative to deploy/.
func files(t *testing.T, exts ...string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && slices.Contains(exts, filepath.Ext(p)) {
			out = append(out, p)
		}
		return err
	})
	if err != nil || len(out) == 0 {
		t.Fatalf("no %v files under deploy/: %v", exts, err)
	}
	return out
}

// yamlDocs decodes every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
}

func TestFilesParse(t *testing.T) {
	for _, p := range files(t, ".yml", ".yaml") {
		if len(yamlDocs(t, p)) == 0 {
			t.Errorf("%s: no YAML document", p)
		}
	}
	for _, p := range files(t, ".json") {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// chatdEnv is every variable chatd reads: the env tags of config.Config.
func chatdEnv(t *testing.T) map[string]bool {
	t.Helper()
	known := map[string]bool{}
	typ := reflect.TypeFor[config.Config]()
	for i := range typ.NumField() {
		if name, _, _ := strings.Cut(typ.Field(i).Tag.Get("env"), ","); name != "" {
			known[name] = true
		}
	}
	if !known["CHAT_JWT_SECRET"] || !known["CHAT_ROLES"] {
		t.Fatalf("config.Config env tags not found: %v", known)
	}
	return known
}

var chatVar = regexp.MustCompile(`\bCHAT_[A-Z0-9_]+\b`)

// Every CHAT_* name anywhere in the manifests, the compose file, the
// Dockerfile and the operator docs is one chatd reads: a misspelt variable
// is silently ignored.
func TestEnvVarsAreOnesChatdReads(t *testing.T) {
	known := chatdEnv(t)
	// Variables chatd no longer reads, which the docs name as replaced.
	retired := map[string]bool{"CHAT_PPROF_ADDR": true}
	paths := append(files(t, ".yml", ".yaml", ".sh"), "../Dockerfile", "../docs/runbook.md", "../docs/deploy.md")
	if _, err := os.Stat("../docs/security.md"); err == nil {
		paths = append(paths, "../docs/security.md")
	}
	seen := 0
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range chatVar.FindAllString(string(b), -1) {
			seen++
			if retired[v] && strings.HasPrefix(p, "../docs/") || strings.HasSuffix(v, "_") { // CHAT_KAFKA_SASL_*: a family
				continue
			}
			if !known[v] {
				t.Errorf("%s sets %s, which chatd does not read (infra/config.Config)", p, v)
			}
		}
	}
	if seen == 0 {
		t.Fatal("no CHAT_ variable found: the walk is broken")
	}
}

// Every process is given roles that exist.
func TestRolesAreValid(t *testing.T) {
	seen := 0
	for _, p := range files(t, ".yml", ".yaml") {
		for _, d := range yamlDocs(t, p) {
			walk(d, func(m map[string]any) {
				v, ok := m["CHAT_ROLES"].(string) // compose environment map
				if !ok && m["name"] == "CHAT_ROLES" {
					v, ok = m["value"].(string) // Kubernetes env list
				}
				if !ok {
					return
				}
				seen++
				for r := range strings.SplitSeq(v, ",") {
					if r != config.RoleGateway && r != config.RoleFanout && r != config.RoleProjector {
						t.Errorf("%s: CHAT_ROLES names %q", p, r)
					}
				}
			})
		}
	}
	if seen < 7 { // 4 compose services, 3 Deployments
		t.Errorf("found CHAT_ROLES %d times, want every chatd process to set it", seen)
	}
}

// walk calls f on every map in v.
func walk(v any, f func(map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		f(v)
		for _, x := range v {
			walk(x, f)
		}
	case []any:
		for _, x := range v {
			walk(x, f)
		}
	}
}

func TestKubernetesManifests(t *testing.T) {
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
	for _, want := range []string{"Deployment", "Service", "HorizontalPodAutoscaler", "Job", "ConfigMap", "NetworkPolicy"} {
		if len(kinds[want]) == 0 {
			t.Errorf("no %s in deploy/k8s", want)
		}
	}
	deployments := map[string]map[string]any{}
	for _, d := range kinds["Deployment"] {
		c := dig(d, "spec", "template", "spec", "containers").([]any)[0].(map[string]any)
		name := dig(d, "metadata", "name").(string)
		deployments[name] = d
		if dig(c, "readinessProbe", "httpGet", "path") != "/readyz" || dig(c, "livenessProbe", "httpGet", "path") != "/healthz" {
			t.Errorf("%s: want readiness on /readyz and liveness on /healthz", name)
		}
		if dig(d, "spec", "template", "spec", "securityContext", "runAsNonRoot") != true {
			t.Errorf("%s: not runAsNonRoot", name)
		}
	}
	for _, n := range []string{"parley-gateway", "parley-fanout", "parley-projector"} {
		if deployments[n] == nil {
			t.Errorf("no Deployment %s", n)
		}
	}
	for _, h := range kinds["HorizontalPodAutoscaler"] {
		if dig(h, "spec", "scaleTargetRef", "name") != "parley-gateway" {
			t.Errorf("HPA targets %v", dig(h, "spec", "scaleTargetRef", "name"))
		}
	}
	job, _ := json.Marshal(kinds["Job"])
	for _, cmd := range []string{`"chatctl","migrate"`, `"chatctl","topics"`} {
		if !strings.Contains(strings.ReplaceAll(string(job), "/usr/local/bin/", ""), cmd) {
			t.Errorf("the migration Job does not run %s", cmd)
		}
	}
}

func TestCompose(t *testing.T) {
	docs := yamlDocs(t, "docker-compose.yml")
	services, _ := docs[0]["services"].(map[string]any)
	for _, s := range []string{"kafka", "redis", "postgres", "migrate", "topics", "gateway-1", "gateway-2", "fanout", "projector"} {
		svc, ok := services[s].(map[string]any)
		if !ok {
			t.Errorf("compose has no service %s", s)
			continue
		}
		if s == "migrate" || s == "topics" {
			continue
		}
		if hc, ok := svc["healthcheck"].(map[string]any); !ok || hc["test"] == nil {
			t.Errorf("compose service %s has no health check", s)
		}
	}
}

// metricNames returns every metric family Parley registers (whether or not
// it has a sample yet: a vector has none until a label set is used) with
// its label names.
func metricNames(t *testing.T) map[string][]string {
	t.Helper()
	reg, ok := prometheus.DefaultRegisterer.(*prometheus.Registry)
	if !ok {
		t.Fatal("default registerer is not a *prometheus.Registry")
	}
	ch := make(chan *prometheus.Desc, 256)
	go func() { reg.Describe(ch); close(ch) }()
	desc := regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)
	out := map[string][]string{}
	for d := range ch {
		m := desc.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("unexpected Desc format %s", d)
		}
		var labels []string
		if m[2] != "" {
			labels = strings.Split(m[2], ",")
		}
		out[m[1]] = labels
	}
	// Gather must agree for the families that have samples.
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if _, ok := out[f.GetName()]; !ok {
			t.Fatalf("gathered %s but Describe did not list it", f.GetName())
		}
	}
	if _, ok := out["parley_consumer_lag"]; !ok {
		t.Fatalf("parley metrics not registered: %v", out)
	}
	return out
}

var (
	parleyMetric = regexp.MustCompile(`\bparley_[a-z0-9_]+`)
	selector     = regexp.MustCompile(`\b(parley_[a-z0-9_]+)\{([^}]*)\}`)
	labelMatcher = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
)

// checkExpr reports metric names and selector labels that Parley does not
// export.
func checkExpr(t *testing.T, where, expr string, names map[string][]string) {
	t.Helper()
	base := func(n string) (string, bool) {
		if _, ok := names[n]; ok {
			return n, true
		}
		for _, suf := range []string{"_bucket", "_count", "_sum"} {
			if b, ok := strings.CutSuffix(n, suf); ok {
				if _, ok := names[b]; ok {
					return b, true
				}
			}
		}
		return n, false
	}
	for _, n := range parleyMetric.FindAllString(expr, -1) {
		if _, ok := base(n); !ok {
			t.Errorf("%s: %s is not a metric of infra/metrics", where, n)
		}
	}
	for _, m := range selector.FindAllStringSubmatch(expr, -1) {
		b, _ := base(m[1])
		for _, lm := range labelMatcher.FindAllStringSubmatch(m[2], -1) {
			if l := lm[1]; l != "le" && !slices.Contains(names[b], l) {
				t.Errorf("%s: %s has no label %q (has %v)", where, m[1], l, names[b])
			}
		}
	}
}

func TestAlertRules(t *testing.T) {
	names := metricNames(t)
	runbook, err := os.ReadFile("../docs/runbook.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for l := range strings.SplitSeq(string(runbook), "\n") {
		if h, ok := strings.CutPrefix(strings.TrimLeft(l, "#"), " "); ok && strings.HasPrefix(l, "#") {
			anchors[githubAnchor(h)] = true
		}
	}
	var doc struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	b, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	alerts := map[string]bool{}
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = true
			if r.Alert == "" || r.Expr == "" || r.For == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %+v: want alert, expr, for, severity and summary", r)
			}
			if strings.Count(r.Expr, "(") != strings.Count(r.Expr, ")") {
				t.Errorf("%s: unbalanced parentheses", r.Alert)
			}
			checkExpr(t, r.Alert, r.Expr, names)
			_, anchor, ok := strings.Cut(r.Annotations["runbook_url"], "docs/runbook.md#")
			if !ok || !anchors[anchor] {
				t.Errorf("%s: runbook_url %q does not point at a heading of docs/runbook.md", r.Alert, r.Annotations["runbook_url"])
			}
		}
	}
	for _, want := range []string{"ParleyConsumerLagGrowing", "ParleyKafkaProduceErrors", "ParleyNodeNotReady", "ParleyDeliveryLatencyHigh"} {
		if !alerts[want] {
			t.Errorf("no alert %s", want)
		}
	}
}

// githubAnchor is the fragment GitHub gives a Markdown heading.
func githubAnchor(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(h)) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

func TestDashboard(t *testing.T) {
	names := metricNames(t)
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err := os.ReadFile("grafana/parley-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			checkExpr(t, "panel "+p.Title, q.Expr, names)
			for _, n := range parleyMetric.FindAllString(q.Expr, -1) {
				used[n] = true
			}
		}
	}
	// What the issue asks the dashboard to show.
	for _, want := range []string{"parley_connections", "parley_commands_total", "parley_command_duration_seconds_bucket",
		"parley_delivery_latency_seconds_bucket", "parley_kafka_produce_errors_total", "parley_consumer_lag",
		"parley_projector_batch_size_bucket", "parley_projector_batch_duration_seconds_bucket",
		"parley_projector_events_total", "parley_send_queue_overflows_total", "parley_rate_limited_total"} {
		if !used[want] {
			t.Errorf("the dashboard does not show %s", want)
		}
	}
}

func dig(v any, path ...string) any {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}
