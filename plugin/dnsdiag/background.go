package dnsdiag

import (
	"sync"
	"time"

	tap "github.com/dnstap/golang-dnstap"
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
		id:     tapID(m),
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
		s.background, s.origin = true, origin
		s.start = time.Unix(0, key.start)
		b.open[key] = s
		s.timer = time.AfterFunc(backgroundWindow, func() { b.close(d, key, s) })
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

// close ends a background session that got no answer in time. d is the
// instance that opened it, whose policy and metrics it ends under.
func (b *backgrounds) close(d *Dnsdiag, key backgroundKey, s *session) {
	b.mu.Lock()
	open := b.open[key] == s
	if open {
		delete(b.open, key)
	}
	b.mu.Unlock()
	if open {
		d.finishBackground(s)
	}
}

// tapID is the DNS id of whichever packed message the tap holds.
func tapID(m *tap.Message) uint16 {
	id, ok := wireID(m.GetQueryMessage())
	if !ok {
		id, _ = wireID(m.GetResponseMessage())
	}
	return id
}

// finishBackground ends a background session with its last leg.
func (d *Dnsdiag) finishBackground(s *session) {
	s.end = s.legs[len(s.legs)-1].at
	s.server = d.server()
	d.conclude(d.metrics.forServer(s.server), s)
}
