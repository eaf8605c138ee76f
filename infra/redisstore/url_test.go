package redisstore

import (
	"crypto/tls"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/internal/testcerts"
)

func TestNewClientPicksSingleOrCluster(t *testing.T) {
	cases := []struct {
		url     string
		cluster bool
		addrs   int
	}{
		{"redis://localhost:6379/0", false, 1},
		{"redis://localhost:6379/0?dial_timeout=3s", false, 1},
		{"redis://127.0.0.1:17001?cluster=true", true, 1},
		{"redis://127.0.0.1:17001/0?cluster=true&dial_timeout=3s", true, 1},
		{"redis://127.0.0.1:17001?addr=127.0.0.1:17002&addr=127.0.0.1:17003", true, 3},
		{"redis://127.0.0.1:17001?cluster=true&addr=127.0.0.1:17002", true, 2},
		{"redis://localhost:6379/0?cluster=false", false, 1},
	}
	for _, c := range cases {
		rdb, err := NewClient(c.url)
		if err != nil {
			t.Fatalf("%s: %v", c.url, err)
		}
		cc, isCluster := rdb.(*redis.ClusterClient)
		if isCluster != c.cluster {
			t.Errorf("%s: cluster client %v, want %v", c.url, isCluster, c.cluster)
		}
		if isCluster && len(cc.Options().Addrs) != c.addrs {
			t.Errorf("%s: %d seed addresses, want %d", c.url, len(cc.Options().Addrs), c.addrs)
		}
		_ = rdb.Close()
	}
}

func TestNewClientRejects(t *testing.T) {
	for _, u := range []string{
		"redis://127.0.0.1:17001/2?cluster=true", // a cluster has only db 0
		"redis://127.0.0.1:17001?cluster=maybe",
		"redis://127.0.0.1:17001?cluster=true&bogus=1",
		"redis://127.0.0.1:17001?cluster=true&addr=nohostport",
		"redis://:s3cret@[::1?cluster=true", // unparsable: the error must not echo the password
	} {
		if _, err := NewClient(u); err == nil {
			t.Errorf("%s: no error", u)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: error shows the password: %v", u, err)
		}
	}
}

// An ACL user, TLS (rediss://) and Parley's tls_ca reach go-redis's options,
// for a single Redis and a cluster alike.
func TestNewClientCredentialsAndTLS(t *testing.T) {
	ca := testcerts.CA(t)
	q := "tls_ca=" + url.QueryEscape(ca)
	for _, c := range []struct {
		url             string
		tls, cluster    bool
		user, pass, sni string
		roots           bool
	}{
		{"redis://parley:p%40ss@redis:6379/0", false, false, "parley", "p@ss", "", false},
		{"rediss://parley:pw@redis.example:6380/0", true, false, "parley", "pw", "redis.example", false},
		{"rediss://parley:pw@redis.example:6380/0?" + q, true, false, "parley", "pw", "redis.example", true},
		{"rediss://parley:pw@10.0.0.1:6379?cluster=true&" + q, true, true, "parley", "pw", "10.0.0.1", true},
		{"rediss://parley:pw@10.0.0.1:6379?" + q + "&addr=10.0.0.2:6379", true, true, "parley", "pw", "10.0.0.1", true},
	} {
		rdb, err := NewClient(c.url)
		if err != nil {
			t.Fatalf("%s: %v", c.url, err)
		}
		var user, pass string
		var tc *tls.Config
		switch r := rdb.(type) {
		case *redis.Client:
			user, pass, tc = r.Options().Username, r.Options().Password, r.Options().TLSConfig
		case *redis.ClusterClient:
			user, pass, tc = r.Options().Username, r.Options().Password, r.Options().TLSConfig
		}
		_, isCluster := rdb.(*redis.ClusterClient)
		if isCluster != c.cluster || user != c.user || pass != c.pass || (tc != nil) != c.tls {
			t.Errorf("%s: cluster %v user %q password %q TLS %v", c.url, isCluster, user, pass, tc != nil)
		}
		if tc != nil && (tc.ServerName != c.sni || (tc.RootCAs != nil) != c.roots || tc.MinVersion < tls.VersionTLS12 || tc.InsecureSkipVerify) {
			t.Errorf("%s: TLS server name %q, own roots %v, min version %x", c.url, tc.ServerName, tc.RootCAs != nil, tc.MinVersion)
		}
		_ = rdb.Close()
	}
	for u, want := range map[string]string{
		"redis://parley:s3cret@redis:6379/0?" + q:                                   "rediss://",
		"rediss://parley:s3cret@redis:6379/0?tls_ca=/nonexistent/ca.pem":            "tls_ca",
		"rediss://parley:s3cret@redis:6379/0?tls_ca=" + url.QueryEscape(os.Args[0]): "no PEM",
	} {
		_, err := NewClient(u)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one about %q", u, err, want)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the error shows the password: %v", u, err)
		}
	}
}
