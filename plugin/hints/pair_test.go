package hints

import (
	"slices"
	"strconv"
	"testing"

	"github.com/miekg/dns"
)

const glibcPort = "10.0.0.1:38474"

// resentA answers an A from glibcPort at once, then sees it again 5 s later
// (session 2), answered at end; it returns Observe's result for the copy.
func resentA(t *testing.T, d *Detector, end float64) ([]Hint, bool) {
	t.Helper()
	a0 := q{id: 1, from: glibcPort, dnsID: 18882, name: name, qtype: dns.TypeA}.session()
	d.Begin(a0)
	observe(t, d, answered(a0, 0.002, dns.RcodeSuccess, 1))
	a1 := q{id: 2, from: glibcPort, dnsID: 18882, name: name, qtype: dns.TypeA, start: 5}.session()
	d.Begin(a1)
	return d.Observe(answered(a1, end, dns.RcodeSuccess, 1), nil)
}

// The conntrack race: the AAAA of the first pair was dropped on the client's
// node, so CoreDNS saw the A alone, answered it, and 5 s later saw the A
// again together with the AAAA for the first time, both from one port. The
// resent A is answered from the cache within microseconds, before the AAAA
// is even seen: it is held until PairGap has passed.
func TestPairLostQuery(t *testing.T) {
	d, _ := newDetector(t, Config{})
	hs, held := resentA(t, d, 5.00005)
	wantCodes(t, "resent A", hs, RetransmitAfterAnswer)
	if !held {
		t.Fatal("resent A answered at once not held for the other half")
	}
	aaaa1 := q{id: 3, from: glibcPort, dnsID: 3524, name: name, qtype: dns.TypeAAAA, start: 5.0001}.session()
	d.Begin(aaaa1)

	r := releases{}
	r.due(t, d, at(5.01)) // before PairGap has passed: still held
	if len(r) != 0 {
		t.Fatalf("released early: %v", r)
	}
	r.due(t, d, at(5.1))
	hs, ok := r[2]
	if !ok || len(r) != 1 {
		t.Fatalf("released %v, want session 2", r)
	}
	wantCodes(t, "released A", hs, ParallelAAAAA)
	if hs[0].Lost != LostQuery || hs[0].Other != 3 {
		t.Errorf("hint %+v, want lost query, other half session 3", hs[0])
	}
	// The AAAA is no retransmission as far as CoreDNS can tell.
	wantCodes(t, "first AAAA", observe(t, d, answered(aaaa1, 5.02, dns.RcodeSuccess, 1)))
}

// When the other half has arrived by the time the resent half ends, the
// verdict comes with Observe.
func TestPairDecidedAtObserve(t *testing.T) {
	d, _ := newDetector(t, Config{})
	a0 := q{id: 1, from: glibcPort, dnsID: 18882, name: name, qtype: dns.TypeA}.session()
	d.Begin(a0)
	observe(t, d, answered(a0, 0.002, dns.RcodeSuccess, 1))
	aaaa1 := q{id: 3, from: glibcPort, dnsID: 3524, name: name, qtype: dns.TypeAAAA, start: 4.9999}.session()
	d.Begin(aaaa1) // the AAAA came first this time
	a1 := q{id: 2, from: glibcPort, dnsID: 18882, name: name, qtype: dns.TypeA, start: 5}.session()
	d.Begin(a1)
	hs := observe(t, d, answered(a1, 5.0001, dns.RcodeSuccess, 1))
	wantCodes(t, "resent A", hs, RetransmitAfterAnswer, ParallelAAAAA)
	if hs[1].Lost != LostQuery || hs[1].Other != 3 {
		t.Errorf("hint %+v, want lost query, other 3", hs[1])
	}
}

