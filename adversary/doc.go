// Package adversary holds Parley's adversarial client suite. It is a Go test
// behind the build tag adversary, run by
//
//	go test -tags adversary -count=1 -run Adversary -v ./adversary                      (short, CI)
//	go test -tags adversary -count=1 -timeout 30m -run Adversary -v ./adversary -adversary.profile=long
//	go tool task test:adversary PROFILE=long
//
// It builds chatd and runs two real chatd processes (every role each) against
// the shared local Postgres, Redis and Kafka, in a fresh topic, schema and
// Redis prefix (internal/testenv), on loopback. While well-behaved clients
// chat over the native protocol (/ws) and Socket.IO, hostile clients send
// every Unicode class, U+0000, lone surrogates, invalid UTF-8, control
// characters, maximum sizes and one past them, huge, negative and fractional
// numbers, deeply nested JSON, unknown types, binary frames and random
// frames; they flood, never read, open half-open connections and resume from
// 0 again and again, over both protocols. Each hostile input must get its
// documented answer (docs/protocol.md, docs/socketio.md) and no node may
// crash or stall.
//
// After every round it checks that (1) the read models caught up: every acked
// message is in Postgres as acked, and nothing was set aside as poison; (2) no
// node's resident memory (VmHWM of the chatd process) passed the documented
// bound; (3) the well-behaved clients lost nothing: every acked message
// reached every member once, in seq order, live or through sync after a
// reconnect. docs/reliability.md ("Adversarial clients") describes the
// profiles, the bound and the latest figures.
package adversary
