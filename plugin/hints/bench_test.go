package hints

// Cost of the detectors per session, on the query goroutine:
//
//	go test -run '^$' -bench . -benchmem ./plugin/hints/
//
// Each op is one session: Begin, then Observe, with no hint (the common
// path), from 4096 clients in turn with new IDs, as a busy server sees them.

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var (
	benchUpstream = netip.MustParseAddrPort("10.96.0.10:53")
	benchClient   = netip.MustParseAddrPort("10.244.0.9:41000")
)

// benchDetector counts drops with an atomic add, about what the plugin's
// counter costs; the tests' counter takes a lock and a map.
func benchDetector(b *testing.B) *Detector {
	var n atomic.Int64
	d, err := New(Config{Dropped: func(string) { n.Add(1) }})
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// benchSession fills s as the i-th session: a forwarded answer, or for nx an
// NXDOMAIN search candidate.
func benchSession(s *Session, attempts *[1]Attempt, i int, nx bool) {
	start := t0.Add(time.Duration(i) * time.Millisecond) // a (client, ID) recurs after 65 s, beyond the window
	*s = Session{ID: uint64(i + 1), Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 244, byte(i >> 8 & 0xf), byte(i)}), uint16(30000+i%20000)),
		DNSID: uint16(i * 7919), Name: "api.example.com.", Qtype: dns.TypeA, Qclass: dns.ClassINET, Start: start,
		End: start.Add(300 * time.Microsecond), Answered: true, Rcode: dns.RcodeSuccess, Answers: 1}
	attempts[0] = Attempt{Upstream: benchUpstream, Answered: true}
	s.Attempts = attempts[:]
	if nx {
		s.Name, s.Rcode, s.Answers = "api.example.com.default.svc.cluster.local.", dns.RcodeNameError, 0
		s.Attempts = nil
	}
}

// benchObserve runs one session per op; edit, if set, changes each.
func benchObserve(b *testing.B, nx bool, edit func(*Session)) {
	d := benchDetector(b)
	out := make([]Hint, 0, 8)
	var s Session
	var attempts [1]Attempt
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		benchSession(&s, &attempts, i, nx)
		if edit != nil {
			edit(&s)
		}
		d.Begin(&s)
		if hs, _ := d.Observe(&s, out[:0]); len(hs) != 0 && edit == nil {
			b.Fatalf("hints %v", codes(hs))
		}
		i++
	}
}

func BenchmarkObserve(b *testing.B)   { benchObserve(b, false, nil) }
func BenchmarkObserveNX(b *testing.B) { benchObserve(b, true, nil) }

// A retransmission, hint included: what a flood of spoofed copies costs.
func BenchmarkObserveRetransmit(b *testing.B) {
	benchObserve(b, false, func(s *Session) { s.Client, s.DNSID, s.Qtype = benchClient, 1, dns.TypeMX })
}

func BenchmarkObserveParallel(b *testing.B) {
	d := benchDetector(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		out := make([]Hint, 0, 8)
		var s Session
		var attempts [1]Attempt
		for i := 0; pb.Next(); i++ {
			benchSession(&s, &attempts, i, i%2 == 1)
			d.Begin(&s)
			d.Observe(&s, out[:0])
		}
	})
}
