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

	// tap is handed to every forward below this instance; forwards counts
	// them. Without a forward no query needs a session id in its context.
	tap      *dnstap.Dnstap
	forwards atomic.Int32

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
		if d.forwards.Load() > 0 {
			// Taps of an untracked query are known as such, not background.
			ctx = withSession(ctx, new(sessionCtx), 0, true)
		}
		return plugin.NextOrFailure(d.Name(), d.Next, ctx, w, r)
	}
	s.diag, s.w, s.req, s.start = d, w, r, time.Now()
	s.legs = append(s.legs, leg{kind: legCQ, at: s.start})
	s.bits = legCQ
	q := &clientQuery{rw: responseWriter{ResponseWriter: w, id: s.id}}
	ctx = withSession(ctx, &q.ctx, s.id, d.forwards.Load() > 0)
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

// finish ends a client session once the chain has returned or panicked: it
// works out what the client received, counts the session and hands it to
// the logger if the policy wants it.
func (d *Dnsdiag) finish(ctx context.Context, s *session) {
	sessions.remove(s) // from here on no tap or write can reach s
	s.end = time.Now()
	switch {
	case !s.returned:
		// The server recovers the panic and answers SERVFAIL itself.
		s.panicked, s.serverWrote, s.rcode = true, true, dns.RcodeServerFailure
	case !plugin.ClientWrite(s.chainRcode):
		// The server writes this rcode to the client after the chain
		// returns, on its own writer: the wrapper never sees it. If the
		// chain had answered already, the client keeps that first answer.
		s.serverWrote = true
		if s.bits&legCR == 0 {
			s.rcode = s.chainRcode
		}
	}
	server := metrics.WithServer(ctx)
	if p := d.lastServer.Load(); p == nil || *p != server {
		d.noteServer(server)
	}
	st := s.status()
	m := d.metrics.forServer(server)
	m.session(s, st)
	if !d.keep(m, s, st) {
		return
	}
	state := request.Request{W: s.w, Req: s.req}
	s.server, s.proto = server, state.Proto()
	s.client = s.w.RemoteAddr().String()
	s.local = s.w.LocalAddr().String()
	emit(s)
}

// keep applies the log policy and the rate limit to a finished session. A
// session that is not logged is counted as suppressed and recycled.
func (d *Dnsdiag) keep(m *serverMetrics, s *session, st status) bool {
	reason := suppressionCount
	switch {
	case !d.policy.selects(s, st):
		reason = suppressedPolicy
	case !d.policy.limiter.allow(s.end):
		reason = suppressedRateLimit
	default:
		return true
	}
	m.suppressed[reason].Inc()
	s.recycle()
	return false
}

// noteServer is apart from finish so that only a change of server label,
// not every query, moves the label to the heap.
func (d *Dnsdiag) noteServer(server string) { d.lastServer.Store(&server) }

// server is the label background sessions are counted under.
func (d *Dnsdiag) server() string {
	if p := d.lastServer.Load(); p != nil {
		return *p
	}
	return ""
}
