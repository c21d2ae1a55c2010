package hints

import (
	"time"
)

// Some verdicts need an event after the session ends: a truncated UDP
// answer is reported only if no TCP query for it follows within TCWindow,
// and a retransmitted A or AAAA that was answered within PairGap of its
// arrival may yet see the other half of its pair arrive. Observe then holds
// the session here and Due releases it. A held entry is never evicted (its
// caller is keeping the session); when its set is full the session is not
// held at all.

// heldRec is a held session.
type heldRec struct {
	id  uint64
	due int64 // when Due releases it

	// TC: the question the client should ask again over TCP.
	tc, cancelled bool
	ip            [16]byte
	name          uint64
	qtype, qclass uint16
	// asked: the UDP query arrived. A TCP query after it counts, even one
	// that arrived a moment before the UDP session's End was taken (the
	// client may read the answer before the handler returns).
	asked int64

	// Pair: the retransmitted half, decided at release.
	pair  bool
	probe probe
}

func (d *Detector) tcKey(k *keys, s *Session) uint64 {
	return mix(d.seed, k.name, &k.ip, s.Qtype, s.Qclass, 0, 0)
}

// hold stores h, or reports false when its set is full.
func (d *Detector) hold(h *heldRec, key uint64) bool {
	sh, base := d.held.set(key)
	sh.mu.Lock()
	for i := base; i < base+d.held.ways; i++ {
		if sh.at[i] == 0 {
			sh.at[i], sh.tag[i], sh.ent[i] = h.due, key, *h
			d.nHeld.Add(1)
			sh.mu.Unlock()
			return true
		}
	}
	sh.mu.Unlock()
	d.drop(ReasonHeldFull)
	return false
}

// cancelTC releases, without a hint, every truncated answer to this client
// for this question that a TCP query s now follows within TCWindow.
func (d *Detector) cancelTC(s *Session, k *keys) {
	if d.nHeld.Load() == 0 {
		return
	}
	key := d.tcKey(k, s)
	start := s.Start.UnixNano()
	sh, base := d.held.set(key)
	sh.mu.Lock()
	for i := base; i < base+d.held.ways; i++ {
		h := &sh.ent[i]
		if sh.at[i] != 0 && sh.tag[i] == key && h.tc && !h.cancelled && h.ip == k.ip && h.name == k.name &&
			h.qtype == s.Qtype && h.qclass == s.Qclass && h.asked < start && start <= h.due {
			h.cancelled = true
			sh.at[i] = start // released by the next Due
		}
	}
	sh.mu.Unlock()
}

// Due releases every held session whose verdict is in at now: fn gets its
// id and the hints Observe could not give yet (none when a TCP retry came,
// or the other half of a pair did not), and the id is forgotten. Call it
// from one goroutine, every few hundred milliseconds or so; fn runs with no
// lock held. To release all of them (at shutdown), pass a time past every
// deadline, e.g. now plus TCWindow.
func (d *Detector) Due(now time.Time, fn func(id uint64, hints []Hint)) {
	if d.nHeld.Load() == 0 {
		return
	}
	t := now.UnixNano()
	var batch [heldWays]heldRec
	for si := range d.held.shards {
		sh := &d.held.shards[si]
		for base := 0; base < len(sh.at); base += d.held.ways {
			n := 0
			sh.mu.Lock()
			for i := base; i < base+d.held.ways; i++ {
				if sh.at[i] != 0 && sh.at[i] <= t {
					batch[n] = sh.ent[i]
					n++
					sh.at[i], sh.ent[i] = 0, heldRec{}
				}
			}
			sh.mu.Unlock()
			for i := range n {
				d.nHeld.Add(-1)
				d.release(&batch[i], fn)
			}
		}
	}
}

func (d *Detector) release(h *heldRec, fn func(id uint64, hints []Hint)) {
	var buf [1]Hint
	out := buf[:0]
	switch {
	case h.pair:
		if hint, ok := d.pairHint(&h.probe); ok {
			out = append(out, hint)
		}
	case h.tc && !h.cancelled:
		out = append(out, Hint{Code: TruncatedNoTCPRetry, Text: textTruncated, Window: time.Duration(d.tcWindow)})
	}
	fn(h.id, out)
}
