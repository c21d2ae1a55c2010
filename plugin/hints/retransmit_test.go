package hints

import (
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const name = "www.example.com."

func TestRetransmitAfterAnswer(t *testing.T) {
	d, _ := newDetector(t, Config{})
	first := q{id: 1, from: "10.0.0.1:40000", dnsID: 7, name: name, qtype: dns.TypeMX, start: 0}
	s := first.session()
	d.Begin(s)
	wantCodes(t, "first copy", observe(t, d, answered(s, 0.002, dns.RcodeSuccess, 1)))

	again := first
	again.id, again.start = 2, 5.002
	s = again.session()
	d.Begin(s)
	hs := observe(t, d, answered(s, 5.003, dns.RcodeSuccess, 1))
	wantCodes(t, "resent copy", hs, RetransmitAfterAnswer)
	h := hs[0]
	if h.Earlier != 1 || !h.SamePort || h.EarlierRcode != dns.RcodeSuccess || h.Ago != 5*time.Second {
		t.Errorf("hint %+v, want earlier 1, same port, NOERROR, 5s ago", h)
	}
}

func TestRetransmitCaseInsensitive(t *testing.T) {
	d, _ := newDetector(t, Config{})
	s := q{id: 1, from: "10.0.0.1:40000", dnsID: 7, name: "WWW.Example.COM.", qtype: dns.TypeMX}.session()
	d.Begin(s)
	observe(t, d, answered(s, 0.001, dns.RcodeSuccess, 1))
	s = q{id: 2, from: "10.0.0.1:40000", dnsID: 7, name: name, qtype: dns.TypeMX, start: 1}.session()
	d.Begin(s)
	wantCodes(t, "other case", observe(t, d, answered(s, 1.001, dns.RcodeSuccess, 1)), RetransmitAfterAnswer)
}

// The retry arrives while the first copy still waits for its upstream, and
// is answered before it (another upstream, or the cache): the first copy has
// not ended when the retry is observed.
func TestRetransmitWhileInFlight(t *testing.T) {
	d, _ := newDetector(t, Config{})
	first := q{id: 1, from: "10.0.0.1:40000", dnsID: 7, name: name, qtype: dns.TypeMX}.session()
	d.Begin(first)
	retry := q{id: 2, from: "10.0.0.1:40000", dnsID: 7, name: name, qtype: dns.TypeMX, start: 1}.session()
	d.Begin(retry)
	hs := observe(t, d, answered(retry, 1.01, dns.RcodeSuccess, 1))
	wantCodes(t, "retry", hs, RetransmitUnanswered)
	if h := hs[0]; h.Earlier != 1 || !h.InFlight || h.Running != time.Second || h.Waiting != "" || !h.SamePort {
		t.Errorf("hint %+v, want earlier 1 in flight for 1s, waiting unknown", h)
	}
	// The first copy ends later: it is no retransmission of the retry.
	first.Attempts = []Attempt{{Upstream: netip.MustParseAddrPort("10.9.9.9:53")}}
	wantCodes(t, "first copy", observe(t, d, answered(first, 4, dns.RcodeServerFailure, 0)))
}

// The first copy ends (SERVFAIL after two silent upstream attempts) after the
// retry arrived and before the retry ends.
func TestRetransmitEarlierEndedAfterArrival(t *testing.T) {
	d, _ := newDetector(t, Config{})
	up := netip.MustParseAddrPort("10.9.9.9:53")
	first := q{id: 1, from: "10.0.0.1:40000", dnsID: 7, name: name, qtype: dns.TypeA}.session()
	d.Begin(first)
	retry := q{id: 2, from: "10.0.0.1:40000", dnsID: 7, name: name, qtype: dns.TypeA, start: 1}.session()
	d.Begin(retry)
	first.Attempts = []Attempt{{Upstream: up}, {Upstream: up}}
	observe(t, d, answered(first, 4, dns.RcodeServerFailure, 0))
	hs := observe(t, d, answered(retry, 5, dns.RcodeServerFailure, 0))
	wantCodes(t, "retry", hs, RetransmitUnanswered)
	if h := hs[0]; !h.InFlight || h.Running != time.Second || h.Waiting != WaitingUpstream || h.Attempts != 2 || h.Upstream != up {
		t.Errorf("hint %+v, want in flight 1s, waiting upstream %v after 2 attempts", h, up)
	}
}

// acl dropped the first copy: it ended at once without an answer.
func TestRetransmitAfterDrop(t *testing.T) {
	d, _ := newDetector(t, Config{})
	first := q{id: 1, from: "10.0.0.1:40000", dnsID: 7, name: name, qtype: dns.TypeTXT}.session()
	d.Begin(first)
	observe(t, d, dropped(first, 0.0001))
	retry := q{id: 2, from: "10.0.0.1:40000", dnsID: 7, name: name, qtype: dns.TypeTXT, start: 5}.session()
	d.Begin(retry)
	hs := observe(t, d, dropped(retry, 5.0001))
	wantCodes(t, "retry", hs, RetransmitUnanswered)
	if h := hs[0]; h.InFlight || h.Running != 100*time.Microsecond || h.Waiting != WaitingPlugin || h.Attempts != 0 {
		t.Errorf("hint %+v, want ended unanswered after 100us, waiting plugin", h)
	}
}

// dig keeps the ID and changes the port; each retry refers to the copy
// just before it, even when all three are still in flight at once.
func TestRetransmitDigTries(t *testing.T) {
	d, _ := newDetector(t, Config{})
	var ss []*Session
	for i, port := range []int{58983, 60969, 44579} {
		s := q{id: uint64(i + 1), from: "127.0.0.1:" + strconv.Itoa(port), dnsID: 35441, name: name, qtype: dns.TypeA, start: float64(i)}.session()
		d.Begin(s)
		ss = append(ss, s)
	}
	for i, s := range ss {
		hs := observe(t, d, answered(s, 4+float64(i), dns.RcodeServerFailure, 0))
		if i == 0 {
			wantCodes(t, "first", hs)
			continue
		}
		wantCodes(t, "try "+strconv.Itoa(i+1), hs, RetransmitUnanswered)
		if h := hs[0]; h.Earlier != uint64(i) || h.SamePort || !h.InFlight || h.Running != time.Second {
			t.Errorf("try %d: hint %+v, want earlier %d, new port, in flight 1s", i+1, h, i)
		}
	}
}

// Observe alone (no Begin) still finds a retransmission of an ended copy.
func TestRetransmitWithoutBegin(t *testing.T) {
	d, _ := newDetector(t, Config{})
	observe(t, d, answered(q{id: 1, from: "10.0.0.1:40000", dnsID: 7, name: name, qtype: dns.TypeMX}.session(), 0.001, dns.RcodeNameError, 0))
	hs := observe(t, d, answered(q{id: 2, from: "10.0.0.1:40000", dnsID: 7, name: name, qtype: dns.TypeMX, start: 2}.session(), 2.001, dns.RcodeNameError, 0))
	wantCodes(t, "retry", hs, RetransmitAfterAnswer)
	if hs[0].EarlierRcode != dns.RcodeNameError {
		t.Errorf("earlier rcode %d, want NXDOMAIN", hs[0].EarlierRcode)
	}
}

func TestRetransmitNotFired(t *testing.T) {
	base := q{id: 1, from: "10.0.0.1:40000", dnsID: 7, name: name, qtype: dns.TypeA}
	cases := []struct {
		what  string
		retry func(q) q
	}{
		{"new ID", func(x q) q { x.dnsID = 8; return x }},
		{"new ID and port (Go)", func(x q) q { x.dnsID, x.from = 28240, "10.0.0.1:39067"; return x }},
		{"other client address", func(x q) q { x.from = "10.0.0.2:40000"; return x }},
		{"other type", func(x q) q { x.qtype = dns.TypeAAAA; return x }},
		{"other name", func(x q) q { x.name = "www.example.org."; return x }},
		{"window expired", func(x q) q { x.start = 30.001; return x }},
	}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			d, _ := newDetector(t, Config{})
			s := base.session()
			d.Begin(s)
			observe(t, d, answered(s, 0.001, dns.RcodeSuccess, 1))
			r := base
			r.id, r.start = 2, 1
			r = c.retry(r)
			s = r.session()
			d.Begin(s)
			wantCodes(t, c.what, observe(t, d, answered(s, r.start+0.001, dns.RcodeSuccess, 1)))
		})
	}
}

