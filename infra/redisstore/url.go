package redisstore

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"
)

// NewClient builds the client CHAT_REDIS_URL names. A single Redis:
//
//	redis://localhost:6379/0
//
// A Redis Cluster: the query parameter cluster=true, or any addr= parameter
// (more seed nodes), selects go-redis's ClusterClient, which learns the slot
// map from any seed node and follows MOVED/ASK redirects and failovers:
//
//	redis://127.0.0.1:17001?cluster=true
//	redis://127.0.0.1:17001?addr=127.0.0.1:17002&addr=127.0.0.1:17003
//
// An ACL user and its password go in the user info, TLS is the rediss://
// scheme, verified against the system's roots or the PEM file that Parley's
// own parameter tls_ca names (a private CA); both work for a cluster too,
// whose nodes are then verified against the seed's host name:
//
//	rediss://parley:PASSWORD@redis:6379/0?tls_ca=/etc/parley/ca/redis.pem
//	rediss://parley:PASSWORD@10.0.0.1:6379?cluster=true&tls_ca=/etc/parley/ca/redis.pem
//
// Every other query parameter is go-redis's own (dial_timeout, pool_size, ...).
// Parley's keys are cluster-safe: the keys of one conversation share the hash
// tag {conversation_id}, each fan-out shard stream is its own tag
// {fanout.N}, and every script and pipeline touches one slot.
func NewClient(rawURL string) (redis.UniversalClient, error) {
	u, err := parleyURL(rawURL)
	if err != nil {
		return nil, err
	}
	if !u.clustered {
		opt, err := redis.ParseURL(u.rest)
		if err != nil {
			return nil, fmt.Errorf("redis url: %w", redactURLErr(err))
		}
		if opt.PoolSize == 0 {
			opt.PoolSize = 64
		}
		if opt.TLSConfig != nil {
			opt.TLSConfig.RootCAs = u.roots
		}
		return redis.NewClient(opt), nil
	}
	opt, err := redis.ParseClusterURL(u.rest)
	if err != nil {
		return nil, fmt.Errorf("redis cluster url: %w", redactURLErr(err))
	}
	if opt.PoolSize == 0 {
		opt.PoolSize = 64 // per node
	}
	if opt.TLSConfig != nil {
		opt.TLSConfig.RootCAs = u.roots
		opt.TLSConfig.MinVersion = tls.VersionTLS12
	}
	return redis.NewClusterClient(opt), nil
}

// parsedURL is a CHAT_REDIS_URL with Parley's own parameters taken out.
type parsedURL struct {
	clustered bool
	rest      string         // the URL for go-redis
	roots     *x509.CertPool // tls_ca's certificates; nil: the system's
}

// parleyURL takes Parley's own parameters (cluster=, tls_ca=) out of rawURL.
func parleyURL(rawURL string) (parsedURL, error) {
	clustered, rest, err := clusterURL(rawURL)
	if err != nil {
		return parsedURL{}, err
	}
	u, err := url.Parse(rest)
	if err != nil {
		return parsedURL{}, fmt.Errorf("redis url: %w", redactURLErr(err))
	}
	q := u.Query()
	ca, ok := q["tls_ca"]
	if !ok {
		return parsedURL{clustered: clustered, rest: rest}, nil
	}
	if u.Scheme != "rediss" {
		return parsedURL{}, errors.New("redis url: tls_ca needs the rediss:// scheme (TLS)")
	}
	q.Del("tls_ca")
	u.RawQuery = q.Encode()
	pem, err := os.ReadFile(ca[len(ca)-1])
	if err != nil {
		return parsedURL{}, fmt.Errorf("redis url: tls_ca: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return parsedURL{}, fmt.Errorf("redis url: tls_ca %s: no PEM certificate in it", ca[len(ca)-1])
	}
	return parsedURL{clustered: clustered, rest: u.String(), roots: roots}, nil
}

// clusterURL reports whether rawURL names a cluster, and returns it without
// Parley's own cluster= parameter (go-redis rejects options it does not know).
func clusterURL(rawURL string) (bool, string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false, "", fmt.Errorf("redis url: %w", redactURLErr(err))
	}
	q := u.Query()
	clustered := len(q["addr"]) > 0
	if v, ok := q["cluster"]; ok {
		switch strings.ToLower(v[len(v)-1]) {
		case "true", "1", "yes":
			clustered = true
		case "false", "0", "no", "":
		default:
			return false, "", fmt.Errorf("redis url: cluster=%q: want true or false", v[len(v)-1])
		}
		q.Del("cluster")
		u.RawQuery = q.Encode()
	}
	if clustered {
		if u.Path != "" && u.Path != "/" && u.Path != "/0" {
			return false, "", fmt.Errorf("redis url: a Redis Cluster has only database 0")
		}
		u.Path = ""
	}
	return clustered, u.String(), nil
}

// redactURLErr drops the URL from a parse error: it may hold a password,
// and configuration errors end up in logs.
func redactURLErr(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}
