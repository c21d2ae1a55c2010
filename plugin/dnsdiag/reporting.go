package dnsdiag

import (
	"os"
	"sync"
	"time"

	"github.com/dnsdiag/dnsdiag/plugin/hints"
	"github.com/dnsdiag/dnsdiag/plugin/report"
	"github.com/dnsdiag/dnsdiag/plugin/selfstat"

	"github.com/prometheus/client_golang/prometheus"
)

// The periodic report: every session is counted into the instance's
// report.Reporter as it is decided; every report interval the window is
// closed with what the kernel and the cgroup say about CoreDNS itself
// (package selfstat), and a window with a verdict is written as one
// [WARNING] line.

// defaultReportInterval is the report window of a bare `dnsdiag`.
const defaultReportInterval = time.Minute

// self reads this process's kernel and cgroup figures. One Reader serves
// the metrics and every instance's report: it keeps the per-socket drops
// that make its socket drop count monotonic.
var self = selfstat.NewReader("/")

var registerSelf sync.Once

// registerSelfMetrics exports self's figures, read at scrape time, and the
// verdict counters, once per process whatever the number of instances and
// reloads.
func registerSelfMetrics() {
	registerSelf.Do(func() {
		prometheus.MustRegister(selfstat.NewCollector(self))
		for _, code := range report.Codes {
			verdictCounter(code) // every verdict has a series from the start, at 0
		}
	})
}

// reportHints maps each hint code (by its place in hints.Codes) to the
// report's bit for it.
var reportHints = func() (m [len(hints.Codes)]report.Hints) {
	for i, c := range hints.Codes {
		m[i] = report.HintFromCode(string(c))
	}
	return m
}()

// reporting is one instance's report state.
type reporting struct {
	rep      *report.Reporter
	interval time.Duration

	// Owned by the instance's run goroutine.
	last      selfstat.Snapshot
	peak      int64 // sessions in flight, the most seen in the window
	nextClose time.Time
}

func newReporting(cfg report.Config, interval time.Duration) *reporting {
	if cfg.Instance == "" {
		cfg.Instance, _ = os.Hostname()
	}
	return &reporting{rep: report.New(cfg), interval: interval, last: self.Read(), nextClose: time.Now().Add(interval)}
}

// observe counts a decided session into the window.
func (g *reporting) observe(s *session) {
	if s.background {
		for a := range s.attempts {
			g.rep.ObserveAttempt(reportAttempt(a))
		}
		return
	}
	v := &s.verdict
	rs := report.Session{
		External: v.asked > 0,
		Failed:   v.status == statusFailed,
		Rcode:    v.rcode,
		Name:     v.question.Name,
		Qtype:    v.question.Qtype,
		Attempts: s.reportTries[:0],
	}
	for a := range s.attempts {
		if len(rs.Attempts) == len(s.reportTries) {
			g.rep.ObserveAttempt(reportAttempt(a)) // counted, if not named with a failing name
			continue
		}
		rs.Attempts = append(rs.Attempts, reportAttempt(a))
	}
	for i := range v.hints {
		h := &v.hints[i]
		if c := codeIndex(h.Code); c >= 0 {
			rs.Hints |= reportHints[c]
		}
		if h.Code == hints.SearchExpansion {
			rs.SearchCandidates += h.Count
		}
	}
	g.rep.Observe(&rs)
}

func reportAttempt(a attempt) report.Attempt {
	return report.Attempt{Upstream: a.upstream(), Answered: a.r != nil, Rcode: a.rcode(), Duration: a.duration()}
}

// sample notes the sessions in flight now; the run goroutine calls it often
// enough for the window's peak to be meaningful without costing the query
// path anything.
func (g *reporting) sample() {
	if n := sessions.inflight(); n > g.peak {
		g.peak = n
	}
}

// tick closes the window if it is due and writes its report when a verdict
// fired.
func (g *reporting) tick(now time.Time) {
	if now.Before(g.nextClose) {
		return
	}
	g.nextClose = now.Add(g.interval)
	cur := self.Read()
	// The window ends when its figures were read, not when the ticker
	// fired: a throttled CoreDNS runs this goroutine late, and the kernel's
	// counters go on meanwhile.
	now = time.Now()
	sys := system(g.last, cur)
	sys.PeakInFlight = int(g.peak)
	g.last, g.peak = cur, sessions.inflight()
	r, abnormal := g.rep.Tick(now, sys)
	if !abnormal {
		return
	}
	for _, v := range r.Verdicts {
		verdictCounter(v.Code).Inc()
	}
	b, err := r.AppendJSON(nil)
	if err != nil {
		log.Errorf("report: %v", err)
		return
	}
	writeReport(b)
}

// system is the window's kernel and cgroup figures: what grew from prev to
// cur. A figure missing from either reading is missing from the window.
func system(prev, cur selfstat.Snapshot) report.System {
	var sys report.System
	if d, ok := delta(prev.SocketDrops, cur.SocketDrops); ok {
		sys.Sockets = report.SocketFigures{Present: true, Drops: d}
	}
	in, ok1 := delta(prev.UDP.InErrors, cur.UDP.InErrors)
	rb, ok2 := delta(prev.UDP.RcvbufErrors, cur.UDP.RcvbufErrors)
	if ok1 && ok2 {
		in6, _ := delta(prev.UDP6.InErrors, cur.UDP6.InErrors)
		rb6, _ := delta(prev.UDP6.RcvbufErrors, cur.UDP6.RcvbufErrors)
		sys.UDP = report.UDPFigures{Present: true, InErrors: in + in6, RcvbufErrors: rb + rb6}
	}
	p, ok1 := delta(prev.CPU.Periods, cur.CPU.Periods)
	tp, ok2 := delta(prev.CPU.ThrottledPeriods, cur.CPU.ThrottledPeriods)
	tn, ok3 := delta(prev.CPU.ThrottledNanos, cur.CPU.ThrottledNanos)
	if ok1 && ok2 && ok3 {
		sys.CPU = report.CPUFigures{Present: true, Periods: p, ThrottledPeriods: tp, Throttled: time.Duration(tn), GOMAXPROCS: cur.GOMAXPROCS}
		if cur.CPU.QuotaCores.OK {
			sys.CPU.QuotaCores = cur.CPU.QuotaCores.V
		}
	}
	return sys
}

// delta is how much a counter grew between two readings; false when either
// reading lacks it or it went back (a new cgroup, a counter reset).
func delta(prev, cur selfstat.Count) (uint64, bool) {
	if !prev.OK || !cur.OK || cur.N < prev.N {
		return 0, false
	}
	return cur.N - prev.N, true
}
