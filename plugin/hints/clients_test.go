package hints

import (
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The traces of /work/shared/notes/clients.md (real glibc 2.36, Go and dig,
// measured against a listener on 127.0.0.1:53), replayed as the sessions
// CoreDNS would see. Packets listed in the same millisecond arrive in their
// listed order, 10 us apart; each session begins on arrival and is observed
// when it ends; Due runs before every event, as the plugin's ticker would.

// pkt is one line of a trace.
type pkt struct {
	at    float64
	port  int
	dnsID uint16
	qtype uint16
	name  string
}

// outcome says how CoreDNS ends a packet's session: after how long, and with
// what (answered false: nothing sent, as when acl drops it).
type outcome struct {
	after    time.Duration
	answered bool
	rcode    int
	answers  int
}

func replay(t *testing.T, trace []pkt, end func(pkt) outcome) map[uint64][]Hint {
	t.Helper()
	d, _ := newDetector(t, Config{})
	type event struct {
		at    time.Time
		begin bool
		s     *Session
		o     outcome
	}
	var events []event
	for i, p := range trace {
		start := at(p.at).Add(time.Duration(i) * 10 * time.Microsecond)
		s := &Session{ID: uint64(i + 1), Client: netip.MustParseAddrPort("127.0.0.1:" + strconv.Itoa(p.port)), DNSID: p.dnsID, Name: p.name, Qtype: p.qtype, Qclass: dns.ClassINET, Start: start}
		o := end(p)
		events = append(events, event{at: start, begin: true, s: s}, event{at: start.Add(o.after), s: s, o: o})
	}
	slices.SortStableFunc(events, func(a, b event) int { return a.at.Compare(b.at) })
	got := map[uint64][]Hint{}
	release := func(id uint64, hs []Hint) { got[id] = append(got[id], hs...) }
	for _, e := range events {
		d.Due(e.at, release)
		if e.begin {
			d.Begin(e.s)
			continue
		}
		e.s.End, e.s.Answered, e.s.Rcode, e.s.Answers = e.at, e.o.answered, e.o.rcode, e.o.answers
		hs, _ := d.Observe(e.s, nil)
		got[e.s.ID] = append(got[e.s.ID], hs...)
	}
	d.Due(events[len(events)-1].at.Add(time.Minute), release)
	if n := d.nHeld.Load(); n != 0 {
		t.Fatalf("%d sessions never released", n)
	}
	return got
}

const candidate0 = "www.example.com.default.svc.cluster.local."

func dropAll(pkt) outcome { return outcome{after: 100 * time.Microsecond} }

// glibc, nothing answered: the pair is resent from the same port with the
// same IDs, then the bare name is tried, and resent the same way.
func TestClientGlibcNothingAnswered(t *testing.T) {
	trace := []pkt{
		{1.130, 56342, 17839, dns.TypeA, candidate0},
		{1.130, 56342, 3236, dns.TypeAAAA, candidate0},
		{2.131, 56342, 17839, dns.TypeA, candidate0},
		{2.131, 56342, 3236, dns.TypeAAAA, candidate0},
		{3.131, 50056, 10351, dns.TypeA, "www.example.com."},
		{3.132, 50056, 2386, dns.TypeAAAA, "www.example.com."},
		{4.133, 50056, 10351, dns.TypeA, "www.example.com."},
		{4.133, 50056, 2386, dns.TypeAAAA, "www.example.com."},
	}
	got := replay(t, trace, dropAll)
	for _, id := range []uint64{1, 2, 5, 6} {
		wantCodes(t, "first copy "+strconv.Itoa(int(id)), got[id])
	}
	for _, id := range []uint64{3, 4, 7, 8} {
		hs := got[id]
		wantCodes(t, "resend "+strconv.Itoa(int(id)), hs, RetransmitUnanswered, ParallelAAAAA)
		r, p := hs[0], hs[1]
		if r.Earlier != id-2 || !r.SamePort || r.InFlight || r.Waiting != WaitingPlugin {
			t.Errorf("session %d: %+v, want earlier %d from the same port, dropped by a plugin", id, r, id-2)
		}
		other := id + 1
		if id%2 == 0 {
			other = id - 1
		}
		if p.Lost != LostNone || p.Other != other {
			t.Errorf("session %d: %+v, want lost none, other half %d", id, p, other)
		}
	}
}

// glibc, A answered, AAAA never answered (acl drops AAAA): both are resent
// from the same port, then once more from one new socket per query.
func TestClientGlibcAAAADropped(t *testing.T) {
	trace := []pkt{
		{0.978, 38474, 18882, dns.TypeA, candidate0},
		{0.978, 38474, 3524, dns.TypeAAAA, candidate0},
		{1.979, 38474, 18882, dns.TypeA, candidate0},
		{1.979, 38474, 3524, dns.TypeAAAA, candidate0},
		{2.979, 37485, 18882, dns.TypeA, candidate0},
		{2.979, 52200, 3524, dns.TypeAAAA, candidate0},
	}
	got := replay(t, trace, func(p pkt) outcome {
		if p.qtype == dns.TypeAAAA {
			return dropAll(p)
		}
		return outcome{after: 50 * time.Microsecond, answered: true, rcode: dns.RcodeNameError}
	})
	wantCodes(t, "first A", got[1])
	wantCodes(t, "first AAAA", got[2])
	wantCodes(t, "resent A", got[3], RetransmitAfterAnswer, ParallelAAAAA)
	wantCodes(t, "resent AAAA", got[4], RetransmitUnanswered, ParallelAAAAA)
	if got[3][1].Lost != LostNone || got[4][1].Lost != LostNone {
		t.Errorf("lost %q, %q, want none", got[3][1].Lost, got[4][1].Lost)
	}
	// New sockets: retransmissions still, from new ports, no longer a pair.
	wantCodes(t, "A from a new socket", got[5], RetransmitAfterAnswer)
	wantCodes(t, "AAAA from a new socket", got[6], RetransmitUnanswered)
	if h := got[5][0]; h.Earlier != 3 || h.SamePort || h.EarlierRcode != dns.RcodeNameError {
		t.Errorf("A: %+v, want earlier 3, new port, NXDOMAIN", h)
	}
	if h := got[6][0]; h.Earlier != 4 || h.SamePort {
		t.Errorf("AAAA: %+v, want earlier 4, new port", h)
	}
}

// Go keeps neither ID nor port: its retries look like new lookups and are
// not reported.
func TestClientGoNotReported(t *testing.T) {
	trace := []pkt{
		{0.019, 41958, 56516, dns.TypeAAAA, candidate0},
		{0.019, 42610, 46901, dns.TypeA, candidate0},
		{1.015, 39067, 28240, dns.TypeAAAA, candidate0},
		{1.019, 44901, 21375, dns.TypeA, candidate0},
	}
	for id, hs := range replay(t, trace, dropAll) {
		wantCodes(t, "Go query "+strconv.Itoa(int(id)), hs)
	}
}

func TestClientDigTries(t *testing.T) {
	trace := []pkt{
		{0.014, 58983, 35441, dns.TypeA, "www.example.com."},
		{1.015, 60969, 35441, dns.TypeA, "www.example.com."},
		{2.016, 44579, 35441, dns.TypeA, "www.example.com."},
	}
	got := replay(t, trace, func(pkt) outcome {
		return outcome{after: 5 * time.Second, answered: true, rcode: dns.RcodeServerFailure}
	})
	wantCodes(t, "first", got[1])
	for _, id := range []uint64{2, 3} {
		wantCodes(t, "try "+strconv.Itoa(int(id)), got[id], RetransmitUnanswered)
		if h := got[id][0]; h.Earlier != id-1 || h.SamePort || !h.InFlight {
			t.Errorf("try %d: %+v, want earlier %d in flight, new port", id, h, id-1)
		}
	}
}

// glibc with single-request-reopen walks the search list, every candidate
// NXDOMAIN, until the bare name answers.
func TestClientGlibcSearchWalk(t *testing.T) {
	trace := []pkt{
		{0.868, 49942, 17560, dns.TypeA, "www.example.com.default.svc.cluster.local."},
		{0.868, 47813, 6292, dns.TypeAAAA, "www.example.com.default.svc.cluster.local."},
		{0.869, 48726, 9275, dns.TypeA, "www.example.com.svc.cluster.local."},
		{0.869, 37475, 10277, dns.TypeAAAA, "www.example.com.svc.cluster.local."},
		{0.869, 48893, 30921, dns.TypeA, "www.example.com.cluster.local."},
		{0.869, 42436, 17354, dns.TypeAAAA, "www.example.com.cluster.local."},
		{0.869, 37022, 36751, dns.TypeA, "www.example.com.node.internal."},
		{0.869, 38135, 52622, dns.TypeAAAA, "www.example.com.node.internal."},
		{0.869, 57181, 28342, dns.TypeA, "www.example.com."},
		{0.869, 43931, 57271, dns.TypeAAAA, "www.example.com."},
	}
	got := replay(t, trace, func(p pkt) outcome {
		if p.name != "www.example.com." {
			return outcome{after: 5 * time.Microsecond, answered: true, rcode: dns.RcodeNameError}
		}
		return outcome{after: 20 * time.Millisecond, answered: true, rcode: dns.RcodeSuccess, answers: 1}
	})
	for id := uint64(1); id <= 8; id++ {
		wantCodes(t, "candidate "+strconv.Itoa(int(id)), got[id])
	}
	wantCodes(t, "final A", got[9], SearchExpansion)
	wantCodes(t, "final AAAA", got[10])
	want := []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local", "node.internal"}
	if h := got[9][0]; h.Count != 8 || !slices.Equal(h.Suffixes, want) {
		t.Errorf("count %d suffixes %q, want 8 %q", h.Count, h.Suffixes, want)
	}
}
