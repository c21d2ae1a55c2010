package report

import (
	"net/netip"
	"sync/atomic"
	"time"
)

// bucketBounds are the upper bounds of the attempt-duration histogram, from
// a fast answer on the same network to well past forward's 5 s deadline.
// A fixed histogram lets the report give a p99 per upstream without keeping
// a single attempt.
var bucketBounds = [...]time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

const (
	bucketCount = len(bucketBounds) + 1 // the last one holds what exceeds every bound
	// rcodeOther counts answers whose rcode is outside the header's 4 bits.
	rcodeOther = 16
)

// upstreamStats are one upstream's counters for the current window. They
// are atomics so that attempts are counted without a lock; Tick reads and
// zeroes each with Swap.
type upstreamStats struct {
	addr     netip.AddrPort
	attempts atomic.Uint64
	noAnswer atomic.Uint64
	rcodes   [rcodeOther + 1]atomic.Uint64
	buckets  [bucketCount]atomic.Uint64
	maxNs    atomic.Int64
}

func (u *upstreamStats) observe(a *Attempt) {
	u.attempts.Add(1)
	if !a.Answered {
		u.noAnswer.Add(1)
	} else if a.Rcode >= 0 && a.Rcode < rcodeOther {
		u.rcodes[a.Rcode].Add(1)
	} else {
		u.rcodes[rcodeOther].Add(1)
	}
	u.buckets[bucketOf(a.Duration)].Add(1)
	d := int64(a.Duration)
	for {
		m := u.maxNs.Load()
		if d <= m || u.maxNs.CompareAndSwap(m, d) {
			break
		}
	}
}

func bucketOf(d time.Duration) int {
	for i, b := range bucketBounds {
		if d <= b {
			return i
		}
	}
	return len(bucketBounds)
}

// upstreamWindow is what Tick takes out of an upstreamStats.
type upstreamWindow struct {
	addr     netip.AddrPort
	attempts uint64
	noAnswer uint64
	rcodes   [rcodeOther + 1]uint64
	buckets  [bucketCount]uint64
	max      time.Duration
}

func (u *upstreamStats) take() upstreamWindow {
	w := upstreamWindow{addr: u.addr, attempts: u.attempts.Swap(0), noAnswer: u.noAnswer.Swap(0)}
	for i := range u.rcodes {
		w.rcodes[i] = u.rcodes[i].Swap(0)
	}
	for i := range u.buckets {
		w.buckets[i] = u.buckets[i].Swap(0)
	}
	w.max = time.Duration(u.maxNs.Swap(0))
	return w
}

// p99 is the upper bound of the bucket that holds the 99th percentile, but
// never more than the longest attempt seen (which also bounds the last,
// open bucket). 0 when nothing was counted.
func (w *upstreamWindow) p99() time.Duration {
	var total uint64
	for _, n := range w.buckets {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := (total*99 + 99) / 100 // ceil(0.99 * total)
	var seen uint64
	for i, n := range w.buckets {
		seen += n
		if seen >= rank {
			if i < len(bucketBounds) && bucketBounds[i] < w.max {
				return bucketBounds[i]
			}
			return w.max
		}
	}
	return w.max
}

// maxUpstreams caps the upstreams the report tracks. forward's upstreams
// come from the Corefile, so a Reporter (one per server block) sees a fixed
// handful; attempts to any beyond the cap are counted, not attributed.
const maxUpstreams = 64

// upstreamTable finds an upstream's counters without a lock: readers load
// an immutable slice; a new upstream (rare: once per address per Reporter)
// copies it under the Reporter's mutex. Entries are never removed, so a
// counter an Observe holds is never orphaned.
type upstreamTable struct {
	list      atomic.Pointer[[]*upstreamStats]
	untracked atomic.Uint64 // attempts to upstreams beyond maxUpstreams
}

func (t *upstreamTable) find(addr netip.AddrPort) *upstreamStats {
	if l := t.list.Load(); l != nil {
		for _, u := range *l {
			if u.addr == addr {
				return u
			}
		}
	}
	return nil
}

// add returns addr's counters, creating them if there is room; nil past the
// cap. The caller holds the Reporter's mutex.
func (t *upstreamTable) add(addr netip.AddrPort) *upstreamStats {
	if u := t.find(addr); u != nil {
		return u
	}
	var old []*upstreamStats
	if l := t.list.Load(); l != nil {
		old = *l
	}
	if len(old) >= maxUpstreams {
		return nil
	}
	u := &upstreamStats{addr: addr}
	l := append(old[:len(old):len(old)], u)
	t.list.Store(&l)
	return u
}

func (t *upstreamTable) take() []upstreamWindow {
	l := t.list.Load()
	if l == nil {
		return nil
	}
	out := make([]upstreamWindow, 0, len(*l))
	for _, u := range *l {
		if w := u.take(); w.attempts > 0 {
			out = append(out, w)
		}
	}
	return out
}
