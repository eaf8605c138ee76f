// Package chaos holds Parley's chaos test. It is a Go test behind the build
// tag chaos, run by
//
//	go test -tags chaos ./chaos -run Chaos -v
//
// It starts its own Postgres, Redis and Kafka on random loopback ports
// (never the shared ones), three gateway, two fanout and two projector
// chatd processes, drives a bounded load of clients that send, disconnect
// and resume, kills or restarts every part in turn, and then checks that
// every acked message reached every member exactly once, in seq order, and
// Postgres. docs/reliability.md describes the profiles and the latest
// figures.
package chaos