// pairRun sends a first pair and its resend one second later; answer tells
// whether CoreDNS answers each first copy. It returns the hints of the
// resent A and AAAA.
func pairRun(t *testing.T, answerA, answerAAAA bool) (a, aaaa []Hint) {
	d, _ := newDetector(t, Config{})
	end := func(s *Session, at float64, answer bool) *Session {
		if answer {
			return answered(s, at, dns.RcodeSuccess, 1)
		}
		return dropped(s, at)
	}
	a0 := q{id: 1, from: glibcPort, dnsID: 18882, name: name, qtype: dns.TypeA}.session()
	aaaa0 := q{id: 2, from: glibcPort, dnsID: 3524, name: name, qtype: dns.TypeAAAA, start: 0.00001}.session()
	d.Begin(a0)
	d.Begin(aaaa0)
	observe(t, d, end(a0, 0.002, answerA))
	observe(t, d, end(aaaa0, 0.002, answerAAAA))

	a1 := q{id: 3, from: glibcPort, dnsID: 18882, name: name, qtype: dns.TypeA, start: 1}.session()
	aaaa1 := q{id: 4, from: glibcPort, dnsID: 3524, name: name, qtype: dns.TypeAAAA, start: 1.00001}.session()
	d.Begin(a1)
	d.Begin(aaaa1)
	return observe(t, d, end(a1, 1.002, answerA)), observe(t, d, end(aaaa1, 1.002, answerAAAA))
}

func TestPairLostAnswer(t *testing.T) {
	a, aaaa := pairRun(t, true, true)
	wantCodes(t, "A", a, RetransmitAfterAnswer, ParallelAAAAA)
	wantCodes(t, "AAAA", aaaa, RetransmitAfterAnswer, ParallelAAAAA)
	if a[1].Lost != LostAnswer || a[1].Other != 4 || aaaa[1].Lost != LostAnswer || aaaa[1].Other != 3 {
		t.Errorf("hints %+v %+v, want lost answer, each other's session", a[1], aaaa[1])
	}
}

// acl drops AAAA: CoreDNS saw it and did not answer it.
func TestPairLostNone(t *testing.T) {
	a, aaaa := pairRun(t, true, false)
	wantCodes(t, "A", a, RetransmitAfterAnswer, ParallelAAAAA)
	wantCodes(t, "AAAA", aaaa, RetransmitUnanswered, ParallelAAAAA)
	if a[1].Lost != LostNone || aaaa[1].Lost != LostNone {
		t.Errorf("hints %+v %+v, want lost none", a[1], aaaa[1])
	}
}

func TestPairNotFired(t *testing.T) {
	resend := func(t *testing.T, other q) []Hint {
		d, _ := newDetector(t, Config{})
		hs, held := resentA(t, d, 5.0001)
		if other.id != 0 {
			d.Begin(other.session())
		}
		r := releases{}
		r.due(t, d, at(6))
		if held {
			if len(r) != 1 {
				t.Fatalf("held, released %v", r)
			}
			hs = append(hs, r[2]...)
		}
		return hs
	}
	aaaa := q{id: 3, from: glibcPort, dnsID: 3524, name: name, qtype: dns.TypeAAAA, start: 5.0002}
	cases := map[string]func(q) q{
		"no other half (dig, musl)":          func(q) q { return q{} },
		"other port (single-request-reopen)": func(x q) q { x.from = "10.0.0.1:52200"; return x },
		"other client":                       func(x q) q { x.from = "10.0.0.2:38474"; return x },
		"other name":                         func(x q) q { x.name = "www.example.org."; return x },
		"beyond the pair gap":                func(x q) q { x.start = 5.06; return x },
		"same type":                          func(x q) q { x.qtype = dns.TypeA; x.dnsID = 999; return x },
	}
	for what, f := range cases {
		t.Run(what, func(t *testing.T) {
			wantCodes(t, what, resend(t, f(aaaa)), RetransmitAfterAnswer)
		})
	}
}

