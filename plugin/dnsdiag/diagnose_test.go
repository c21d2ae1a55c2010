package dnsdiag

import (
	"context"
	"testing"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
)

// The detectors hear of an answer as it is written, so they may hold a
// session, and release it, before the chain has unwound: the release must
// then leave the session to the end of ServeDNS, which logs it with its
// hints, and nothing may stay held.
func TestHeldSessionReleasedBeforeItEnds(t *testing.T) {
	logs := captureLog(t)
	var d *Dnsdiag
	heldAtWrite := 0 // sessions held once the answer was written
	d = newTestDiag(t, "dnsdiag {\n log all\n rate 0\n}", plugin.HandlerFunc(func(_ context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
		m := new(dns.Msg)
		m.SetReply(r)
		w.WriteMsg(m)
		d.diag.mu.Lock()
		heldAtWrite = len(d.diag.held)
		d.diag.mu.Unlock()
		d.diag.releaseAll(d.release) // the ticker, firing while the chain unwinds
		return dns.RcodeSuccess, nil
	}))
	q := query("pair.example.org", dns.TypeA)
	for range 2 { // the second is a retransmission, answered at once: held for its pair
		d.ServeDNS(context.Background(), &test.ResponseWriter{}, q)
	}
	if heldAtWrite != 1 {
		t.Fatalf("%d sessions held as the retransmission was answered, want 1: the test does not test the early release", heldAtWrite)
	}
	ls := logs.sessionLines(t)
	if len(ls) != 2 {
		t.Fatalf("%d session lines, want 2:\n%s", len(ls), logs.String())
	}
	if _, ok := ls[1].Hint("retransmit_after_answer"); !ok {
		t.Errorf("the retransmission's line has no retransmit_after_answer hint: %s", ls[1].Raw)
	}
	d.diag.mu.Lock()
	n := len(d.diag.held)
	d.diag.mu.Unlock()
	if n != 0 {
		t.Errorf("%d sessions still held after their release", n)
	}
}
