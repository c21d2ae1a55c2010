package hints

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// upstreams remembers, per upstream address, when it last answered and
// last failed over UDP. The addresses are forward's targets from the
// Corefile, a short fixed list, so slots are taken once and never reused;
// lookups read them without a lock.
type upstreams struct {
	mu  sync.Mutex // serialises taking a slot
	n   atomic.Int32
	ent []upstream
}

type upstream struct {
	addr           netip.AddrPort // written once, before n counts the slot
	udpOK, udpFail atomic.Int64
}

const upstreamSize = unsafe.Sizeof(upstream{})

// maxUpstreams: a retx entry names its upstream by a 16-bit slot number.
const maxUpstreams = 1<<16 - 1

// udpRefresh: an upstream's UDP times are rewritten at most this often, so
// that every forwarded query does not write the same cache line.
const udpRefresh = int64(100 * time.Millisecond)

// find returns a's slot; with add, it takes a free one if a has none. It
// returns -1 when a is not tracked.
func (u *upstreams) find(a netip.AddrPort, add bool) int {
	if !a.IsValid() {
		return -1
	}
	n := int(u.n.Load())
	for i := range n {
		if u.ent[i].addr == a {
			return i
		}
	}
	if !add {
		return -1
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	m := int(u.n.Load())
	for i := n; i < m; i++ {
		if u.ent[i].addr == a {
			return i
		}
	}
	if m == len(u.ent) {
		return -1
	}
	u.ent[m].addr = a
	u.n.Store(int32(m + 1))
	return m
}

// addr is the address of slot i, zone dropped (JSON needs no escaping then).
func (u *upstreams) addr(i int) netip.AddrPort {
	a := u.ent[i].addr
	return netip.AddrPortFrom(a.Addr().WithZone(""), a.Port())
}

// upstreamTCP records s's UDP attempts and reports its first TCP attempt
// that got no answer where that does not look like a dead upstream: the
// same upstream answered over UDP within UpstreamWindow (and did not fail
// over UDP since), or forward used TCP because the client did.
func (d *Detector) upstreamTCP(s *Session, out []Hint) []Hint {
	now := s.End.UnixNano()
	tcpFailed := false
	for i := range s.Attempts {
		a := &s.Attempts[i]
		if !a.Upstream.IsValid() {
			continue
		}
		if a.TCP {
			tcpFailed = tcpFailed || !a.Answered
			continue
		}
		i := d.ups.find(a.Upstream, true)
		if i < 0 {
			d.drop(ReasonUpstreamsFull)
			continue
		}
		switch u := &d.ups.ent[i]; {
		case a.Answered:
			if now-u.udpOK.Load() > udpRefresh {
				u.udpOK.Store(now)
			}
		default:
			if now-u.udpFail.Load() > udpRefresh {
				u.udpFail.Store(now)
			}
		}
	}
	if !tcpFailed {
		return out
	}
	for i := range s.Attempts {
		a := &s.Attempts[i]
		if !a.TCP || a.Answered || !a.Upstream.IsValid() {
			continue
		}
		var ok, fail int64
		if i := d.ups.find(a.Upstream, false); i >= 0 {
			ok, fail = d.ups.ent[i].udpOK.Load(), d.ups.ent[i].udpFail.Load()
		}
		h := Hint{Code: UpstreamTCPFailed, Text: textUpstreamTCP, Upstream: netip.AddrPortFrom(a.Upstream.Addr().WithZone(""), a.Upstream.Port())}
		switch {
		case ok != 0 && now-ok <= d.upWindow && ok >= fail:
			h.Evidence, h.UDPAgo = EvidenceUDPAnswered, time.Duration(now-ok)
		case s.TCP && (fail == 0 || now-fail > d.upWindow):
			h.Evidence = EvidenceClientTCP
		default:
			continue
		}
		return append(out, h)
	}
	return out
}
