package socketio

// QueueStats describe a session's send queue, for tests of its bounds:
// what it holds now, the most it held at once (queued, and queued plus the
// packets taken by the writer or the last poll: the packet memory the
// session holds), and its bounds. Bytes count packet data, as the bound
// does. Direct counts packets their sender wrote at once, without the
// queue, and Unfinished those of them the socket did not take whole (the
// writer finished them).
type QueueStats struct {
	Direct, Unfinished            int
	Frames, Bytes                 int
	PeakFrames, PeakBytes         int
	PeakHeldFrames, PeakHeldBytes int
	MaxFrames, MaxBytes           int
}

// queueStats tracks the peaks; callers hold the session's mu.
type queueStats struct {
	outFrames, outBytes   int // taken by the writer, maybe still being written
	peakFrames, peakBytes int
	peakHeld, peakHeldB   int
	direct, unfinished    int
}

// queued records the queue's size after packets were added.
func (q *queueStats) queued(frames, bytes int) {
	q.peakFrames, q.peakBytes = max(q.peakFrames, frames), max(q.peakBytes, bytes)
	q.peakHeld, q.peakHeldB = max(q.peakHeld, frames+q.outFrames), max(q.peakHeldB, bytes+q.outBytes)
}

// took records that the writer took frames (the batch before it was
// written, since the writer takes again only once done).
func (q *queueStats) took(frames, bytes int) { q.outFrames, q.outBytes = frames, bytes }

// QueueStats is the figures of the socket's session's send queue.
func (s *Socket) QueueStats() QueueStats {
	ss := s.sess
	ss.mu.Lock()
	defer ss.mu.Unlock()
	q := ss.qstats
	return QueueStats{Direct: q.direct, Unfinished: q.unfinished, Frames: len(ss.buf), Bytes: ss.bufBytes, PeakFrames: q.peakFrames, PeakBytes: q.peakBytes,
		PeakHeldFrames: q.peakHeld, PeakHeldBytes: q.peakHeldB,
		MaxFrames: ss.srv.cfg.SendQueue, MaxBytes: ss.srv.cfg.SendQueueBytes}
}
