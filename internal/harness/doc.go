// Package harness is the one copy of what the out-of-process suites (chaos,
// cluster, cmd/chatctl's outage tests) share: control of the processes they
// start (Postgres, Redis, Kafka, chatd) and the checker that judges a run
// (every acked message delivered to every member exactly once, in seq
// order, and in Postgres once at its seq). It is a normal package, not a
// test file, so that any suite can import it; its process parts are
// exercised by those suites, its checker by its own unit tests.
package harness
