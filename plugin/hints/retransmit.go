package hints

import (
	"time"
	"unsafe"
)

// copyRec is one copy of a query in the retx table: written by Begin (or by
// Observe when Begin was not called), completed by Observe. Each copy has
// its own slot; copies of one query share a key, hence a set, so a flood of
// them only churns that set.
type copyRec struct {
	ip                       [16]byte
	name                     uint64
	id                       uint64
	start, end               int64 // end 0: still in flight
	dnsID, qtype, qclass     uint16
	port                     uint16
	rcode                    int16
	up                       uint16 // 1 + the last attempt's slot in Detector.ups, 0 if none
	attempts                 uint8  // upstream attempts, capped at 255
	tcp, answered, truncated bool
}

// An entry fills one cache line: a session touches one line of its entry.
var _ [64 - unsafe.Sizeof(copyRec{})]struct{}

func (e *copyRec) is(ip *[16]byte, name uint64, dnsID, qtype, qclass uint16) bool {
	return e.ip == *ip && e.name == name && e.dnsID == dnsID && e.qtype == qtype && e.qclass == qclass
}

// answeredBy reports whether the copy had been answered at time t.
func (e *copyRec) answeredBy(t int64) bool { return e.answered && e.end != 0 && e.end <= t }

// arrive records a session's arrival in the tables that need it.
func (d *Detector) arrive(s *Session, k *keys) {
	start := s.Start.UnixNano()
	sh, base := d.retx.set(k.retx)
	sh.mu.Lock()
	repeat := false
	for i := base; i < base+d.retx.ways; i++ {
		if sh.at[i] == 0 || sh.tag[i] != k.retx || !sh.ent[i].is(&k.ip, k.name, s.DNSID, s.Qtype, s.Qclass) {
			continue
		}
		if sh.ent[i].id == s.ID {
			sh.mu.Unlock() // Begin called twice
			return
		}
		repeat = repeat || sh.ent[i].within(start, d.retxWindow)
	}
	i, live := sh.victim(base, d.retx.ways, start, d.retxWindow)
	sh.at[i], sh.tag[i] = start, k.retx
	sh.ent[i] = copyRec{ip: k.ip, name: k.name, id: s.ID, start: start, dnsID: s.DNSID, qtype: s.Qtype, qclass: s.Qclass, port: s.Client.Port(), tcp: s.TCP}
	sh.mu.Unlock()
	if live {
		d.drop(ReasonRetransmitEvicted)
	}
	d.arriveOthers(s, k, repeat)
}

// within reports whether the copy arrived within window of t, before or
// after it.
func (e *copyRec) within(t, window int64) bool { return max(t-e.start, e.start-t) <= window }

// arriveOthers records an arrival everywhere but in retx; repeat says that
// retx holds another copy of it within the window (the same DNS ID), so it
// is no distinct lookup.
func (d *Detector) arriveOthers(s *Session, k *keys, repeat bool) {
	if !repeat {
		d.countLookup(s, k)
	}
	if pairable(s) {
		d.addArrival(s, k)
	}
}

// finished is what finish learnt about a session's copies.
type finished struct {
	earlier    copyRec // the latest earlier copy within the window; start 0 if none
	inserted   bool    // the session had no entry: Begin was not called, or it was evicted
	repeat     bool    // another copy (the same DNS ID) arrived within the window, before or after it
	retriedTCP bool    // a TCP copy arrived since this one did
}

// finish completes the session's copy and finds the copy before it.
func (d *Detector) finish(s *Session, k *keys) (f finished) {
	start, end := s.Start.UnixNano(), s.End.UnixNano()
	up := 0
	if n := len(s.Attempts); n > 0 {
		up = d.ups.find(s.Attempts[n-1].Upstream, true) + 1
	}
	sh, base := d.retx.set(k.retx)
	sh.mu.Lock()
	own, prev := -1, -1
	for i := base; i < base+d.retx.ways; i++ {
		e := &sh.ent[i]
		if sh.at[i] == 0 || sh.tag[i] != k.retx || !e.is(&k.ip, k.name, s.DNSID, s.Qtype, s.Qclass) {
			continue
		}
		if e.id != s.ID && e.within(start, d.retxWindow) {
			f.repeat = true
		}
		switch {
		case e.id == s.ID:
			own = i
		case e.start < start && start-e.start <= d.retxWindow:
			if prev < 0 || e.start > sh.ent[prev].start {
				prev = i
			}
		case e.start >= start && e.tcp:
			f.retriedTCP = true
		}
	}
	// A TCP copy after a truncated answer is the client doing what TC
	// asks, not a retransmission.
	if prev >= 0 && !(s.TCP && sh.ent[prev].truncated) {
		f.earlier = sh.ent[prev]
	}
	live := false
	if own < 0 {
		own, live = sh.victim(base, d.retx.ways, start, d.retxWindow)
		f.inserted = true
		sh.at[own], sh.tag[own] = start, k.retx
		sh.ent[own] = copyRec{ip: k.ip, name: k.name, id: s.ID, start: start, dnsID: s.DNSID, qtype: s.Qtype, qclass: s.Qclass, port: s.Client.Port(), tcp: s.TCP}
	}
	e := &sh.ent[own]
	e.end, e.answered, e.truncated, e.rcode = end, s.Answered, s.Truncated, int16(s.Rcode)
	e.attempts, e.up = uint8(min(len(s.Attempts), 255)), uint16(up)
	sh.mu.Unlock()
	if live {
		d.drop(ReasonRetransmitEvicted)
	}
	return f
}

// retransmitHint describes s as a copy of e.
func (d *Detector) retransmitHint(s *Session, e *copyRec) Hint {
	start := s.Start.UnixNano()
	samePort := e.port == s.Client.Port() && e.tcp == s.TCP
	if e.answeredBy(start) {
		return Hint{Code: RetransmitAfterAnswer, Text: textAfterAnswer, Earlier: e.id, SamePort: samePort,
			EarlierRcode: int(e.rcode), Ago: time.Duration(start - e.end)}
	}
	h := Hint{Code: RetransmitUnanswered, Text: textUnanswered, Earlier: e.id, SamePort: samePort, Attempts: int(e.attempts)}
	h.InFlight = e.end == 0 || e.end > start
	if h.InFlight {
		h.Running = time.Duration(start - e.start)
	} else {
		h.Running = time.Duration(e.end - e.start)
	}
	switch {
	case e.end == 0:
		// Its attempts are known only when it ends.
	case e.attempts > 0:
		h.Waiting = WaitingUpstream
		if e.up > 0 {
			h.Upstream = d.ups.addr(int(e.up) - 1)
		}
	default:
		h.Waiting = WaitingPlugin
	}
	return h
}

// markTruncated notes on the session's own copy that its answer was
// truncated, so that the client's TCP retry is not taken for a
// retransmission (see HoldTruncated). It reports whether that retry, a TCP
// copy with the same ID, arrived already: the client may read the answer
// and ask again before the server's writer returns.
func (d *Detector) markTruncated(s *Session, k *keys) (retriedTCP bool) {
	start := s.Start.UnixNano()
	sh, base := d.retx.set(k.retx)
	sh.mu.Lock()
	for i := base; i < base+d.retx.ways; i++ {
		e := &sh.ent[i]
		if sh.at[i] == 0 || sh.tag[i] != k.retx {
			continue
		}
		switch {
		case e.id == s.ID:
			e.truncated = true
		case e.tcp && e.start >= start && e.is(&k.ip, k.name, s.DNSID, s.Qtype, s.Qclass):
			retriedTCP = true
		}
	}
	sh.mu.Unlock()
	return retriedTCP
}
