package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestProbe(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }))
	defer srv.Close()
	if err := probe(srv.URL, time.Second); err != nil {
		t.Fatalf("200: %v", err)
	}
	status = http.StatusServiceUnavailable
	if err := probe(srv.URL, time.Second); err == nil {
		t.Fatal("503 passed")
	}
	srv.Close()
	if err := probe(srv.URL, time.Second); err == nil {
		t.Fatal("a closed server passed")
	}
}
