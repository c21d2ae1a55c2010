package dnsdiag

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metadata"
	"github.com/coredns/coredns/plugin/test"
	tap "github.com/dnstap/golang-dnstap"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeTap is a forwarder leg as forward would tap it.
func fakeTap(kind tap.Message_Type, extra string, start time.Time, id uint16, rcode int) *tap.Dnstap {
	m := query("prefetched.example", dns.TypeA)
	m.Id = id
	typ := tap.Dnstap_MESSAGE
	msg := &tap.Message{Type: &kind, ResponseAddress: net.IPv4(127, 0, 0, 1).To4(), ResponsePort: ptr(uint32(53))}
	sec, nsec := uint64(start.Unix()), uint32(start.Nanosecond())
	msg.QueryTimeSec, msg.QueryTimeNsec = &sec, &nsec
	proto := tap.SocketProtocol_UDP
	msg.SocketProtocol = &proto
	if kind == tap.Message_FORWARDER_QUERY {
		msg.QueryMessage, _ = m.Pack()
	} else {
		r := new(dns.Msg)
		r.SetRcode(m, rcode)
		msg.ResponseMessage, _ = r.Pack()
	}
	return &tap.Dnstap{Type: &typ, Message: msg, Extra: []byte(extra)}
}

func ptr[T any](v T) *T { return &v }

func TestBackgroundSessions(t *testing.T) {
	logs := captureLog(t)
	d := newTestDiag(t, "dnsdiag {\n log all\n}", nil)
	sink := &tapSink{d: d}
	start := time.Now()
	before := testutil.ToFloat64(backgroundTotal.WithLabelValues("", "Succeeded"))

	// A prefetch: no session id at all.
	sink.Dnstap(fakeTap(tap.Message_FORWARDER_QUERY, "-", start, 7, 0))
	sink.Dnstap(fakeTap(tap.Message_FORWARDER_RESPONSE, "-", start, 7, dns.RcodeSuccess))
	// A verify that outlived client session 123456789.
	sink.Dnstap(fakeTap(tap.Message_FORWARDER_QUERY, "123456789", start, 8, 0))
	sink.Dnstap(fakeTap(tap.Message_FORWARDER_RESPONSE, "123456789", start, 8, dns.RcodeServerFailure))

	ls := logs.sessionLines(t)
	if len(ls) != 2 {
		t.Fatalf("want 2 background lines, got %d:\n%s", len(ls), logs.String())
	}
	if ls[0].Session == 0 || ls[1].Session == 0 || ls[0].Session == ls[1].Session {
		t.Errorf("background sessions need ids of their own, got %d and %d", ls[0].Session, ls[1].Session)
	}
	for i, want := range []struct {
		origin uint64
		status string
	}{{0, "Succeeded"}, {123456789, "Failed"}} {
		l := ls[i]
		if !l.Background || l.BitMap != 12 || l.ClientSession != want.origin || l.Status != want.status ||
			types(l) != "FORWARDER_QUERY FORWARDER_RESPONSE" || l.QName != "prefetched.example." {
			t.Errorf("background line %d: %+v", i, l)
		}
	}
	if got := testutil.ToFloat64(backgroundTotal.WithLabelValues("", "Succeeded")) - before; got != 1 {
		t.Errorf("background Succeeded counted %v, want 1", got)
	}
	if len(d.bg.open) != 0 {
		t.Errorf("%d background sessions left open", len(d.bg.open))
	}
}

func TestUntrackedTapIsCountedNotBackground(t *testing.T) {
	logs := captureLog(t)
	d := newTestDiag(t, "dnsdiag {\n log all\n}", nil)
	before := testutil.ToFloat64(droppedTotal.WithLabelValues(reasonUntrackedTap))
	(&tapSink{d: d}).Dnstap(fakeTap(tap.Message_FORWARDER_QUERY, "0", time.Now(), 1, 0))
	if got := testutil.ToFloat64(droppedTotal.WithLabelValues(reasonUntrackedTap)) - before; got != 1 {
		t.Errorf("untracked_tap drops %v, want 1", got)
	}
	if len(logs.sessionLines(t)) != 0 || len(d.bg.open) != 0 {
		t.Error("a tap of an untracked query became a session")
	}
}

func TestBackgroundLimit(t *testing.T) {
	captureLog(t)
	d := newTestDiag(t, "dnsdiag", nil)
	d.limits.background = 1
	sink := &tapSink{d: d}
	before := testutil.ToFloat64(droppedTotal.WithLabelValues(reasonBackgroundLimit))
	sink.Dnstap(fakeTap(tap.Message_FORWARDER_QUERY, "-", time.Now(), 1, 0))
	sink.Dnstap(fakeTap(tap.Message_FORWARDER_QUERY, "-", time.Now(), 2, 0))
	if got := testutil.ToFloat64(droppedTotal.WithLabelValues(reasonBackgroundLimit)) - before; got != 1 {
		t.Errorf("background_limit drops %v, want 1", got)
	}
	if len(d.bg.open) != 1 {
		t.Errorf("%d open background sessions, want 1", len(d.bg.open))
	}
}

func TestTapDuringClientSessionJoinsIt(t *testing.T) {
	logs := captureLog(t)
	var d *Dnsdiag
	d = newTestDiag(t, "dnsdiag {\n log all\n}", plugin.HandlerFunc(func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
		// What dnstap does for forward: Extra is the metadata label's value.
		id := metadata.ValueFunc(ctx, sessionLabel)()
		(&tapSink{d: d}).Dnstap(fakeTap(tap.Message_FORWARDER_QUERY, id, time.Now(), r.Id, 0))
		return answer(dns.RcodeSuccess)(ctx, w, r)
	}))
	d.hasForwards.Store(true) // as if a forward were hooked: queries then carry their id
	d.ServeDNS(context.Background(), &test.ResponseWriter{}, query("example.org", dns.TypeA))
	l := logs.oneLine(t)
	if l.BitMap != 7 || types(l) != "CLIENT_QUERY FORWARDER_QUERY CLIENT_RESPONSE" {
		t.Errorf("tap did not join its session: %+v", l)
	}
}
