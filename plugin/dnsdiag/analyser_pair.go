package dnsdiag

import (
	"net"
	"net/netip"
	"time"

	"github.com/coredns/coredns/plugin"
	tap "github.com/dnstap/golang-dnstap"
	"github.com/miekg/dns"
)

// Pairing, from what stock CoreDNS v1.15.0 puts in its dnstap messages:
//
//   - CLIENT_QUERY and CLIENT_RESPONSE carry the client's address and port;
//     with the protocol, the DNS id and the question they name one query.
//   - FORWARDER_QUERY carries the client's query as forward received it
//     (the client's DNS id, not the one sent upstream) and, as query
//     address, CoreDNS's own socket; FORWARDER_RESPONSE carries the reply
//     with the client's id restored. Every forwarder message of one
//     forward ServeDNS has the same query time. So the forwarder legs of
//     one forward invocation are keyed by question, id and query time, and
//     an invocation goes to the oldest open client session of the same
//     question and id not yet forwarded: ambiguous when there are several.
//   - Since v1.15.0, when the chain returns an error rcode without
//     answering, dnstap taps a CLIENT_RESPONSE it made itself for the
//     answer the server then writes (see serverGenerated).
//
// A session ends with its client response (a background one with its
// forwarder response), or when its window closes.

// questionKey is a query as every leg of its session repeats it.
type questionKey struct {
	sender        string // identity and version of the sending CoreDNS
	name          string
	qtype, qclass uint16
	id            uint16
}

// clientKey names a client query among the open ones.
type clientKey struct {
	q      questionKey
	client netip.AddrPort
	tcp    bool
}

// fwdKey names one forward invocation: its taps share the query time.
type fwdKey struct {
	q     questionKey
	start int64
}

// pending is an open session with what finds it.
type pending struct {
	s         *session
	ck        clientKey
	fk        fwdKey
	client    bool // it has a client query (ck is set)
	forwarded bool // a forward invocation is paired with it (fk is set)
	shedAt    uint64
	deadline  time.Time

	prev, next *pending // the connection's open sessions, oldest first
}

// pairing is one connection's open sessions. Only the connection's pairing
// goroutine uses it.
type pairing struct {
	a    *Analyser
	shed func() uint64 // frames the connection shed so far

	clients    map[clientKey][]*pending   // oldest first: the same query again is answered in turn
	byQuestion map[questionKey][]*pending // client sessions not yet forwarded
	forwards   map[fwdKey]*pending
	head, tail *pending
}

func newPairing(a *Analyser, shed func() uint64) *pairing {
	return &pairing{a: a, shed: shed, clients: map[clientKey][]*pending{},
		byQuestion: map[questionKey][]*pending{}, forwards: map[fwdKey]*pending{}}
}

// add pairs one decoded message, received at now.
func (p *pairing) add(d *tap.Dnstap, now time.Time) {
	m := d.GetMessage()
	raw := m.GetQueryMessage()
	if m.GetType() == tap.Message_CLIENT_RESPONSE || m.GetType() == tap.Message_FORWARDER_RESPONSE {
		raw = m.GetResponseMessage()
	}
	msg := new(dns.Msg)
	if msg.Unpack(raw) != nil || len(msg.Question) == 0 {
		p.a.m.undecodable.WithLabelValues(undecodableDNS).Inc()
		return
	}
	q := msg.Question[0]
	qk := questionKey{sender: string(d.GetIdentity()) + "\x00" + string(d.GetVersion()),
		name: q.Name, qtype: q.Qtype, qclass: q.Qclass, id: msg.Id}
	switch m.GetType() {
	case tap.Message_CLIENT_QUERY:
		p.clientQuery(d, m, msg, qk, now)
	case tap.Message_CLIENT_RESPONSE:
		p.clientResponse(d, m, qk)
	case tap.Message_FORWARDER_QUERY:
		p.forwarderQuery(d, m, qk, now)
	case tap.Message_FORWARDER_RESPONSE:
		p.forwarderResponse(d, m, qk)
	}
}

func clientKeyOf(m *tap.Message, qk questionKey) clientKey {
	return clientKey{q: qk, client: tapAddrPort(m.GetQueryAddress(), m.GetQueryPort()), tcp: tapTCP(m)}
}

func tapTCP(m *tap.Message) bool {
	p := m.GetSocketProtocol()
	return p == tap.SocketProtocol_TCP || p == tap.SocketProtocol_DOT || p == tap.SocketProtocol_DOH
}

func tapResponseTime(m *tap.Message) time.Time {
	return time.Unix(int64(m.GetResponseTimeSec()), int64(m.GetResponseTimeNsec()))
}

