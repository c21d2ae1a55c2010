package dnsdiag

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/dnstap"
	"github.com/coredns/coredns/plugin/metrics"
	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"
)

// Dnsdiag correlates a query's client and forwarder legs into one session.
type Dnsdiag struct {
	Next plugin.Handler

	policy policy
	limits limits

	// tap is handed to every forward below this instance. Without a
	// forward no query needs a session id in its context.
	tap         *dnstap.Dnstap
	hasForwards atomic.Bool

	bg      backgrounds
	metrics *instanceMetrics

	// lastServer is the server label of the latest client session, for
	// background sessions, which have no query context to take it from.
	lastServer atomic.Pointer[string]
}

// ServeDNS implements plugin.Handler.
func (d *Dnsdiag) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	s := newSession()
	if !sessions.add(s, d.limits.inflight) {
		s.recycle()
		dropped(reasonInflightLimit)
		if d.hasForwards.Load() {
			// Taps of an untracked query are known as such, not background.
			ctx = withSession(ctx, new(sessionCtx), 0, true)
		}
		return plugin.NextOrFailure(d.Name(), d.Next, ctx, w, r)
	}
	s.w, s.req, s.start = w, r, time.Now()
	s.legs = append(s.legs, leg{kind: legCQ, at: s.start})
	s.bits = legCQ
	q := &clientQuery{rw: responseWriter{ResponseWriter: w, id: s.id}}
	ctx = withSession(ctx, &q.ctx, s.id, d.hasForwards.Load())
	defer d.finish(ctx, s)

	rcode, err := plugin.NextOrFailure(d.Name(), d.Next, ctx, &q.rw, r)
	s.returned, s.chainRcode, s.err = true, rcode, err
	return rcode, err
}

// clientQuery is what the plugins below see of a client session: its writer and,
// when they need the session id, its context. One allocation for both; it
// is not pooled, as plugins may keep either past the end of the query.
type clientQuery struct {
	rw  responseWriter
	ctx sessionCtx
}

// Name implements plugin.Handler.
func (d *Dnsdiag) Name() string { return "dnsdiag" }

// finish ends a client session once the chain has returned or panicked.
func (d *Dnsdiag) finish(ctx context.Context, s *session) {
	sessions.remove(s) // from here on no tap or write can reach s
	s.end = time.Now()
	server := metrics.WithServer(ctx)
	if p := d.lastServer.Load(); p == nil || *p != server {
		d.noteServer(server)
	}
	m := d.metrics.forServer(server)
	if !d.conclude(m, s) {
		return
	}
	state := request.Request{W: s.w, Req: s.req}
	s.server, s.proto = server, state.Proto()
	s.client = s.w.RemoteAddr().String()
	s.local = s.w.LocalAddr().String()
	emit(s)
}

// conclude is the end every session goes through, client or background:
// it classifies the session, counts it under m and reports whether it is
// logged. A session that is not logged is recycled here; one that is keeps
// what its line needs, and its caller emits it.
func (d *Dnsdiag) conclude(m *serverMetrics, s *session) bool {
	classify(s)
	// Cross-session detectors are fed here: after classify, before the
	// verdict is counted or logged, so their hints can be on both.
	m.count(s)
	if !d.keep(m, s) {
		s.recycle()
		return false
	}
	s.metrics, s.full = m, d.policy.fullMessages()
	return true
}

// keep applies the log policy and the rate limit to a classified session,
// counting it as suppressed when it is not logged.
func (d *Dnsdiag) keep(m *serverMetrics, s *session) bool {
	reason := suppressionCount
	switch {
	case !d.policy.selects(s):
		reason = suppressedPolicy
	case !d.policy.limiter.allow(s.end):
		reason = suppressedRateLimit
	default:
		return true
	}
	m.suppressed[reason].Inc()
	return false
}

// noteServer is apart from finish for escape analysis: storing &server
// moves server to the heap, and in finish that would cost every query an
// allocation. Here only a change of server label pays for it.
func (d *Dnsdiag) noteServer(server string) { d.lastServer.Store(&server) }

// server is the label background sessions are counted under.
func (d *Dnsdiag) server() string {
	if p := d.lastServer.Load(); p != nil {
		return *p
	}
	return ""
}
