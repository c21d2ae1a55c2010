package dnsdiag

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/dnstap"
	"github.com/coredns/coredns/plugin/metrics"
	"github.com/coredns/coredns/request"
	"github.com/dnsdiag/dnsdiag/plugin/hints"
	"github.com/miekg/dns"
	ot "github.com/opentracing/opentracing-go"
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
	diag    *diagnosis
	report  *reporting // nil with `report off`

	// lastServer is the server label of the latest client session, for
	// background sessions, which have no query context to take it from.
	lastServer atomic.Pointer[string]
}

// ServeDNS implements plugin.Handler. The query is served on a worker
// (workers.go).
func (d *Dnsdiag) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	return d.serveOnWorker(ctx, w, r)
}

// serve follows the query down the chain as a session.
func (d *Dnsdiag) serve(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
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
	d.diag.begin(s, w.RemoteAddr(), r)
	q := &clientQuery{rw: responseWriter{ResponseWriter: w, id: s.id}}
	ctx = withSession(ctx, &q.ctx, s.id, d.hasForwards.Load())
	defer d.finish(ctx, s)

	rcode, err := d.serveNext(ctx, &q.rw, r)
	s.returned, s.chainRcode, s.err = true, rcode, err
	return rcode, err
}

// serveNext is plugin.NextOrFailure without its allocation: NextOrFailure
// wraps the writer in one more to note which plugin wrote the response, and
// dnsdiag's writer, allocated anyway, does that itself (responseWriter.track).
// With a trace span in the context the span's child is NextOrFailure's to
// make, so it is called as is.
func (d *Dnsdiag) serveNext(ctx context.Context, w *responseWriter, r *dns.Msg) (int, error) {
	if d.Next == nil || ot.SpanFromContext(ctx) != nil {
		return plugin.NextOrFailure(d.Name(), d.Next, ctx, w, r)
	}
	w.next = d.Next.Name()
	return d.Next.ServeDNS(ctx, w, r)
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
	s.server = server
	d.conclude(d.metrics.forServer(server), s)
}

// conclude is the end every session goes through, client or background:
// it classifies the session, feeds the cross-session detectors with it and
// counts it under m. Then the session is logged or recycled, unless the
// detectors need a later event to finish its verdict: it is then held
// until they release it (see release).
func (d *Dnsdiag) conclude(m *serverMetrics, s *session) {
	classify(s)
	if !s.background {
		d.diag.diagnose(s)
	}
	m.count(s)
	if s.held {
		// The goroutine ending the session still owns its messages: copy
		// them now, before the release may take it.
		d.ready(m, s)
		s.keepMessages()
		if d.diag.park(s) {
			return
		}
		s.verdict.hints = append(s.verdict.hints, s.extra...)
		m.countHints(s.extra)
	}
	d.decide(m, s)
}

// release ends a held session with the hints its later verdict added.
func (d *Dnsdiag) release(s *session, extra []hints.Hint) {
	s.verdict.hints = append(s.verdict.hints, extra...)
	s.metrics.countHints(extra)
	d.decide(s.metrics, s)
}

// decide counts the session, its verdict now final, into the report, then
// logs it if the policy keeps it and recycles it otherwise.
func (d *Dnsdiag) decide(m *serverMetrics, s *session) {
	if d.report != nil {
		d.report.observe(s)
	}
	if !d.keep(m, s) {
		s.recycle()
		return
	}
	d.ready(m, s)
	emit(s)
}

// ready notes what the line needs of the session's writer and of the
// policy while the goroutine that ended the session still owns them. Only
// logged or held sessions pay for it.
func (d *Dnsdiag) ready(m *serverMetrics, s *session) {
	if s.ready {
		return
	}
	s.ready, s.metrics, s.full, s.maxLine = true, m, d.policy.fullMessages(), d.policy.maxLine
	if !s.background && s.w != nil { // the analyser's sessions have no writer
		state := request.Request{W: s.w, Req: s.req}
		s.proto = state.Proto()
		s.client = addrPortOf(s.w.RemoteAddr())
		s.local = addrPortOf(s.w.LocalAddr())
	}
}

// keep applies the log policy and the rate limit to a classified session,
// counting it as suppressed when it is not logged.
func (d *Dnsdiag) keep(m *serverMetrics, s *session) bool {
	reason := suppressionCount
	selected, bucket := d.policy.selects(s)
	switch {
	case !selected:
		reason = suppressedPolicy
	case !bucket.allow(s.end):
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
