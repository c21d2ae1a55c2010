package dnsdiag

import (
	"sync"
	"sync/atomic"
	"time"
)

// lineWriter writes session lines on its own goroutine, so a slow log sink
// (a full pipe, a busy disk) never reaches the query path. A line is
// rendered by the goroutine that ends its session, while that goroutine
// still owns the session's messages: they are read where they are, not
// copied for later (only a held session, decided on another goroutine, has
// its messages copied; see conclude). The rendered line is appended to the
// batch the writer takes next. The writer is process-wide: sessions that
// straddle a reload are still written.
type lineWriter struct {
	once    sync.Once
	kick    chan struct{} // holds a token when fill may have lines
	pending atomic.Int64  // lines emitted and not yet written

	mu    sync.Mutex
	fill  *lineBatch // the lines emitted since the writer last took a batch
	spare *lineBatch // the writer's other batch; nil while it writes it
}

var lines = &lineWriter{kick: make(chan struct{}, 1), fill: new(lineBatch), spare: new(lineBatch)}

// renderBufs are the rendering state of emits in progress.
var renderBufs = sync.Pool{New: func() any { return new(lineBuf) }}

// emit renders a finished session, made ready for its line, into the
// writer's next batch and recycles it, or drops and counts it when
// logQueueSize lines are waiting already.
func emit(s *session) {
	lines.once.Do(func() { go lines.run() })
	if lines.pending.Add(1) > logQueueSize {
		lines.pending.Add(-1)
		dropped(reasonLogQueueFull)
		s.recycle()
		return
	}
	lb := renderBufs.Get().(*lineBuf)
	mode, js := lb.renderFor(s)
	lines.mu.Lock()
	lines.fill.add(mode, js, s.metrics.lines)
	lines.mu.Unlock()
	lb.trim()
	renderBufs.Put(lb)
	s.recycle()
	select {
	case lines.kick <- struct{}{}:
	default: // the writer has a token already
	}
}

// run writes the lines emitted since its last batch, all at once: a busy
// server gets one write per batch instead of one per line. Woken by a
// batch's first line, the writer sleeps batchDelay before taking the batch,
// unless batchLines lines are there already: without that pause, on a
// server with one CPU, every emit would wake the writer as soon as the
// query's goroutine yields, and each line would cost a write(2) and two
// goroutine switches of its own.
func (l *lineWriter) run() {
	for range l.kick {
		l.mu.Lock()
		n := l.fill.lines
		l.mu.Unlock()
		if n == 0 {
			continue // a token for lines an earlier batch took
		}
		if n < batchLines {
			time.Sleep(batchDelay)
		}
		l.mu.Lock()
		b := l.fill
		l.fill, l.spare = l.spare, nil
		l.mu.Unlock()
		n = b.lines
		b.write()
		l.mu.Lock()
		l.spare = b
		l.mu.Unlock()
		l.pending.Add(-int64(n))
	}
}

// batchDelay is how long a batch's first line waits for others to share
// its write: a quiet server's line reaches the log about this much later
// (a sleep this short can take a millisecond more).
const batchDelay = time.Millisecond

// batchLines is how many waiting lines make the writer go on without the
// pause: enough to fill a write with typical lines.
const batchLines = 32

// flush waits, at most timeout, until every emitted line is written.
func (l *lineWriter) flush(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for l.pending.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}
