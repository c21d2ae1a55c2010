package dnsdiag

import (
	"sync"
	"sync/atomic"
	"time"
)

// lineWriter renders and writes session lines on its own goroutine, so a
// slow log sink (a full pipe, a busy disk) never reaches the query path.
// It is process-wide: sessions that straddle a reload are still written.
type lineWriter struct {
	once    sync.Once
	queue   chan *session
	pending atomic.Int64 // queued or being written
}

var lines = &lineWriter{queue: make(chan *session, logQueueSize)}

// emit hands a finished session, made ready for its line, to the writer,
// or drops and counts it when the queue is full.
func emit(s *session) {
	lines.once.Do(func() { go lines.run() })
	lines.pending.Add(1)
	select {
	case lines.queue <- s:
	default:
		lines.pending.Add(-1)
		dropped(reasonLogQueueFull)
		s.recycle()
	}
}

// run writes each session together with those queued behind it, up to the
// sink's batch size: a busy server gets one write per batch instead of one
// per line. After the first line of a batch the writer sleeps batchDelay
// before taking the rest, unless they fill a batch already: without that
// pause, on a server with one CPU, every emit would wake the writer as
// soon as the query's goroutine yields, and each line would cost a
// write(2) and two goroutine switches of its own.
func (l *lineWriter) run() {
	var k sink
	for s := range l.queue {
		n := int64(1)
		k.add(s)
		if len(l.queue) < batchLines {
			time.Sleep(batchDelay)
		}
	batch:
		for !k.full() {
			select {
			case s := <-l.queue:
				k.add(s)
				n++
			default:
				break batch
			}
		}
		k.write()
		l.pending.Add(-n)
	}
}

// batchDelay is how long a batch's first line waits for others to share
// its write: a quiet server's line reaches the log about this much later
// (a sleep this short can take a millisecond more).
const batchDelay = time.Millisecond

// batchLines is how many queued lines make the writer go on without the
// pause: enough to fill a batch of typical lines.
const batchLines = 32

// flush waits, at most timeout, until every emitted line is written.
func (l *lineWriter) flush(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for l.pending.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}