// 200 lookups of one name from one client, each with its own ID, whatever
// their timing and ports, are no retransmissions.
func TestDistinctLookupsNotRetransmissions(t *testing.T) {
	d, _ := newDetector(t, Config{})
	for i := range 200 {
		port := 40000
		if i%2 == 1 {
			port += i // half from one socket, half from new ones
		}
		start := float64(i) * 0.0005 // back to back, overlapping
		if i >= 100 {
			start = 0.1 + float64(i-100)*1.0 // then one a second, like client retries
		}
		s := q{id: uint64(i + 1), from: "10.0.0.1:" + strconv.Itoa(port), dnsID: uint16(1000 + i), name: name, qtype: dns.TypeA, start: start}.session()
		d.Begin(s)
		if hs, _ := d.Observe(answered(s, start+0.003, dns.RcodeSuccess, 1), nil); len(hs) != 0 {
			t.Fatalf("lookup %d: hints %v", i, codes(hs))
		}
	}
}

// A Session reused for another query without being cleared must not hand
// the keys Begin derived for the first one to the second: the second's copy
// is found under its own name when it is resent.
func TestReusedSessionKeys(t *testing.T) {
	d, _ := newDetector(t, Config{})
	s := q{id: 1, from: "10.0.0.1:40000", dnsID: 7, name: "other.example.", qtype: dns.TypeMX}.session()
	d.Begin(s)
	observe(t, d, answered(s, 0.001, dns.RcodeSuccess, 1))

	// The same struct, now another query, observed without Begin.
	s.ID, s.Name, s.DNSID, s.Start = 2, name, 9, at(1)
	observe(t, d, answered(s, 1.001, dns.RcodeSuccess, 1))

	again := q{id: 3, from: "10.0.0.1:40000", dnsID: 9, name: name, qtype: dns.TypeMX, start: 3}.session()
	d.Begin(again)
	hs := observe(t, d, answered(again, 3.001, dns.RcodeSuccess, 1))
	wantCodes(t, "copy of the reused session's query", hs, RetransmitAfterAnswer)
	if hs[0].Earlier != 2 {
		t.Errorf("earlier copy %d, want 2", hs[0].Earlier)
	}
}
