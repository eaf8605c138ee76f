package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// loadPhase sends at rate msg/s for dur, open loop: each worker sends what
// is due by the clock, whether or not earlier sends were answered, so a slow
// server shows up as latency (not as a politely lower rate). A worker that
// falls more than 100 ms behind drops what it cannot send (counted as
// skipped), and no more than --max-inflight sends wait for their ack.
func (r *run) loadPhase(ctx context.Context, rate float64, dur time.Duration, step int, measureAfter time.Duration) {
	workers := min(r.cfg.workers, len(r.convs))
	body := strings.Repeat("x", r.cfg.bodyBytes)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		var mine []int
		for i := w; i < len(r.convs); i += workers {
			mine = append(mine, i)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.worker(ctx, mine, rate/float64(workers), start, dur, step, measureAfter, body)
		}()
	}
	wg.Wait()
}

func (r *run) worker(ctx context.Context, convs []int, rate float64, start time.Time, dur time.Duration, step int,
	measureAfter time.Duration, body string) {
	turn := make([]int, len(convs)) // per conversation: which member sends next
	var sent int64
	next := 0
	maxBehind := int64(rate*0.1) + 1
	buf := make([]byte, 0, 256+len(body))
	for ctx.Err() == nil {
		el := time.Since(start)
		if el >= dur {
			return
		}
		due := int64(el.Seconds()*rate) - sent
		if due > maxBehind {
			r.skipped.Add(due - maxBehind)
			sent += due - maxBehind
			due = maxBehind
		}
		for ; due > 0; due-- {
			sent++
			if r.sent.Load()-r.acked.Load()-r.failed.Load() >= int64(r.cfg.maxInflight) {
				r.skipped.Add(1)
				continue
			}
			k := next % len(convs)
			next++
			ci := convs[k]
			c := r.convs[ci]
			u := c.members[turn[k]%len(c.members)]
			turn[k]++
			conn := r.conns[u]
			if !conn.alive() {
				r.skipped.Add(1)
				continue
			}
			idx := r.next.Add(1) - 1
			if idx >= int64(len(r.msgs)) {
				r.next.Store(int64(len(r.msgs)))
				return
			}
			m := &r.msgs[idx]
			m.conv, m.sender, m.step = int32(ci), int32(u), int16(step)
			m.measured = time.Since(start) >= measureAfter
			buf = buf[:0]
			buf = append(buf, `{"conversation_id":"`...)
			buf = append(buf, c.id...)
			buf = append(buf, `","client_msg_id":"`...)
			buf = append(buf, r.id...)
			buf = append(buf, '-')
			buf = strconv.AppendInt(buf, idx, 10)
			buf = append(buf, `","body":"`...)
			buf = append(buf, body...)
			buf = append(buf, `"}`...)
			m.sentNs.Store(time.Now().UnixNano())
			r.sent.Add(1)
			if err := conn.request(idx+1, "message.send", buf); err != nil {
				m.state.Store(stFailed)
				r.failed.Add(1)
				r.addError("write: " + shortErr(err))
			}
		}
		time.Sleep(time.Millisecond)
	}
}

