package main

import (
	"strings"
	"testing"
)

const commandStatsSample = "# Commandstats\r\n" +
	"cmdstat_xadd:calls=30121,usec=175503,usec_per_call=5.83,rejected_calls=0,failed_calls=0\r\n" +
	"cmdstat_hmget:calls=60977,usec=214734,usec_per_call=3.52,rejected_calls=0,failed_calls=0\r\n" +
	"cmdstat_info:calls=3,usec=90,usec_per_call=30.00,rejected_calls=0,failed_calls=0\r\n" +
	"cmdstat_client|setinfo:calls=4,usec=8,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r\n"

func TestParseCommandStats(t *testing.T) {
	got := parseCommandStats(commandStatsSample + "cmdstat_bad:calls=x,usec=1\r\nnot a line\r\n")
	if len(got) != 4 || got["xadd"] != (cmdStat{30121, 175503}) || got["client|setinfo"] != (cmdStat{4, 8}) {
		t.Fatalf("parsed %v", got)
	}
	if _, ok := got["bad"]; ok {
		t.Fatal("a line without a numeric calls= was read")
	}
}

// Per message: the window's difference divided by the messages acked in
// it, most Redis time first; INFO (the watcher's own) and commands not
// called in the window are left out.
func TestCommandsPerMsg(t *testing.T) {
	first := map[string]cmdStat{"xadd": {100, 500}, "hmget": {10, 10}, "get": {7, 7}, "info": {1, 30}}
	last := map[string]cmdStat{"xadd": {3100, 18500}, "hmget": {5010, 17510}, "get": {7, 7}, "info": {2, 60}, "set": {1000, 4000}}
	got := commandsPerMsg(first, last, 1000)
	want := []RedisCommand{
		{Name: "xadd", Calls: 3000, PerMsg: 3, UsecPerMsg: 18},
		{Name: "hmget", Calls: 5000, PerMsg: 5, UsecPerMsg: 17.5},
		{Name: "set", Calls: 1000, PerMsg: 1, UsecPerMsg: 4},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("row %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

// INFO comes from a server: no reply may crash the parser, and what it
// returns is never negative.
func FuzzParseCommandStats(f *testing.F) {
	f.Add(commandStatsSample)
	f.Add("cmdstat_:calls=1,usec=1\ncmdstat_x:calls=-1,usec=2\n")
	f.Fuzz(func(t *testing.T, info string) {
		for name, s := range parseCommandStats(info) {
			if name == "" || strings.ContainsAny(name, "\r\n") || s.calls < 0 || s.usec < 0 {
				t.Fatalf("%q: %+v", name, s)
			}
		}
	})
}
