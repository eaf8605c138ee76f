// Command sioconformance serves the Socket.IO protocol test suite's server
// on :3000, built on transport/socketio: pingInterval 300 ms, pingTimeout
// 200 ms, maxPayload 1000000, connectTimeout 1000 ms; namespaces "/" and
// "/custom" each emit "auth" with the handshake's auth payload, answer
// "message" with "message-back" and the same arguments, and ack
// "message-with-ack" with its arguments. It needs no Kafka, Redis or Postgres.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/parley-chat/parley/transport/socketio"
)

func main() {
	addr := flag.String("addr", ":3000", "listen address")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := run(*addr, log); err != nil {
		fmt.Fprintln(os.Stderr, "sioconformance:", err)
		os.Exit(1)
	}
}

func run(addr string, log *slog.Logger) error {
	srv := socketio.NewServer(Config(log))
	mux := http.NewServeMux()
	mux.Handle("/socket.io/", srv)
	hs := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Drain(shut)
		_ = hs.Shutdown(shut)
	}()
	log.Info("socket.io conformance server listening", "addr", addr)
	if err := hs.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Config is the test suite's server configuration.
func Config(log *slog.Logger) socketio.Config {
	return socketio.Config{
		PingInterval:   300 * time.Millisecond,
		PingTimeout:    200 * time.Millisecond,
		MaxPayload:     1_000_000,
		ConnectTimeout: 1000 * time.Millisecond,
		AllowedOrigins: []string{"*"},
		Namespaces:     map[string]socketio.ConnectFunc{"/": echo, "/custom": echo},
		Log:            log,
	}
}

const authDelay = 10 * time.Millisecond

func echo(s *socketio.Socket, auth json.RawMessage) error {
	if auth == nil {
		auth = json.RawMessage("{}")
	}
	// The suite attaches a fresh listener per message, and its ws client
	// emits every frame of one TCP read synchronously: sent back to back,
	// the CONNECT reply and "auth" could arrive in one read and "auth" would
	// be missed. A short gap keeps them in separate reads.
	time.AfterFunc(authDelay, func() { _ = s.EmitBinary("auth", []json.RawMessage{auth}, nil) })
	s.OnEvent(func(ev *socketio.Event) {
		switch ev.Name {
		case "message":
			_ = s.EmitBinary("message-back", ev.Args, ev.Attachments)
		case "message-with-ack":
			_ = ev.AckBinary(ev.Args, ev.Attachments)
		}
	})
	return nil
}
