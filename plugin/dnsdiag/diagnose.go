package dnsdiag

import (
	"net"
	"sync"
	"time"

	"github.com/dnsdiag/dnsdiag/plugin/hints"

	"github.com/miekg/dns"
)

// The cross-session diagnosis. The hint detectors (package hints) see every
// client session twice: when its query arrives (begin) and once classify has
// left its verdict (diagnose). What they find goes on the verdict, so that
// metrics, the log policy and the line read it like the rest of it.
//
// A finding may need a later event: a truncated UDP answer is only a problem
// if the client does not ask again over TCP within the detector's window.
// Such a session is held (counted, its line not yet decided) until the
// detector releases it; the client's answer was sent long before.

// maxProbeAttempts bounds the upstream attempts the detectors see of one
// session. forward makes a few per upstream, so only a pathological chain
// reaches it; the detectors then see the first ones.
const maxProbeAttempts = 8

// dueInterval is how often held sessions whose window has closed are
// released. It bounds how late past the detector's window their line comes.
const dueInterval = 250 * time.Millisecond

// diagnosis is one instance's cross-session state.
type diagnosis struct {
	det *hints.Detector

	// held are the sessions waiting for the detector's later verdict, by
	// id. The detector holds at most its HeldEntries, so this is bounded.
	mu   sync.Mutex
	held map[uint64]*session
}

func newDiagnosis(cfg hints.Config) (*diagnosis, error) {
	cfg.Dropped = dropped
	det, err := hints.New(cfg)
	if err != nil {
		return nil, err
	}
	return &diagnosis{det: det, held: map[uint64]*session{}}, nil
}

// begin shows the detectors a client query from remote as it arrives.
func (g *diagnosis) begin(s *session, remote net.Addr, r *dns.Msg) {
	p := &s.probe
	switch a := remote.(type) {
	case *net.UDPAddr:
		p.Client = a.AddrPort()
	case *net.TCPAddr:
		p.Client, p.TCP = a.AddrPort(), true
	default:
		return // no address to tell retransmissions by: nothing to detect
	}
	p.ID, p.DNSID, p.Start = s.id, r.Id, s.start
	if len(r.Question) > 0 {
		q := &r.Question[0]
		p.Name, p.Qtype, p.Qclass = q.Name, q.Qtype, q.Qclass
	}
	g.det.Begin(p)
}

// diagnose completes the probe of a classified client session, puts the
// detectors' hints on its verdict and reports whether the session must be
// held for a later verdict.
func (g *diagnosis) diagnose(s *session) (held bool) {
	p := &s.probe
	if !p.Client.IsValid() {
		return false
	}
	v := &s.verdict
	p.End = s.end
	p.Answered = s.bits&legCR != 0 || v.serverWrote
	p.Rcode = v.rcode
	p.Answers = s.answers()
	p.Truncated = v.truncated
	p.Attempts = s.probeTries[:0]
	for a := range s.attempts {
		if len(p.Attempts) == maxProbeAttempts {
			break
		}
		p.Attempts = append(p.Attempts, hints.Attempt{Upstream: a.upstream(), TCP: a.tcp(), Answered: a.r != nil})
	}
	v.hints, held = g.det.Observe(p, s.hintBuf[:0])
	return held
}

// hold keeps s until the detector releases it.
func (g *diagnosis) hold(s *session) {
	g.mu.Lock()
	g.held[s.id] = s
	g.mu.Unlock()
}

// release hands every held session whose window closed by now, with the
// hints its later verdict added, to done.
func (g *diagnosis) release(now time.Time, done func(s *session, extra []hints.Hint)) {
	g.det.Due(now, func(id uint64, extra []hints.Hint) {
		g.mu.Lock()
		s := g.held[id]
		delete(g.held, id)
		g.mu.Unlock()
		if s != nil {
			done(s, extra)
		}
	})
}

// releaseAll releases every held session, at shutdown: no window the
// detector keeps is longer than this.
func (g *diagnosis) releaseAll(done func(s *session, extra []hints.Hint)) {
	g.release(time.Now().Add(time.Hour), done)
}

// answers is the number of answer records in the client's last response.
func (s *session) answers() int {
	for i := len(s.legs) - 1; i >= 0; i-- {
		l := &s.legs[i]
		if l.kind != legCR {
			continue
		}
		if l.msg != nil {
			return len(l.msg.Answer)
		}
		c, _ := wireCounts(l.raw)
		return c[1]
	}
	return 0
}
