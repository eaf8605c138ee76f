package redisstore

import (
	"errors"
	"fmt"
	"net/url"
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
// Every other query parameter is go-redis's own (dial_timeout, pool_size, ...).
// Parley's keys are cluster-safe: the keys of one conversation share the hash
// tag {conversation_id}, each fan-out shard stream is its own tag
// {fanout.N}, and every script and pipeline touches one slot.
func NewClient(rawURL string) (redis.UniversalClient, error) {
	clustered, rest, err := clusterURL(rawURL)
	if err != nil {
		return nil, err
	}
	if !clustered {
		opt, err := redis.ParseURL(rest)
		if err != nil {
			return nil, fmt.Errorf("redis url: %w", redactURLErr(err))
		}
		if opt.PoolSize == 0 {
			opt.PoolSize = 64
		}
		return redis.NewClient(opt), nil
	}
	opt, err := redis.ParseClusterURL(rest)
	if err != nil {
		return nil, fmt.Errorf("redis cluster url: %w", redactURLErr(err))
	}
	if opt.PoolSize == 0 {
		opt.PoolSize = 64 // per node
	}
	return redis.NewClusterClient(opt), nil
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
