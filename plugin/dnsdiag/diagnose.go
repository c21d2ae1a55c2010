package dnsdiag

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dnsdiag/dnsdiag/plugin/hints"

	"github.com/miekg/dns"
)

// The cross-session diagnosis. The hint detectors (package hints) see every
// client session twice: when its query arrives (begin), and when it ends for
// the client: as its first answer is written (answered), or once classify
// has left its verdict if the client got no answer from the chain
// (diagnose). What they find goes on the verdict, so that
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
	cfg.Dropped = hintDropped
	det, err := hints.New(cfg)
	if err != nil {
		return nil, err
	}
	return &diagnosis{det: det, held: map[uint64]*session{}}, nil
}

// hintDropReasons are the detectors' reasons for dropped_total. Under a
// flood a table evicts on every query, at the deepest point of its stack:
// there hintDropped only adds to an atomic, and the instance's ticker moves
// the counts to Prometheus (flushHintDrops).
var hintDropReasons = [...]string{hints.ReasonRetransmitEvicted, hints.ReasonRateEvicted, hints.ReasonPairEvicted, hints.ReasonSearchEvicted,
	hints.ReasonHeldFull, hints.ReasonUpstreamsFull}

var hintDropCounts [len(hintDropReasons)]atomic.Uint64

func hintDropped(reason string) {
	for i := range hintDropReasons {
		if hintDropReasons[i] == reason {
			hintDropCounts[i].Add(1)
			return
		}
	}
	dropped(reason)
}

// flushHintDrops adds the drops counted since the last flush to
// dropped_total.
func flushHintDrops() {
	for i := range hintDropCounts {
		if n := hintDropCounts[i].Swap(0); n > 0 {
			droppedTotal.WithLabelValues(hintDropReasons[i]).Add(float64(n))
		}
	}
}

// begin shows the detectors a client query from remote as it arrives.
func (g *diagnosis) begin(s *session, remote net.Addr, r *dns.Msg) {
	p := &s.probe
	s.diag = g
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

// clientAnswer is what the detectors need of an answer to the client.
type clientAnswer struct {
	at        time.Time
	rcode     int
	records   int // in the answer section
	truncated bool
}

// answered shows the detectors a client session as its first answer is
// about to be written, before it leaves and before the chain unwinds: the
// client may send its next query (a retransmission, the next candidate of a
// search walk) the moment the answer arrives, and the detectors must by
// then know this one was answered. It runs under the registry's lock for
// the session.
func (s *session) answered(a clientAnswer) {
	if s.diag == nil || s.observed {
		return
	}
	s.mu.Lock()
	p := s.fillProbe()
	s.mu.Unlock()
	p.End, p.Answered, p.Rcode, p.Answers, p.Truncated = a.at, true, a.rcode, a.records, a.truncated
	s.observe()
}

// truncatedOnWrite has the detectors hold a session whose answer was
// truncated as it was written, after they were told of it (see answered).
func (s *session) truncatedOnWrite() {
	if s.diag == nil || !s.observed || s.held || !s.probe.Client.IsValid() {
		return
	}
	s.probe.Truncated = true
	if s.held = s.diag.det.HoldTruncated(&s.probe); s.held {
		s.diag.hold(s)
	}
}

// diagnose shows the detectors a classified client session that they have
// not seen answered (the client got nothing, or only the server's answer),
// and puts their hints on its verdict.
func (g *diagnosis) diagnose(s *session) {
	if !s.observed && s.diag != nil {
		v := &s.verdict
		p := s.fillProbe()
		p.End = s.end
		p.Answered = s.bits&legCR != 0 || v.serverWrote
		p.Rcode = v.rcode
		p.Answers = s.answers()
		p.Truncated = v.truncated
		s.observe()
	}
	s.verdict.hints = s.hints
}

// fillProbe completes the probe with the upstream attempts so far.
func (s *session) fillProbe() *hints.Session {
	p := &s.probe
	p.Attempts = s.probeTries[:0]
	for a := range s.attempts {
		if len(p.Attempts) == maxProbeAttempts {
			break
		}
		p.Attempts = append(p.Attempts, hints.Attempt{Upstream: a.upstream(), TCP: a.tcp(), Answered: a.r != nil})
	}
	return p
}

// observe hands the completed probe to the detectors, once.
func (s *session) observe() {
	s.observed = true
	if !s.probe.Client.IsValid() {
		return
	}
	if s.hints, s.held = s.diag.det.Observe(&s.probe, s.hintBuf[:0]); s.held {
		s.diag.hold(s)
	}
}

// hold keeps s from the moment the detector holds it, which may be before
// the session has ended (it is told of the answer as it is written).
func (g *diagnosis) hold(s *session) {
	g.mu.Lock()
	g.held[s.id] = s
	g.mu.Unlock()
}

// park hands an ended, held session to the detector's release, which will
// decide it. It reports false when the detector released the session while
// it was still ending: its later hints are then in s.extra, and the caller
// decides it.
func (g *diagnosis) park(s *session) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s.released {
		return false
	}
	s.parked = true
	return true
}

// release hands every held, parked session whose window closed by now, with
// the hints its later verdict added, to done. A session released before it
// was parked keeps those hints for park's caller.
func (g *diagnosis) release(now time.Time, done func(s *session, extra []hints.Hint)) {
	g.det.Due(now, func(id uint64, extra []hints.Hint) {
		g.mu.Lock()
		s := g.held[id]
		delete(g.held, id)
		if s != nil && !s.parked {
			s.extra, s.released = append(s.extra, extra...), true
			s = nil
		}
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
	if l := s.lastAnswer(); l != nil {
		if l.msg != nil {
			return len(l.msg.Answer)
		}
		c, _ := wireCounts(l.raw)
		return c[1]
	}
	return 0
}
