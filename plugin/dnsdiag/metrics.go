package dnsdiag

import (
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/coredns/coredns/plugin"
	"github.com/dnsdiag/dnsdiag/plugin/hints"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// durationBuckets span a cache hit (tens of µs) to forward's 5 s deadline.
var durationBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Label values are bounded: statuses, bitmaps (0-15), rcode names, drop
// reasons, and upstream addresses, which come from the Corefile. Query names
// and client addresses never become labels.
var (
	sessionsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace, Subsystem: "dnsdiag", Name: "sessions_total",
		Help: "Client sessions by Status and BitMap (CQ=1, CR=2, FQ=4, FR=8).",
	}, []string{"server", "status", "bitmap"})

	sessionDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: plugin.Namespace, Subsystem: "dnsdiag", Name: "session_duration_seconds",
		Help: "Time from the client query to the end of the session, by Status.", Buckets: durationBuckets,
	}, []string{"server", "status"})

	upstreamAttempts = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace, Subsystem: "dnsdiag", Name: "upstream_attempts_total",
		Help: "Upstream attempts by upstream and outcome: the rcode the upstream answered, or no_answer.",
	}, []string{"server", "upstream", "outcome"})

	upstreamDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: plugin.Namespace, Subsystem: "dnsdiag", Name: "upstream_attempt_duration_seconds",
		Help: "Duration of each upstream attempt.", Buckets: durationBuckets,
	}, []string{"server", "upstream"})

	backgroundTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace, Subsystem: "dnsdiag", Name: "background_sessions_total",
		Help: "Upstream refreshes no client waited for (prefetch, serve_stale, late verify) by Status.",
	}, []string{"server", "status"})

	logLines = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace, Subsystem: "dnsdiag", Name: "log_lines_total",
		Help: "Session lines written to the log.",
	}, []string{"server"})

	logSuppressed = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace, Subsystem: "dnsdiag", Name: "log_suppressed_total",
		Help: "Sessions not logged, by reason: policy (not selected) or rate_limit.",
	}, []string{"server", "reason"})

	hintsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace, Subsystem: "dnsdiag", Name: "hints_total",
		Help: "Findings of the cross-session detectors by code (retransmissions, A/AAAA pair, search walk, truncation, upstream TCP), whatever the log policy.",
	}, []string{"server", "code"})

	verdictsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace, Subsystem: "dnsdiag", Name: "verdicts_total",
		Help: "Verdicts of the periodic report by code (upstream_failing, coredns_overloaded, answers_lost, search_path, internal_failing, everything_failing).",
	}, []string{"code"})

	droppedTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace, Subsystem: "dnsdiag", Name: "dropped_total",
		Help: "Work dnsdiag shed to protect the query path, by reason.",
	}, []string{"reason"})

	_ = promauto.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: plugin.Namespace, Subsystem: "dnsdiag", Name: "inflight_sessions",
		Help: "Client sessions in flight.",
	}, func() float64 { return float64(sessions.inflight()) })
)

// Reasons for dropped_total.
const (
	reasonInflightLimit   = "inflight_limit"   // query served without a session
	reasonUntrackedTap    = "untracked_tap"    // forwarder leg of such a query
	reasonBackgroundLimit = "background_limit" // forwarder leg with no room for its background session
	reasonLegLimit        = "leg_limit"        // session already held maxLegs
	reasonLateWrite       = "late_write"       // answer written after its session ended
	reasonLogQueueFull    = "log_queue_full"   // logged session the log writer had no room for
)

// dropCounters resolves each reason's counter once: drops happen under
// overload, exactly when a label lookup per event would hurt most.
var dropCounters sync.Map // reason -> prometheus.Counter

func dropped(reason string) {
	c, ok := dropCounters.Load(reason)
	if !ok {
		c, _ = dropCounters.LoadOrStore(reason, droppedTotal.WithLabelValues(reason))
	}
	c.(prometheus.Counter).Inc()
}

// verdictCounter is the counter of one verdict code; a report is written
// at most once per window, so resolving it each time costs nothing.
func verdictCounter(code string) prometheus.Counter { return verdictsTotal.WithLabelValues(code) }

