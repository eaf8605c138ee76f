package redisstore

import (
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
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
