package hints

import "time"

// A retransmission is recognised by its DNS ID, which is 16 random bits. A
// client that asks one question often from one address (dnsperf, NodeLocal
// DNSCache, any resolver reusing its sockets) draws the ID of an earlier
// lookup again by chance: within RetransmitWindow, about once per 65536
// lookups of that question. So the rates table counts, per client address
// and question, the distinct lookups (copies that repeat no ID still in
// retx), and a repeated ID is reported only when a chance repeat over the gap
// between its copies is unlikely (byChance).

// lookups counts the distinct lookups of one question from one client
// address, in two buckets of RetransmitWindow: a sliding-window counter.
type lookups struct {
	ip            [16]byte
	name          uint64
	since         int64  // start of the current bucket
	cur, prev     uint32 // lookups in it, and in the bucket before it (0: none, or the key is new)
	qtype, qclass uint16
}

func (e *lookups) is(ip *[16]byte, name uint64, qtype, qclass uint16) bool {
	return e.ip == *ip && e.name == name && e.qtype == qtype && e.qclass == qclass
}

// roll moves the buckets on to time t, for buckets of window ns.
func (e *lookups) roll(t, window int64) {
	switch el := t - e.since; {
	case el < window: // the current bucket (or an arrival read before a later one)
	case el < 2*window:
		e.prev, e.cur, e.since = e.cur, 0, e.since+window
	default:
		e.prev, e.cur, e.since = 0, 0, t
	}
}

// rate is the distinct lookups per ns at time t: over the last window when
// the previous bucket holds some, else over the time since the first one
// (which opened that time, so it is not counted in it).
func (e lookups) rate(t, window int64) float64 {
	e.roll(t, window)
	el := max(t-e.since, 0)
	if e.prev > 0 {
		return (float64(e.cur) + float64(e.prev)*float64(window-el)/float64(window)) / float64(window)
	}
	if e.cur < 2 {
		return 0
	}
	return float64(e.cur-1) / float64(max(el, 1))
}

// maxChanceRepeat is the largest expected number of chance repeats over a
// gap for which a repeated ID is still reported as a retransmission: 1%. A
// distinct lookup draws the earlier copy's ID with probability 1/65536, so n
// distinct lookups of the question in the gap repeat it about n/65536 times
// by chance: a repeat is reported while n <= 0.01*65536 = 655. At r lookups
// per second, a copy 5 s later (glibc's timeout) is reported up to r = 131/s,
// and none is above 655/s (see minRetryInterval).
const maxChanceRepeat = 0.01

// minRetryInterval is the shortest gap over which chance repeats are
// reckoned. A real retransmission comes one client timeout after the earlier
// copy: at least 1 s for glibc (timeout is whole seconds) and dig (+time), 2.5 s
// for musl by default. Without a floor, a repeat a few ms after the earlier
// copy would always look unlikely to be chance, and a question asked a
// thousand times a second would still be reported on 1% of its lookups; with
// it, above 655 lookups/s of one question from one address nothing is.
const minRetryInterval = time.Second

func (d *Detector) rateKey(k *keys, qtype, qclass uint16) uint64 {
	return mix(d.seed, k.name, &k.ip, qtype, qclass, 0, 0)
}

// countLookup counts a distinct lookup of s's question from its address.
func (d *Detector) countLookup(s *Session, k *keys) {
	t := s.Start.UnixNano()
	key := d.rateKey(k, s.Qtype, s.Qclass)
	sh, base := d.rates.set(key)
	sh.mu.Lock()
	i, live := -1, false
	for j := base; j < base+d.rates.ways; j++ {
		if sh.at[j] != 0 && sh.tag[j] == key && sh.ent[j].is(&k.ip, k.name, s.Qtype, s.Qclass) {
			i = j
			break
		}
	}
	if i < 0 {
		// An entry with no lookup within the window counts none in it.
		i, live = sh.victim(base, d.rates.ways, t, d.retxWindow)
		sh.at[i], sh.tag[i] = t, key
		sh.ent[i] = lookups{ip: k.ip, name: k.name, since: t, qtype: s.Qtype, qclass: s.Qclass}
	}
	e := &sh.ent[i]
	e.roll(t, d.retxWindow)
	if e.cur < ^uint32(0) {
		e.cur++
	}
	sh.at[i] = max(sh.at[i], t) // its latest lookup, by which victim expires it
	sh.mu.Unlock()
	if live {
		d.drop(ReasonRateEvicted)
	}
}

// byChance reports whether s, a copy of its question from the same address
// with the same DNS ID as one that arrived gap ns before it, is as likely a
// distinct lookup that drew that ID again: the expected number of chance
// repeats over max(gap, minRetryInterval) exceeds maxChanceRepeat.
func (d *Detector) byChance(s *Session, k *keys, gap int64) bool {
	t := s.Start.UnixNano()
	key := d.rateKey(k, s.Qtype, s.Qclass)
	sh, base := d.rates.set(key)
	sh.mu.Lock()
	var e lookups
	found := false
	for i := base; i < base+d.rates.ways; i++ {
		if sh.at[i] != 0 && sh.tag[i] == key && sh.ent[i].is(&k.ip, k.name, s.Qtype, s.Qclass) {
			e, found = sh.ent[i], true
			break
		}
	}
	sh.mu.Unlock()
	if !found {
		return false
	}
	span := max(gap, min(int64(minRetryInterval), d.retxWindow))
	return e.rate(t, d.retxWindow)*float64(span)/65536 > maxChanceRepeat
}