// A resolver that keeps its socket (dnsperf, NodeLocal DNSCache) sends A and
// AAAA of one name from one port thousands of times a second: each arrival
// replaces an earlier one of its type from that socket, which no later copy
// would pair with, so nothing is counted as evicted.
func TestPairSameSocketNotEvicted(t *testing.T) {
	d, c := newDetector(t, Config{})
	for i := range 5000 {
		qtype := []uint16{dns.TypeA, dns.TypeAAAA}[i%2]
		s := q{id: uint64(i + 1), from: "10.0.0.1:40000", dnsID: uint16(i), name: name, qtype: qtype, start: float64(i) * 0.0002}.session()
		d.Begin(s)
		observe(t, d, answered(s, float64(i)*0.0002+0.0001, dns.RcodeSuccess, 1))
	}
	if n := c.get(ReasonPairEvicted); n != 0 {
		t.Errorf("%d pair evictions counted, want 0", n)
	}
}

// portsInOneSet returns n ports of 10.0.0.1 whose arrivals of name land in
// one set of d's pair table.
func portsInOneSet(d *Detector, n int) []int {
	k := d.keysOf(q{from: "10.0.0.1:1", name: name}.session())
	set := func(port int) (*shard[arrival], int) {
		return d.pairs.set(d.pairKey(&k.ip, k.name, uint16(port), dns.ClassINET))
	}
	sh0, base0 := set(20000)
	ports := []int{20000}
	for p := 20001; len(ports) < n; p++ {
		if sh, base := set(p); sh == sh0 && base == base0 {
			ports = append(ports, p)
		}
	}
	return ports
}

// Live arrivals of other sockets, or of the same socket's other type within
// PairGap (the other half of its pair, or a resent copy looking for it), are
// counted when pushed out; the same socket's arrival after PairGap is not,
// and is the one replaced.
func TestPairEvictionCounted(t *testing.T) {
	for _, c := range []struct {
		what       string
		last       func(ports []int) q
		want, kept int // evictions counted, arrivals of the first 7 ports left in the set
	}{
		{"another socket", func(ports []int) q {
			return q{from: "10.0.0.1:" + strconv.Itoa(ports[8]), qtype: dns.TypeA, start: 0.02}
		}, 1, 6},
		{"same socket, other type within PairGap", func(ports []int) q {
			return q{from: "10.0.0.1:" + strconv.Itoa(ports[7]), qtype: dns.TypeAAAA, start: 0.02}
		}, 1, 6},
		{"same socket, other type after PairGap", func(ports []int) q {
			return q{from: "10.0.0.1:" + strconv.Itoa(ports[7]), qtype: dns.TypeAAAA, start: 0.06}
		}, 0, 7},
	} {
		t.Run(c.what, func(t *testing.T) {
			d, drops := newDetector(t, Config{})
			ports := portsInOneSet(d, 9)
			for i, p := range ports[:8] { // the set's 8 ways, the last port's A at 7 ms
				d.Begin(q{id: uint64(i + 1), from: "10.0.0.1:" + strconv.Itoa(p), dnsID: uint16(i), name: name, qtype: dns.TypeA, start: float64(i) * 0.001}.session())
			}
			last := c.last(ports)
			last.id, last.dnsID, last.name = 9, 9, name
			d.Begin(last.session())
			if n := drops.get(ReasonPairEvicted); n != c.want {
				t.Errorf("%d evictions counted, want %d", n, c.want)
			}
			k := d.keysOf(q{from: "10.0.0.1:1", name: name}.session())
			sh, base := d.pairs.set(d.pairKey(&k.ip, k.name, uint16(ports[0]), dns.ClassINET))
			kept := 0
			for i := base; i < base+d.pairs.ways; i++ {
				if sh.at[i] != 0 && slices.Index(ports[:7], int(sh.ent[i].port)) >= 0 {
					kept++
				}
			}
			if kept != c.kept {
				t.Errorf("%d arrivals of the first 7 ports left, want %d", kept, c.kept)
			}
		})
	}
}