// open starts tracking a new session, unless the session cap is reached.
func (p *pairing) open(s *session, now time.Time) *pending {
	if analyserOpen.Add(1) > int64(p.a.cfg.MaxSessions) {
		analyserOpen.Add(-1)
		p.a.m.dropped.WithLabelValues(droppedSessionCap).Inc()
		s.recycle()
		return nil
	}
	s.id = sessions.nextID.Add(1)
	s.returned = true // the chain's outcome is read from the legs (serverGenerated)
	e := &pending{s: s, shedAt: p.shed(), deadline: now.Add(p.a.cfg.Window), prev: p.tail}
	if p.tail != nil {
		p.tail.next = e
	} else {
		p.head = e
	}
	p.tail = e
	return e
}

func (p *pairing) clientQuery(d *tap.Dnstap, m *tap.Message, req *dns.Msg, qk questionKey, now time.Time) {
	ck := clientKeyOf(m, qk)
	s := newSession()
	e := p.open(s, now)
	if e == nil {
		return
	}
	s.req, s.start = req, tapQueryTime(m)
	s.server = string(d.GetIdentity())
	s.client = ck.client
	s.proto = tapProto(m)
	if s.proto == "dot" || s.proto == "doh" {
		s.proto = "tcp" // as request.Proto says of the plugin's sessions
	}
	s.legs = append(s.legs, leg{kind: legCQ, at: s.start, tap: m})
	s.bits = legCQ
	var remote net.Addr = &net.UDPAddr{IP: ck.client.Addr().AsSlice(), Port: int(ck.client.Port())}
	if ck.tcp {
		remote = &net.TCPAddr{IP: ck.client.Addr().AsSlice(), Port: int(ck.client.Port())}
	}
	p.a.d.diag.begin(s, remote, req)
	if olds := p.clients[ck]; len(olds) > 0 {
		// The same query again (same client socket and id) before the
		// first was answered: the answers are taken in turn, a guess.
		for _, o := range olds {
			o.s.ambiguous = true
		}
		s.ambiguous = true
		p.a.m.ambiguous.Inc()
	}
	e.ck, e.client = ck, true
	p.clients[ck] = append(p.clients[ck], e)
	p.byQuestion[qk] = append(p.byQuestion[qk], e)
}

func (p *pairing) clientResponse(d *tap.Dnstap, m *tap.Message, qk questionKey) {
	raw := m.GetResponseMessage()
	l := leg{kind: legCR, at: tapResponseTime(m), tap: m, raw: raw, rcode: wireRcode(raw)}
	list := p.clients[clientKeyOf(m, qk)]
	if len(list) == 0 {
		p.orphan(d, m, l)
		return
	}
	e := list[0]
	s := e.s
	if serverGenerated(s, raw, l.rcode) {
		s.chainRcode = l.rcode
	} else {
		s.addLeg(l)
	}
	p.end(e, l.at, false)
}

// serverGenerated reports whether a client response is the one dnstap
// makes itself when the chain returned an error rcode without answering
// (CoreDNS v1.15.0, plugin/dnstap/handler.go): the plugin sees no such
// leg, the server writes that answer. It is a bare reply, with no record
// in any section. What the server or a plugin writes goes through the
// server's ScrubWriter, which adds an OPT record to the answer of an EDNS
// query; without EDNS only a SERVFAIL after upstream attempts none of
// which was answered is told apart (forward writes nothing then).
func serverGenerated(s *session, raw []byte, rcode int) bool {
	if plugin.ClientWrite(rcode) {
		return false
	}
	if c, ok := wireCounts(raw); !ok || c[1]+c[2]+c[3] != 0 {
		return false
	}
	if s.req != nil && s.req.IsEdns0() != nil {
		return true
	}
	return rcode == dns.RcodeServerFailure && s.bits&legFQ != 0 && s.bits&legFR == 0
}

func (p *pairing) forwarderQuery(d *tap.Dnstap, m *tap.Message, qk questionKey, now time.Time) {
	fk := fwdKey{q: qk, start: int64(m.GetQueryTimeSec())*int64(time.Second) + int64(m.GetQueryTimeNsec())}
	l := leg{kind: legFQ, at: now, tap: m}
	if e := p.forwards[fk]; e != nil {
		e.s.addLeg(l) // the next attempt of the same forward invocation
		return
	}
	e := p.takeForwarded(qk)
	if e == nil {
		// No client waits for it: a prefetch or serve_stale refresh.
		s := newSession()
		if e = p.open(s, now); e == nil {
			return
		}
		s.background, s.start, s.server = true, tapQueryTime(m), string(d.GetIdentity())
	}
	e.fk, e.forwarded = fk, true
	p.forwards[fk] = e
	e.s.addLeg(l)
}

