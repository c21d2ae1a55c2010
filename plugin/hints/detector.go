package hints

import (
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// Detector finds hints across sessions. It is safe for concurrent use by
// any number of query goroutines; everything it keeps is allocated by New.
type Detector struct {
	cfg  Config
	seed uint64 // of every hash: random, so that keys cannot be aimed at one set

	// Windows in nanoseconds, as the tables keep times.
	retxWindow, pairGap, searchWindow, tcWindow, upWindow int64

	retx   *table[copyRec]   // every session, by client address, DNS ID and question
	rates  *table[lookups]   // distinct lookups, by client address and question
	pairs  *table[arrival]   // UDP A/AAAA arrivals, by client address, port and name
	search *table[candidate] // NXDOMAIN/NODATA answers, by client address and first label
	held   *table[heldRec]   // sessions waiting for a later verdict
	nHeld  atomic.Int64      // entries in held, so that Due and TCP queries skip it when empty
	ups    upstreams
}

// New returns a Detector with cfg's zero fields set to their defaults.
func New(cfg Config) (*Detector, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Detector{
		cfg:          cfg,
		seed:         rand.Uint64(),
		retxWindow:   int64(cfg.RetransmitWindow),
		pairGap:      int64(cfg.PairGap),
		searchWindow: int64(cfg.SearchWindow),
		tcWindow:     int64(cfg.TCWindow),
		upWindow:     int64(cfg.UpstreamWindow),
		retx:         newTable[copyRec](cfg.RetransmitEntries, retxWays),
		rates:        newTable[lookups](cfg.RateEntries, rateWays),
		pairs:        newTable[arrival](cfg.PairEntries, pairWays),
		search:       newTable[candidate](cfg.SearchEntries, searchWays),
		held:         newTable[heldRec](cfg.HeldEntries, heldWays),
		ups:          upstreams{ent: make([]upstream, cfg.Upstreams)},
	}, nil
}

// Ways per set. More ways keep more entries of one key (a flood of copies
// of one query, the candidates of one walk) at the cost of a longer scan.
const (
	retxWays   = 8
	rateWays   = 8
	pairWays   = 8
	searchWays = 16
	heldWays   = 8
)

// MemoryBytes is the most the Detector holds with cfg: its tables, which New
// allocates whole, and the names the search table keeps (see README.md).
func MemoryBytes(cfg Config) (int, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return 0, err
	}
	return tableBytes[copyRec](cfg.RetransmitEntries, retxWays) +
		tableBytes[lookups](cfg.RateEntries, rateWays) +
		tableBytes[arrival](cfg.PairEntries, pairWays) +
		tableBytes[candidate](cfg.SearchEntries, searchWays) + setsFor(cfg.SearchEntries, searchWays)*searchWays*maxKeptNameBytes +
		tableBytes[heldRec](cfg.HeldEntries, heldWays) +
		cfg.Upstreams*int(upstreamSize), nil
}

// keys is what Begin and Observe derive from a session once.
type keys struct {
	ip   [16]byte // the client's address, IPv4 as IPv4-mapped IPv6
	name uint64   // hash of the case-folded name
	retx uint64   // key of its copy in retx
}

func (d *Detector) keysOf(s *Session) keys {
	if s.keyed == s.ID && s.ID != 0 {
		return s.k
	}
	k := keys{ip: s.Client.Addr().Unmap().As16(), name: foldHash(d.seed, s.Name)}
	k.retx = mix(d.seed, k.name, &k.ip, s.DNSID, s.Qtype, s.Qclass, 0)
	return k
}

// Begin records a session's arrival; call it when the query arrives, before
// the chain runs. Without it Observe still works, but a retransmission that
// ends before its earlier copy is not seen as one, and neither is the
// parallel A/AAAA pattern.
func (d *Detector) Begin(s *Session) {
	s.keyed = 0
	k := d.keysOf(s)
	s.k, s.keyed = k, s.ID
	d.arrive(s, &k)
	if s.TCP {
		d.cancelTC(s, &k)
	}
}

// Observe takes a finished session and appends its hints to out. held
// reports that a verdict needs a later event: the caller must then keep the
// session until Due hands its id back (exactly once, with any further
// hints), and write its line only then. The answer is never delayed.
func (d *Detector) Observe(s *Session, out []Hint) (hints []Hint, held bool) {
	k := d.keysOf(s)
	c := d.finish(s, &k)
	if c.inserted {
		// Begin was not called, or its entry was evicted.
		d.arriveOthers(s, &k, c.repeat)
	}
	if s.TCP {
		d.cancelTC(s, &k)
	}
	var h heldRec
	// Both retransmit codes rest on the repeated ID alone, whether the
	// earlier copy was answered or not: a chance repeat suppresses either.
	if c.earlier.start != 0 && !d.byChance(s, &k, s.Start.UnixNano()-c.earlier.start) {
		out = append(out, d.retransmitHint(s, &c.earlier))
		if pairable(s) {
			p := probeOf(s, &k, &c.earlier)
			if hint, ok := d.pairHint(&p); ok {
				out = append(out, hint)
			} else if s.End.UnixNano() < p.start+d.pairGap+pairSlack {
				// Answered so fast that the other half may still arrive.
				h = heldRec{id: s.ID, pair: true, probe: p, due: p.start + d.pairGap + pairSlack}
			}
		}
	}
	out = d.upstreamTCP(s, out)
	out = d.walk(s, &k, out)
	if s.Answered && s.Truncated && !s.TCP && !c.retriedTCP {
		// A session is held for one verdict: a fast retransmission that is
		// also truncated (rare) waits for TCP, its pair is decided now.
		h = heldRec{id: s.ID, tc: true, ip: k.ip, name: k.name, qtype: s.Qtype, qclass: s.Qclass, asked: s.Start.UnixNano(), due: s.End.UnixNano() + d.tcWindow}
	}
	if h.pair || h.tc {
		held = d.hold(&h, d.tcKey(&k, s))
	}
	return out, held
}

// HoldTruncated holds, for the TC verdict, a session that Observe saw
// answered without the TC bit but whose answer was then truncated on its
// way out: a server truncates an oversized UDP answer as it writes it,
// after the caller had to tell Observe of the answer. It reports whether the
// session is held; the caller then waits for Due as after Observe. A TCP
// retry with the same ID that began already means no hold; one with a new
// ID that began already is missed (see the README).
func (d *Detector) HoldTruncated(s *Session) bool {
	if !s.Answered || !s.Truncated || s.TCP {
		return false
	}
	k := d.keysOf(s)
	if d.markTruncated(s, &k) {
		return false // the TCP retry came first: nothing to wait for
	}
	h := heldRec{id: s.ID, tc: true, ip: k.ip, name: k.name, qtype: s.Qtype, qclass: s.Qclass, asked: s.Start.UnixNano(), due: s.End.UnixNano() + d.tcWindow}
	return d.hold(&h, d.tcKey(&k, s))
}

// pairSlack covers the time between a handler reading the clock for a
// session's Start and its Begin call.
const pairSlack = int64(time.Millisecond)

func (d *Detector) drop(reason string) {
	if d.cfg.Dropped != nil {
		d.cfg.Dropped(reason)
	}
}
