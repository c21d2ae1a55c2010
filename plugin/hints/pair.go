package hints

import "github.com/miekg/dns"

// glibc sends A and AAAA of a name back to back from one socket and, when
// either goes unanswered, resends both, same IDs and port. The pair table
// remembers UDP A/AAAA arrivals by client address, port and name, so that a
// retransmitted half can find the other half of its resend and, through
// the retx table, whether CoreDNS had seen and answered that half's first
// copy.

// arrival is one UDP A or AAAA query in the pair table.
type arrival struct {
	ip                         [16]byte
	name                       uint64
	id                         uint64
	start                      int64
	port, qtype, qclass, dnsID uint16
}

func pairable(s *Session) bool {
	return !s.TCP && (s.Qtype == dns.TypeA || s.Qtype == dns.TypeAAAA)
}

func (d *Detector) pairKey(ip *[16]byte, name uint64, port, qclass uint16) uint64 {
	return mix(d.seed, name, ip, port, qclass, 0, 0)
}

func (d *Detector) addArrival(s *Session, k *keys) {
	start, port := s.Start.UnixNano(), s.Client.Port()
	key := d.pairKey(&k.ip, k.name, port, s.Qclass)
	sh, base := d.pairs.set(key)
	a := arrival{ip: k.ip, name: k.name, id: s.ID, start: start, port: port, qtype: s.Qtype, qclass: s.Qclass, dnsID: s.DNSID}
	sh.mu.Lock()
	i, live := sh.victim(base, d.pairs.ways, start, int64(pairKeep))
	if live {
		if j := d.useless(sh, base, &a); j >= 0 {
			i, live = j, false
		}
	}
	sh.at[i], sh.tag[i] = start, key
	sh.ent[i] = a
	sh.mu.Unlock()
	if live {
		d.drop(ReasonPairEvicted)
	}
}

// useless returns the oldest slot of set base (all live) whose arrival a
// makes useless, or -1. Called with the shard locked.
//
// A resolver that keeps its socket (dnsperf, NodeLocal DNSCache) sends the
// same question from the same port many times a second, and each arrival
// would push a live one out. An arrival from a's socket is useless once
// another of its type came (pairHint takes the other half closest in time,
// and for every copy arriving from now on that is the later one) or once
// PairGap has passed since it came (no copy arriving from now on pairs with
// it): replacing it loses nothing a later probe would find. Completing a
// pair does not make a half useless: the other half may be a resent copy
// that looks it up when it ends.
func (d *Detector) useless(sh *shard[arrival], base int, a *arrival) int {
	slot := -1
	for i := base; i < base+d.pairs.ways; i++ {
		e := &sh.ent[i]
		if e.ip == a.ip && e.port == a.port && e.name == a.name && e.qclass == a.qclass &&
			(e.qtype == a.qtype || a.start-e.start > d.pairGap+pairSlack) && (slot < 0 || sh.at[i] < sh.at[slot]) {
			slot = i
		}
	}
	return slot
}

// probe is a retransmitted A or AAAA looking for the other half of its pair.
type probe struct {
	ip                  [16]byte
	name                uint64
	start               int64 // this copy's arrival
	port, qtype, qclass uint16
	answered            bool // CoreDNS had answered its first copy before this one came
}

func probeOf(s *Session, k *keys, earlier *copyRec) probe {
	start := s.Start.UnixNano()
	return probe{ip: k.ip, name: k.name, start: start, port: s.Client.Port(), qtype: s.Qtype, qclass: s.Qclass, answered: earlier.answeredBy(start)}
}

// pairHint finds the other half of p's resend: the other type of the name
// from the same address and port, arrived within PairGap of p. It reports
// false when there is none (yet).
func (d *Detector) pairHint(p *probe) (Hint, bool) {
	other := uint16(dns.TypeA)
	if p.qtype == dns.TypeA {
		other = dns.TypeAAAA
	}
	key := d.pairKey(&p.ip, p.name, p.port, p.qclass)
	sh, base := d.pairs.set(key)
	sh.mu.Lock()
	best := -1
	var bestGap int64
	for i := base; i < base+d.pairs.ways; i++ {
		a := &sh.ent[i]
		if sh.at[i] == 0 || sh.tag[i] != key || a.ip != p.ip || a.name != p.name || a.port != p.port || a.qclass != p.qclass || a.qtype != other {
			continue
		}
		gap := a.start - p.start
		if gap < 0 {
			gap = -gap
		}
		if gap <= d.pairGap && (best < 0 || gap < bestGap) {
			best, bestGap = i, gap
		}
	}
	if best < 0 {
		sh.mu.Unlock()
		return Hint{}, false
	}
	y := sh.ent[best]
	sh.mu.Unlock()

	seen, answered := d.firstCopy(&y)
	h := Hint{Code: ParallelAAAAA, Other: y.id}
	switch {
	case !seen:
		h.Lost, h.Text = LostQuery, textPairQuery
	case p.answered && answered:
		h.Lost, h.Text = LostAnswer, textPairAnswer
	default:
		h.Lost, h.Text = LostNone, textPairNone
	}
	return h, true
}

// firstCopy looks in retx for an earlier copy of y (same ID), and whether
// CoreDNS had answered it before y arrived.
func (d *Detector) firstCopy(y *arrival) (seen, answered bool) {
	key := mix(d.seed, y.name, &y.ip, y.dnsID, y.qtype, y.qclass, 0)
	sh, base := d.retx.set(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	prev := -1
	for i := base; i < base+d.retx.ways; i++ {
		e := &sh.ent[i]
		if sh.at[i] == 0 || sh.tag[i] != key || !e.is(&y.ip, y.name, y.dnsID, y.qtype, y.qclass) || e.id == y.id {
			continue
		}
		if e.start < y.start && y.start-e.start <= d.retxWindow && (prev < 0 || e.start > sh.ent[prev].start) {
			prev = i
		}
	}
	if prev < 0 {
		return false, false
	}
	return true, sh.ent[prev].answeredBy(y.start)
}
