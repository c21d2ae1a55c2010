package dnsdiag

import (
	"sync"
	"sync/atomic"
	"time"
)

// reportInterval is how often a rate-limited instance says how many lines
// it suppressed.
const reportInterval = 10 * time.Second

// limiter is a token bucket on session lines per second, with a burst of
// defaultRateBurst seconds' worth, so that a failing upstream at full load
// cannot flood the log. It is consulted only for sessions the policy
// selected, never on the path of a session that is not logged.
type limiter struct {
	rate   int64 // lines per second, 0 for no limit
	hinted bool  // it limits the lines of Succeeded sessions with hints

	mu     sync.Mutex
	tokens float64
	last   time.Time

	suppressed atomic.Int64 // since the last report
}

func (l *limiter) setRate(n int64) {
	l.rate = n
	l.tokens = float64(n * defaultRateBurst)
}

// allow takes a token at time now, or counts a suppressed line. Sessions
// do not end in order (a held session is decided seconds after it ended),
// so a time before the latest one seen adds no tokens, and takes none
// back.
func (l *limiter) allow(now time.Time) bool {
	if l.rate == 0 {
		return true
	}
	l.mu.Lock()
	if now.After(l.last) {
		if !l.last.IsZero() {
			l.tokens += now.Sub(l.last).Seconds() * float64(l.rate)
			if limit := float64(l.rate * defaultRateBurst); l.tokens > limit {
				l.tokens = limit
			}
		}
		l.last = now
	}
	ok := l.tokens >= 1
	if ok {
		l.tokens--
	}
	l.mu.Unlock()
	if !ok {
		l.suppressed.Add(1)
	}
	return ok
}

// report writes one line if lines were suppressed since the last report.
func (l *limiter) report(window time.Duration) {
	if n := l.suppressed.Swap(0); n > 0 {
		what := "session lines"
		if l.hinted {
			what = "lines of Succeeded sessions with hints"
		}
		log.Warningf("rate limit: suppressed %d %s in the last %s (limit %d lines/s); coredns_dnsdiag_sessions_total still counts every session",
			n, what, window.Round(time.Second), l.rate)
	}
}
