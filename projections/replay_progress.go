package projections

import "time"

// Progress of a running replay.
type Progress struct {
	Schema  string
	Phase   string // rebuild, catch-up, switch, compare, done
	Applied int64  // records read from the log and applied
	Target  int64  // records up to the current targets
	Rate    float64
	Elapsed time.Duration
}

// Lag is how many records remain to the current targets.
func (p Progress) Lag() int64 { return max(p.Target-p.Applied, 0) }

// ETA at the current rate (0 when unknown).
func (p Progress) ETA() time.Duration {
	if p.Rate <= 0 {
		return 0
	}
	return time.Duration(float64(p.Lag()) / p.Rate * float64(time.Second))
}

// Fraction done, 0-1.
func (p Progress) Fraction() float64 {
	if p.Target <= 0 {
		return 1
	}
	return min(float64(p.Applied)/float64(p.Target), 1)
}

// report calls r.Progress every half second until stopped.
func (run *replayRun) report(start time.Time) (stop func()) {
	run.phase.Store(ptr2("rebuild"))
	if run.r.Progress == nil {
		return func() {}
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		lastN, lastT, rate := int64(0), start, 0.0
		emit := func(now time.Time) {
			n := run.applied.Load()
			if dt := now.Sub(lastT).Seconds(); dt > 0 {
				inst := float64(n-lastN) / dt
				rate = 0.6*inst + 0.4*rate // smooth the line a little
				lastN, lastT = n, now
			}
			run.r.Progress(Progress{Schema: run.st.Schema(), Phase: *run.phase.Load(), Applied: n,
				Target: run.target.Load(), Rate: rate, Elapsed: now.Sub(start)})
		}
		for {
			select {
			case <-done:
				emit(time.Now())
				return
			case now := <-t.C:
				emit(now)
			}
		}
	}()
	return func() { close(done); <-finished }
}
