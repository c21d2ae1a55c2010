// Package report runs the decision tree of the Kubernetes DNS
// troubleshooting guide over windows of dnsdiag's sessions: is it the
// upstream, CoreDNS itself, the path back to the clients, or the search
// path? It counts every finished session on the query path, lock-free and
// without allocating when the session succeeded, and once per window turns
// the counts and the caller's kernel and cgroup figures into a Report with
// verdicts, or into nothing when the window was healthy.
package report

import (
	"sync"
	"sync/atomic"
	"time"
)

// Reporter accumulates one window of sessions. Observe and ObserveAttempt
// may be called from any number of goroutines at once; Tick from one.
//
// Counters are plain atomics: every session already updates shared
// Prometheus counters, so sharding these would not remove the contention.
// Tick zeroes them one by one, so a session that ends during Tick may be
// split across two windows; a report is a diagnosis, not an account.
type Reporter struct {
	cfg Config
	now func() time.Time // stamps failing names; replaced in tests

	internal, external population
	hints              [hintCount]atomic.Uint64
	searchCandidates   atomic.Uint64
	upstreams          upstreamTable

	// mu guards the failing names, the window's start and the addition
	// of upstreams: only failed sessions, new upstreams and Tick take it.
	mu    sync.Mutex
	names nameTable
	start time.Time
}

type population struct {
	sessions, failed atomic.Uint64
}

// New returns a Reporter whose first window starts now. cfg must be valid
// (see Config.Validate).
func New(cfg Config) *Reporter {
	return &Reporter{cfg: cfg, now: time.Now, names: newNameTable(), start: time.Now()}
}

// Observe counts one finished client session, including its upstream
// attempts. It keeps no reference to s.
func (r *Reporter) Observe(s *Session) {
	p := &r.internal
	if s.External {
		p = &r.external
	}
	p.sessions.Add(1)
	for i := range s.Attempts {
		r.ObserveAttempt(s.Attempts[i])
	}
	if h := s.Hints; h != 0 {
		for i := range r.hints {
			if h&(1<<i) != 0 {
				r.hints[i].Add(1)
			}
		}
	}
	if s.SearchCandidates > 0 {
		r.searchCandidates.Add(uint64(s.SearchCandidates))
	}
	if s.Failed {
		p.failed.Add(1)
		r.mu.Lock()
		r.names.observe(s, r.now())
		r.mu.Unlock()
	}
}

// ObserveAttempt counts one upstream attempt. Observe calls it for a
// session's Attempts; call it directly for attempts that belong to no
// client session (prefetch, serve_stale refreshes), or to feed attempts
// from an iterator instead of a slice.
func (r *Reporter) ObserveAttempt(a Attempt) {
	u := r.upstreams.find(a.Upstream)
	if u == nil {
		r.mu.Lock()
		u = r.upstreams.add(a.Upstream)
		r.mu.Unlock()
		if u == nil {
			r.upstreams.untracked.Add(1)
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
func (r *Reporter) close(now time.Time, sys System) *Report {
	r.mu.Lock()
	start := r.start
	r.start = now
	names, evicted, cachedUpstream := r.names.take()
	r.mu.Unlock()

	w := windowCounts{
		start: start, end: now, sys: sys,
		intSessions: r.internal.sessions.Swap(0), intFailed: r.internal.failed.Swap(0),
		extSessions: r.external.sessions.Swap(0), extFailed: r.external.failed.Swap(0),
		cachedUpstream:   cachedUpstream,
		searchCandidates: r.searchCandidates.Swap(0),
		upstreams:        r.upstreams.take(),
		untracked:        r.upstreams.untracked.Swap(0),
		names:            names,
		namesEvicted:     evicted,
	}
	for i := range r.hints {
		w.hints[i] = r.hints[i].Swap(0)
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
