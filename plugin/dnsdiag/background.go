package dnsdiag

import (
	"sync"
	"time"
)

// backgroundWindow is how long a background session waits for its answer.
// forward gives up 5 s after it started and taps after each attempt, so a
// refresh's last leg arrives well within it.
const backgroundWindow = 10 * time.Second

// backgrounds assembles forwarder legs that belong to no client session
// into background sessions: one per upstream refresh.
type backgrounds struct {
	mu   sync.Mutex
	open map[backgroundKey]*session
}

// backgroundKey identifies one refresh. forward stamps every tap of one
// ServeDNS with the same query time and sends the same query (same DNS id)
// to every upstream it tries.
type backgroundKey struct {
	start  int64
	id     uint16
	origin uint64
}

// add records l in its background session, opening one if needed. The
// session ends with the first forwarder response, or after
// backgroundWindow when no upstream ever answered.
func (b *backgrounds) add(d *Dnsdiag, origin uint64, l leg) {
	m := l.tap
	key := backgroundKey{
		start:  int64(m.GetQueryTimeSec())*int64(time.Second) + int64(m.GetQueryTimeNsec()),
		id:     rawID(m.GetQueryMessage(), m.GetResponseMessage()),
		origin: origin,
	}
	b.mu.Lock()
	if b.open == nil {
		b.open = make(map[backgroundKey]*session)
	}
	s := b.open[key]
	if s == nil {
		if len(b.open) >= d.limits.background {
			b.mu.Unlock()
			dropped(reasonBackgroundLimit)
			return
		}
		s = newSession()
		s.id = sessions.nextID.Add(1) // from the client sessions' sequence: ids never repeat
		s.diag, s.background, s.origin = d, true, origin
		s.start = time.Unix(0, key.start)
		b.open[key] = s
		s.timer = time.AfterFunc(backgroundWindow, func() { b.close(key, s) })
	}
	s.addLeg(l)
	done := l.kind == legFR
	if done {
		delete(b.open, key)
		s.timer.Stop()
	}
	b.mu.Unlock()
	if done {
		d.finishBackground(s)
	}
}

// close ends a background session that got no answer in time.
func (b *backgrounds) close(key backgroundKey, s *session) {
	b.mu.Lock()
	open := b.open[key] == s
	if open {
		delete(b.open, key)
	}
	b.mu.Unlock()
	if open {
		s.diag.finishBackground(s)
	}
}

// rawID is the DNS id of whichever packed message is present.
func rawID(q, r []byte) uint16 {
	if len(q) < 2 {
		q = r
	}
	if len(q) < 2 {
		return 0
	}
	return uint16(q[0])<<8 | uint16(q[1])
}

func (d *Dnsdiag) finishBackground(s *session) {
	s.end = s.legs[len(s.legs)-1].at
	s.rcode = s.lastUpstreamRcode()
	st := s.status()
	server := d.server()
	m := d.metrics.forServer(server)
	m.background(s, st)
	if !d.keep(m, s, st) {
		return
	}
	s.server = server
	emit(s)
}