// instanceMetrics resolves labelled series once per server and keeps them,
// so that counting a session does no label hashing or allocation.
type instanceMetrics struct {
	mu      sync.RWMutex
	servers map[string]*serverMetrics
}

type serverMetrics struct {
	server     string
	sessions   [statusCount][16]atomic.Pointer[prometheus.Counter]
	duration   [statusCount]prometheus.Observer
	bg         [statusCount]prometheus.Counter
	lines      prometheus.Counter
	suppressed [suppressionCount]prometheus.Counter
	hints      [len(hints.Codes)]prometheus.Counter

	mu        sync.RWMutex
	upstreams map[upstreamKey]*upstreamSeries
}

type upstreamKey struct {
	addr  netip.AddrPort
	rcode int // noRcode: no answer
}

type upstreamSeries struct {
	attempts prometheus.Counter
	duration prometheus.Observer
}

func newInstanceMetrics() *instanceMetrics {
	return &instanceMetrics{servers: map[string]*serverMetrics{}}
}

func (im *instanceMetrics) forServer(server string) *serverMetrics {
	im.mu.RLock()
	m := im.servers[server]
	im.mu.RUnlock()
	if m != nil {
		return m
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	if m = im.servers[server]; m == nil {
		m = &serverMetrics{server: server, upstreams: map[upstreamKey]*upstreamSeries{}}
		for st := range statusCount {
			m.duration[st] = sessionDuration.WithLabelValues(server, st.String())
			m.bg[st] = backgroundTotal.WithLabelValues(server, st.String())
		}
		m.lines = logLines.WithLabelValues(server)
		for r := range suppressionCount {
			m.suppressed[r] = logSuppressed.WithLabelValues(server, suppressionNames[r])
		}
		for i, code := range hints.Codes {
			m.hints[i] = hintsTotal.WithLabelValues(server, string(code))
		}
		im.servers[server] = m
	}
	return m
}

// count counts a classified session: a client session by Status, BitMap
// and duration, a background one by Status; the upstream attempts of both.
func (m *serverMetrics) count(s *session) {
	st := s.verdict.status
	if s.background {
		m.bg[st].Inc()
		m.attempts(s)
		return
	}
	p := &m.sessions[st][s.bits&15]
	c := p.Load()
	if c == nil {
		cnt := sessionsTotal.WithLabelValues(m.server, st.String(), strconv.Itoa(int(s.bits&15)))
		c = &cnt
		p.Store(c)
	}
	(*c).Inc()
	m.duration[st].Observe(s.end.Sub(s.start).Seconds())
	m.attempts(s)
	m.countHints(s.verdict.hints)
}

// countHints counts findings by code.
func (m *serverMetrics) countHints(hs []hints.Hint) {
	for i := range hs {
		if c := codeIndex(hs[i].Code); c >= 0 {
			m.hints[c].Inc()
		}
	}
}

// codeIndex is code's place in hints.Codes, -1 if it has none.
func codeIndex(code hints.Code) int {
	for i, c := range hints.Codes {
		if c == code {
			return i
		}
	}
	return -1
}

func (m *serverMetrics) attempts(s *session) {
	for a := range s.attempts {
		u := m.upstream(upstreamKey{addr: a.upstream(), rcode: a.rcode()})
		u.attempts.Inc()
		u.duration.Observe(a.duration().Seconds())
	}
}

func (m *serverMetrics) upstream(k upstreamKey) *upstreamSeries {
	m.mu.RLock()
	u := m.upstreams[k]
	m.mu.RUnlock()
	if u != nil {
		return u
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if u = m.upstreams[k]; u == nil {
		addr := addrString(k.addr)
		u = &upstreamSeries{
			attempts: upstreamAttempts.WithLabelValues(m.server, addr, outcome(k.rcode)),
			duration: upstreamDuration.WithLabelValues(m.server, addr),
		}
		m.upstreams[k] = u
	}
	return u
}

// outcome names an upstream attempt's result for the outcome label.
func outcome(rcode int) string {
	if rcode == noRcode {
		return "no_answer"
	}
	if name, ok := dns.RcodeToString[rcode]; ok {
		return name
	}
	return "other"
}