// takeForwarded picks the client session a forward invocation of qk
// belongs to: the oldest open one not yet forwarded. With more than one
// the pairing is a guess, said on each of their lines and counted.
func (p *pairing) takeForwarded(qk questionKey) *pending {
	list := p.byQuestion[qk]
	if len(list) == 0 {
		return nil
	}
	e := list[0]
	if len(list) > 1 {
		p.a.m.ambiguous.Inc()
		for _, o := range list {
			o.s.ambiguous = true
		}
	}
	p.unlist(e)
	return e
}

// without is list without e.
func without(list []*pending, e *pending) []*pending {
	for i, o := range list {
		if o == e {
			return append(list[:i], list[i+1:]...)
		}
	}
	return list
}

// unlist removes e from the sessions waiting for a forward invocation.
func (p *pairing) unlist(e *pending) {
	list := without(p.byQuestion[e.ck.q], e)
	if len(list) == 0 {
		delete(p.byQuestion, e.ck.q)
	} else {
		p.byQuestion[e.ck.q] = list
	}
}

func (p *pairing) forwarderResponse(d *tap.Dnstap, m *tap.Message, qk questionKey) {
	fk := fwdKey{q: qk, start: int64(m.GetQueryTimeSec())*int64(time.Second) + int64(m.GetQueryTimeNsec())}
	l := leg{kind: legFR, at: tapResponseTime(m), tap: m}
	e := p.forwards[fk]
	if e == nil || e.s.bits&legFQ == 0 {
		p.orphan(d, m, l)
		return
	}
	s := e.s
	s.mu.Lock()
	if n := len(s.legs); s.legs[n-1].kind == legFQ {
		// The attempt ended with its answer: forward taps both after it.
		s.legs[n-1].at = l.at
	}
	s.addLegLocked(l)
	s.mu.Unlock()
	if s.background {
		p.end(e, l.at, false)
	}
}

// orphan ends at once a session of a response whose query was never seen:
// it was shed, lost by CoreDNS, or sent before the connection began.
func (p *pairing) orphan(d *tap.Dnstap, m *tap.Message, l leg) {
	p.a.m.unpaired.WithLabelValues(m.GetType().String()).Inc()
	s := newSession()
	if p.open(s, time.Now()) == nil {
		return
	}
	s.start, s.end, s.server, s.lost = tapQueryTime(m), l.at, string(d.GetIdentity()), true
	s.background = l.kind == legFR
	if l.kind == legCR {
		s.client, s.proto = tapAddrPort(m.GetQueryAddress(), m.GetQueryPort()), tapProto(m)
	}
	s.addLeg(l)
	p.remove(p.tail)
	p.conclude(s)
}

// expire ends the sessions whose window closed by now.
func (p *pairing) expire(now time.Time) {
	for p.head != nil && !now.Before(p.head.deadline) {
		e := p.head
		p.end(e, e.s.legs[len(e.s.legs)-1].at, false)
	}
}

// endAll ends every open session: the connection is gone, and with it
// whatever legs they still lacked.
func (p *pairing) endAll() {
	for p.head != nil {
		e := p.head
		p.end(e, e.s.legs[len(e.s.legs)-1].at, true)
	}
}

// end ends an open session at time end.
func (p *pairing) end(e *pending, end time.Time, lost bool) {
	s := e.s
	if e.client {
		p.clients[e.ck] = without(p.clients[e.ck], e)
		if len(p.clients[e.ck]) == 0 {
			delete(p.clients, e.ck)
		}
	}
	if e.client && !e.forwarded {
		p.unlist(e)
	}
	if e.forwarded && p.forwards[e.fk] == e {
		delete(p.forwards, e.fk)
	}
	if e.shedAt != p.shed() {
		lost = true
		p.a.m.dropped.WithLabelValues(droppedShed).Inc()
	}
	s.end, s.lost = end, s.lost || lost
	p.remove(e)
	p.conclude(s)
}

// remove takes e off the open list.
func (p *pairing) remove(e *pending) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		p.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		p.tail = e.prev
	}
	e.prev, e.next, e.s = nil, nil, nil
	analyserOpen.Add(-1)
}

// analyserServer is the server label of the analyser's metrics. The
// sender's identity, on the line as Server, cannot be one: it comes from
// the wire (any bytes), and every new CoreDNS pod brings a new one.
const analyserServer = "dnstap"

// conclude hands the session to the plugin's own end of a session.
func (p *pairing) conclude(s *session) {
	p.a.d.conclude(p.a.d.metrics.forServer(analyserServer), s)
}
