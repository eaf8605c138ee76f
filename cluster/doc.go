// Package cluster holds Parley's cluster test. It is a Go test behind the
// build tag cluster, run by
//
//	go tool task test:cluster
//	go test -tags cluster ./cluster -v        (starts the cluster profile itself)
//
// It runs against the cluster profile of the local services
// (infra/services/cluster-up.sh: three Kafka brokers, a Redis Cluster of three
// primaries and three replicas) and the shared Postgres (its own schema).
// Under a bounded load of native-protocol clients spread over two gateway
// nodes it kills one Kafka broker, then one Redis primary (restarting each
// after), then adds a fanout+projector process and kills it; afterwards every
// acked message must have reached every member exactly once, in seq order,
// and be in the Postgres read model exactly once with its acked seq.
// docs/scaling.md describes the profile and the latest figures.
package cluster
