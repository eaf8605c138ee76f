package redisstore

import "strings"

// ACLRules are the Redis ACL rules of the user Parley connects as (after
// its name, "on" and its password): the keys and the shard channels under
// prefix+":" only, the commands the gateways and the fan-out use (reads,
// writes, streams, hashes, scripts run with EVAL/EVALSHA, MULTI/EXEC, the
// connection handshake) and a Redis Cluster's topology, none of the
// dangerous ones (FLUSHALL, KEYS, CONFIG, DEBUG, MIGRATE, ACL, ...).
// TestACLUser runs Parley's Redis code as a user with exactly these rules;
// deploy/ and docs/deploy.md repeat them (deploy_test checks they agree).
//
//	ACL SETUSER parley on >PASSWORD <ACLRules("parley")...>
func ACLRules(prefix string) []string {
	return []string{
		"resetkeys", "~" + prefix + ":*", "resetchannels", "&" + prefix + ":*",
		"-@all", "+@read", "+@write", "+@connection", "+@transaction",
		"+eval", "+evalsha", "+script|load", "+script|exists",
		"+spublish", "+ssubscribe", "+sunsubscribe", // the fan-out bus's live deliveries
		"-@dangerous",
		"+select", "+cluster|slots", "+cluster|shards", "+cluster|nodes", "+cluster|info", "+cluster|myid",
	}
}

// ACLLine is ACLRules as one line of an ACL file (users.acl) for user with
// password.
func ACLLine(user, password, prefix string) string {
	return "user " + user + " on >" + password + " " + strings.Join(ACLRules(prefix), " ")
}
