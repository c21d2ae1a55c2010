package hints

import (
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const headless = "web.default.svc.cluster.local."

// truncatedRun answers a UDP query with TC at 0.001 s; the session is held.
func truncatedRun(t *testing.T, d *Detector) {
	t.Helper()
	s := q{id: 1, from: "10.0.0.1:40000", dnsID: 7, name: headless, qtype: dns.TypeA}.session()
	d.Begin(s)
	s = answered(s, 0.001, dns.RcodeSuccess, 20)
	s.Truncated = true
	hs, held := d.Observe(s, nil)
	wantCodes(t, "truncated answer", hs)
	if !held {
		t.Fatal("truncated UDP answer not held")
	}
}

func TestTruncatedNoTCPRetry(t *testing.T) {
	d, _ := newDetector(t, Config{})
	truncatedRun(t, d)
	r := releases{}
	r.due(t, d, at(2.9))
	if len(r) != 0 {
		t.Fatalf("released before the window closed: %v", r)
	}
	r.due(t, d, at(3.001))
	wantCodes(t, "released", r[1], TruncatedNoTCPRetry)
	if r[1][0].Window != 3*time.Second {
		t.Errorf("window %v, want 3s", r[1][0].Window)
	}
	r.due(t, d, at(10)) // released once only (releases fails on a second time)
}

// glibc, musl, dig and Go retry over TCP with the same ID: the TCP copy
// cancels the verdict and is no retransmission.
func TestTruncatedTCPRetry(t *testing.T) {
	d, _ := newDetector(t, Config{})
	truncatedRun(t, d)
	tcp := q{id: 2, from: "10.0.0.1:41000", tcp: true, dnsID: 7, name: headless, qtype: dns.TypeA, start: 0.002}.session()
	d.Begin(tcp)
	r := releases{}
	r.due(t, d, at(0.003)) // released at once, without a hint
	if hs, ok := r[1]; !ok || len(hs) != 0 {
		t.Fatalf("released %v, want session 1 without hints", r)
	}
	wantCodes(t, "TCP retry", observe(t, d, answered(tcp, 0.004, dns.RcodeSuccess, 40)))
}

// A TCP retry with a new ID still counts: it is the question that matters.
func TestTruncatedTCPRetryNewID(t *testing.T) {
	d, _ := newDetector(t, Config{})
	truncatedRun(t, d)
	d.Begin(q{id: 2, from: "10.0.0.1:41000", tcp: true, dnsID: 8, name: "WEB.default.svc.cluster.local.", qtype: dns.TypeA, start: 2}.session())
	r := releases{}
	r.due(t, d, at(5))
	if hs, ok := r[1]; !ok || len(hs) != 0 {
		t.Fatalf("released %v, want session 1 without hints", r)
	}
}

// A TCP query whose clock was read just before the UDP session's End, but
// that begins after its Observe, still cancels.
func TestTruncatedTCPRetryStartBeforeEnd(t *testing.T) {
	d, _ := newDetector(t, Config{})
	truncatedRun(t, d) // ends at 0.001
	d.Begin(q{id: 2, from: "10.0.0.1:41000", tcp: true, dnsID: 8, name: headless, qtype: dns.TypeA, start: 0.0009}.session())
	r := releases{}
	r.due(t, d, at(5))
	if hs, ok := r[1]; !ok || len(hs) != 0 {
		t.Fatalf("released %v, want session 1 without hints", r)
	}
}

// The TCP copy may arrive before the UDP session is observed (the client
// read the answer before the handler returned): nothing is held.
func TestTruncatedTCPRetryBeforeObserve(t *testing.T) {
	d, _ := newDetector(t, Config{})
	s := q{id: 1, from: "10.0.0.1:40000", dnsID: 7, name: headless, qtype: dns.TypeA}.session()
	d.Begin(s)
	d.Begin(q{id: 2, from: "10.0.0.1:41000", tcp: true, dnsID: 7, name: headless, qtype: dns.TypeA, start: 0.0009}.session())
	s = answered(s, 0.001, dns.RcodeSuccess, 20)
	s.Truncated = true
	wantCodes(t, "truncated answer", observe(t, d, s))
}

func TestTruncatedRetryThatDoesNotCount(t *testing.T) {
	cases := map[string]q{
		"from another client":  {id: 2, from: "10.0.0.2:41000", tcp: true, dnsID: 7, name: headless, qtype: dns.TypeA, start: 1},
		"another question":     {id: 2, from: "10.0.0.1:41000", tcp: true, dnsID: 7, name: headless, qtype: dns.TypeAAAA, start: 1},
		"over UDP":             {id: 2, from: "10.0.0.1:40000", dnsID: 7, name: headless, qtype: dns.TypeA, start: 1},
		"after the window":     {id: 2, from: "10.0.0.1:41000", tcp: true, dnsID: 7, name: headless, qtype: dns.TypeA, start: 3.5},
		"before the UDP query": {id: 2, from: "10.0.0.1:41000", tcp: true, dnsID: 9, name: headless, qtype: dns.TypeA, start: -0.0005},
	}
	for what, retry := range cases {
		t.Run(what, func(t *testing.T) {
			d, _ := newDetector(t, Config{})
			truncatedRun(t, d)
			d.Begin(retry.session())
			r := releases{}
			r.due(t, d, at(4))
			wantCodes(t, what, r[1], TruncatedNoTCPRetry)
		})
	}
}

// A flood of truncated answers fills the held table: what does not fit is
// not held and is counted; every held session is released exactly once.
func TestHeldBounded(t *testing.T) {
	d, c := newDetector(t, Config{HeldEntries: 64})
	held := 0
	const n = 1000
	for i := range n {
		s := q{id: uint64(i + 1), from: "10.1." + strconv.Itoa(i/250) + "." + strconv.Itoa(i%250) + ":40000", dnsID: 7, name: headless, qtype: dns.TypeA}.session()
		d.Begin(s)
		s = answered(s, 0.001, dns.RcodeSuccess, 20)
		s.Truncated = true
		if _, h := d.Observe(s, nil); h {
			held++
		}
	}
	if held > d.held.slots() || held == 0 {
		t.Fatalf("%d held, table of %d", held, d.held.slots())
	}
	if got := c.get(ReasonHeldFull); got != n-held {
		t.Errorf("%d counted %s, want %d", got, ReasonHeldFull, n-held)
	}
	r := releases{}
	r.due(t, d, at(4))
	if len(r) != held {
		t.Errorf("released %d, want %d", len(r), held)
	}
	if d.nHeld.Load() != 0 {
		t.Errorf("%d still held", d.nHeld.Load())
	}
}

// A server truncates an oversized UDP answer as it writes it, after the
// caller told Observe of the answer: HoldTruncated holds it then, and the
// client's TCP retry is still no retransmission and cancels the verdict.
func TestHoldTruncatedAfterObserve(t *testing.T) {
	d, _ := newDetector(t, Config{})
	s := q{id: 1, from: "10.0.0.1:40000", dnsID: 7, name: headless, qtype: dns.TypeA}.session()
	d.Begin(s)
	s = answered(s, 0.001, dns.RcodeSuccess, 20)
	if hs, held := d.Observe(s, nil); len(hs) != 0 || held {
		t.Fatalf("untruncated answer: hints %v, held %v", hs, held)
	}
	s.Truncated = true
	if !d.HoldTruncated(s) {
		t.Fatal("truncated on write: not held")
	}
	tcp := q{id: 2, from: "10.0.0.1:41000", tcp: true, dnsID: 7, name: headless, qtype: dns.TypeA, start: 0.002}.session()
	d.Begin(tcp)
	r := releases{}
	r.due(t, d, at(0.003))
	if hs, ok := r[1]; !ok || len(hs) != 0 {
		t.Fatalf("released %v, want session 1 without hints", r)
	}
	wantCodes(t, "TCP retry", observe(t, d, answered(tcp, 0.004, dns.RcodeSuccess, 40)))

	// Without the retry the verdict comes when the window closes.
	u := q{id: 3, from: "10.0.0.2:40000", dnsID: 8, name: headless, qtype: dns.TypeA}.session()
	d.Begin(u)
	u = answered(u, 0.001, dns.RcodeSuccess, 20)
	d.Observe(u, nil)
	u.Truncated = true
	if !d.HoldTruncated(u) {
		t.Fatal("second truncated on write: not held")
	}
	r.due(t, d, at(3.01))
	wantCodes(t, "released", r[3], TruncatedNoTCPRetry)
	if d.HoldTruncated(tcp) {
		t.Error("a TCP session was held for TC")
	}
}

// The TCP retry may begin before HoldTruncated (the client read the
// truncated answer before the server's writer returned): with the same ID
// the session is not held, so no hint comes; the retry is still no
// retransmission.
func TestHoldTruncatedAfterTCPRetry(t *testing.T) {
	d, _ := newDetector(t, Config{})
	s := q{id: 1, from: "10.0.0.1:40000", dnsID: 7, name: headless, qtype: dns.TypeA}.session()
	d.Begin(s)
	s = answered(s, 0.001, dns.RcodeSuccess, 20)
	if hs, held := d.Observe(s, nil); len(hs) != 0 || held {
		t.Fatalf("untruncated answer: hints %v, held %v", hs, held)
	}
	tcp := q{id: 2, from: "10.0.0.1:41000", tcp: true, dnsID: 7, name: headless, qtype: dns.TypeA, start: 0.0015}.session()
	d.Begin(tcp)
	s.Truncated = true
	if d.HoldTruncated(s) {
		t.Fatal("held for TC although its TCP retry had begun")
	}
	wantCodes(t, "TCP retry", observe(t, d, answered(tcp, 0.004, dns.RcodeSuccess, 40)))

	// A TCP copy from before the UDP query is no retry of it.
	u := q{id: 3, from: "10.0.0.2:40000", dnsID: 8, name: headless, qtype: dns.TypeA, start: 1}.session()
	d.Begin(q{id: 4, from: "10.0.0.2:41000", tcp: true, dnsID: 8, name: headless, qtype: dns.TypeA, start: 0.999}.session())
	d.Begin(u)
	u = answered(u, 1.001, dns.RcodeSuccess, 20)
	d.Observe(u, nil)
	u.Truncated = true
	if !d.HoldTruncated(u) {
		t.Fatal("a TCP copy from before the UDP query prevented the hold")
	}
}