// drain waits until every acked message reached every member, nothing is in
// flight, or timeout.
func (r *run) drain(ctx context.Context, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		inflight := r.sent.Load() - r.acked.Load() - r.failed.Load()
		if inflight <= 0 && r.delivered.Load() >= r.expected.Load() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// progress prints a live line of rates once a second until stopped.
func (r *run) progress(label string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	tty := term.IsTerminal(int(os.Stderr.Fd()))
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		start := time.Now()
		ps, pa, pd := r.sent.Load(), r.acked.Load(), r.delivered.Load()
		for {
			select {
			case <-done:
				if tty {
					fmt.Fprintln(os.Stderr)
				}
				return
			case <-t.C:
			}
			s, a, d := r.sent.Load(), r.acked.Load(), r.delivered.Load()
			w := summarize(r.win.snapshot(true))
			line := fmt.Sprintf("%s %4.0fs  sent %7d/s  acked %7d/s  delivered %8d/s  inflight %6d  p99(1s) %7.1fms  errors %d  skipped %d",
				label, time.Since(start).Seconds(), s-ps, a-pa, d-pd, s-a-r.failed.Load(), w.P99, r.failed.Load(), r.skipped.Load())
			ps, pa, pd = s, a, d
			if tty {
				fmt.Fprintf(os.Stderr, "\r\033[K%s", line)
			} else {
				fmt.Fprintln(os.Stderr, line)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// progressTicker prints what f says once a second (setup phases).
func progressTicker(label string, f func() string) (stop func()) {
	done := make(chan struct{})
	var once sync.Once
	tty := term.IsTerminal(int(os.Stderr.Fd()))
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if tty {
					fmt.Fprintf(os.Stderr, "\r\033[K%s: %s", label, f())
				} else {
					fmt.Fprintf(os.Stderr, "%s: %s\n", label, f())
				}
			}
		}
	}()
	return func() {
		once.Do(func() {
			close(done)
			if tty {
				fmt.Fprint(os.Stderr, "\r\033[K")
			}
			fmt.Fprintf(os.Stderr, "%s: %s\n", label, f())
		})
	}
}

// Check is the loss and order verdict.
type Check struct {
	Acked         int64 `json:"acked"`
	ExpectedDeliv int64 `json:"expected_deliveries"`
	Delivered     int64 `json:"delivered"`
	// Lost counts expected deliveries that had not arrived when the drain
	// ended: a loss if nothing more comes, a backlog if the system is behind.
	Lost              int64 `json:"undelivered_at_end"`
	Duplicated        int64 `json:"duplicated"`
	OutOfOrder        int64 `json:"out_of_order"`
	DeliveredUnacked  int64 `json:"delivered_unacked"`
	NoReply           int64 `json:"no_reply"`
	Disconnects       int   `json:"disconnects"`
	UncheckedMessages int64 `json:"unchecked_messages"`
	Foreign           int64 `json:"foreign_pushes"`
}

// check counts, per acked message, deliveries against the members online
// throughout; conversations with a member whose connection dropped are left
// out (counted as unchecked).
func (r *run) check() Check {
	var c Check
	dead := map[int]bool{}
	for i, conn := range r.conns {
		if conn != nil && !conn.alive() {
			dead[i] = true
		}
	}
	c.Disconnects = len(dead)
	skipConv := make([]bool, len(r.convs))
	for i, cv := range r.convs {
		for _, u := range cv.members {
			if dead[u] {
				skipConv[i] = true
			}
		}
	}
	n := min(r.next.Load(), int64(len(r.msgs)))
	for i := range n {
		m := &r.msgs[i]
		d := int64(m.delivered.Load())
		switch m.state.Load() {
		case stAcked:
			if skipConv[m.conv] {
				c.UncheckedMessages++
				continue
			}
			c.Acked++
			want := int64(len(r.convs[m.conv].members))
			c.ExpectedDeliv += want
			c.Delivered += min(d, want)
			c.Lost += max(0, want-d)
			if want > d && os.Getenv("CHATBENCH_LIST_LOST") != "" { // debugging a loss
				fmt.Fprintf(os.Stderr, "undelivered: message %d (client_msg_id %s-%d) of conversation %d from user %d: %d of %d deliveries\n",
					i, r.id, i, m.conv, m.sender, d, want)
			}
			c.Duplicated += max(0, d-want)
		case stPending:
			c.NoReply++
			if d > 0 {
				c.DeliveredUnacked++
			}
		case stFailed:
			if d > 0 {
				c.DeliveredUnacked++
			}
		}
	}
	c.Duplicated += r.dup.Load()
	c.OutOfOrder = r.ooo.Load()
	c.Foreign = r.foreign.Load()
	return c
}
