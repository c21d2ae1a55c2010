// Package report runs the decision tree of the Kubernetes DNS
// troubleshooting guide over windows of dnsdiag's sessions: is it the
// upstream, CoreDNS itself, the path back to the clients, or the search
// path? It counts every finished session on the query path, lock-free and
// without allocating when the session succeeded, and once per window turns
// the counts and the caller's kernel and cgroup figures into a Report with
// verdicts, or into nothing when the window was healthy.
package report

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Reporter accumulates one window of sessions. Observe and ObserveAttempt
// may be called from any number of goroutines at once; Tick from one.
//
// Counters are plain atomics: every session already updates shared
// Prometheus counters, so sharding these would not remove the contention.
// They come in two sets, one per window parity. A session counts into the
// set of the window it entered, whole, so a report's figures agree with
// each other (a silent upstream's attempts are exactly its no-answers, and
// the failed sessions that reached it); Tick moves new sessions to the
// other set and waits for the ones still counting before it reads theirs.
// The query path never waits: a session that enters as Tick moves on
// simply counts into the new window.
type Reporter struct {
	cfg Config
	now func() time.Time // stamps failing names; replaced in tests

	epoch atomic.Uint64 // the current window's number; its parity picks the set
	sets  [2]counters

	// mu guards both sets' failing names and upstream additions, and the
	// window's start: only failed sessions, new upstreams and Tick take it.
	mu    sync.Mutex
	start time.Time
}

// counters are one window's figures.
type counters struct {
	// inside counts the sessions counting into this set right now.
	inside             atomic.Int64
	internal, external population
	hints              [hintCount]atomic.Uint64
	searchCandidates   atomic.Uint64
	upstreams          upstreamTable
	names              nameTable
	// pad keeps the other set's counters off these cache lines.
	_ [64]byte
}

type population struct {
	sessions, failed atomic.Uint64
}

// New returns a Reporter whose first window starts now. cfg must be valid
// (see Config.Validate).
func New(cfg Config) *Reporter {
	r := &Reporter{cfg: cfg, now: time.Now, start: time.Now()}
	for i := range r.sets {
		r.sets[i].names = newNameTable()
	}
	return r
}

// enter returns the set of the current window, counted as in use until
// leave. If Tick moves on between reading the window and announcing the
// session, the session backs out and enters the new window: Tick only
// waits for sessions announced before it moved on.
func (r *Reporter) enter() *counters {
	for {
		e := r.epoch.Load()
		c := &r.sets[e&1]
		c.inside.Add(1)
		if r.epoch.Load() == e {
			return c
		}
		c.inside.Add(-1)
	}
}

func (c *counters) leave() { c.inside.Add(-1) }

// Observe counts one finished client session, including its upstream
// attempts, all in one window. It keeps no reference to s.
func (r *Reporter) Observe(s *Session) {
	c := r.enter()
	defer c.leave()
	p := &c.internal
	if s.External {
		p = &c.external
	}
	p.sessions.Add(1)
	for i := range s.Attempts {
		r.observeAttempt(c, s.Attempts[i])
	}
	if h := s.Hints; h != 0 {
		for i := range c.hints {
			if h&(1<<i) != 0 {
				c.hints[i].Add(1)
			}
		}
	}
	if s.SearchCandidates > 0 {
		c.searchCandidates.Add(uint64(s.SearchCandidates))
	}
	if s.Failed {
		p.failed.Add(1)
		r.mu.Lock()
		c.names.observe(s, r.now())
		r.mu.Unlock()
	}
}

// ObserveAttempt counts one upstream attempt. Observe counts a session's
// Attempts itself; call this for attempts that belong to no client session
// (prefetch, serve_stale refreshes), or that did not fit in its Attempts.
func (r *Reporter) ObserveAttempt(a Attempt) {
	c := r.enter()
	r.observeAttempt(c, a)
	c.leave()
}

func (r *Reporter) observeAttempt(c *counters, a Attempt) {
	u := c.upstreams.find(a.Upstream)
	if u == nil {
		r.mu.Lock()
		u = c.upstreams.add(a.Upstream)
		r.mu.Unlock()
		if u == nil {
			c.upstreams.untracked.Add(1)
			return
		}
	}
	u.observe(&a)
}

// Tick closes the window at now and starts the next one. It returns the
// window's report, and true, only if at least one verdict fired; a healthy
// window returns nil, false. sys holds the figures the caller read for the
// same window.
func (r *Reporter) Tick(now time.Time, sys System) (*Report, bool) {
	rep := r.close(now, sys)
	if len(rep.Verdicts) == 0 {
		return nil, false
	}
	return rep, true
}

// close ends the window at now and returns its report, verdicts included.
// It waits for the sessions still counting into the closing window: a few
// microseconds, as long as the longest Observe (or, rarely, one preempted
// in the middle).
func (r *Reporter) close(now time.Time, sys System) *Report {
	c := &r.sets[r.epoch.Add(1)&1^1]
	for c.inside.Load() != 0 {
		runtime.Gosched()
	}

	r.mu.Lock()
	start := r.start
	r.start = now
	names, evicted, cachedUpstream := c.names.take()
	r.mu.Unlock()

	w := windowCounts{
		start: start, end: now, sys: sys,
		intSessions: c.internal.sessions.Swap(0), intFailed: c.internal.failed.Swap(0),
		extSessions: c.external.sessions.Swap(0), extFailed: c.external.failed.Swap(0),
		cachedUpstream:   cachedUpstream,
		searchCandidates: c.searchCandidates.Swap(0),
		upstreams:        c.upstreams.take(),
		untracked:        c.upstreams.untracked.Swap(0),
		names:            names,
		namesEvicted:     evicted,
	}
	for i := range c.hints {
		w.hints[i] = c.hints[i].Swap(0)
	}
	rep := w.report(r.cfg.Instance)
	rep.Verdicts = verdicts(r.cfg, rep)
	return rep
}

// windowCounts is one closed window, as Tick took it out of the counters.
type windowCounts struct {
	start, end             time.Time
	sys                    System
	intSessions, intFailed uint64
	extSessions, extFailed uint64
	cachedUpstream         uint64
	hints                  [hintCount]uint64
	searchCandidates       uint64
	upstreams              []upstreamWindow
	untracked              uint64
	names                  []nameEntry
	namesEvicted           uint64
}
