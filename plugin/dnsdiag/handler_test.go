package dnsdiag

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestInternalSessions(t *testing.T) {
	for _, tc := range []struct {
		name      string
		next      plugin.HandlerFunc
		bitmap    int
		status    string
		rcode     string
		generated bool
		cause     string
	}{
		{"answer", answer(dns.RcodeSuccess), 3, "Succeeded", "NOERROR", false, ""},
		{"nxdomain", answer(dns.RcodeNameError), 3, "Succeeded", "NXDOMAIN", false, ""},
		{"refused written", answer(dns.RcodeRefused), 3, "Failed", "REFUSED", false, "answered internally with REFUSED"},
		{"servfail returned", func(context.Context, dns.ResponseWriter, *dns.Msg) (int, error) {
			return dns.RcodeServerFailure, errors.New("boom")
		}, 1, "Failed", "SERVFAIL", true, "returned SERVFAIL without answering"},
		{"dropped", func(context.Context, dns.ResponseWriter, *dns.Msg) (int, error) {
			return dns.RcodeSuccess, nil
		}, 1, "Failed", "<nil>", false, "sent no response"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := captureLog(t)
			d := newTestDiag(t, "dnsdiag {\n log all\n}", tc.next)
			d.ServeDNS(context.Background(), &test.ResponseWriter{}, query("example.org", dns.TypeA))
			l := logs.oneLine(t)
			if l.BitMap != tc.bitmap || l.Status != tc.status || rcodeOf(l) != tc.rcode || l.ServerGenerated != tc.generated {
				t.Errorf("got BitMap %d Status %s Rcode %s ServerGenerated %v, want %d %s %s %v",
					l.BitMap, l.Status, rcodeOf(l), l.ServerGenerated, tc.bitmap, tc.status, tc.rcode, tc.generated)
			}
			if !strings.Contains(l.Cause, tc.cause) || (tc.cause == "" && l.Cause != "") {
				t.Errorf("Cause %q, want %q", l.Cause, tc.cause)
			}
			if l.QName != "example.org." || l.QType != "A" || l.Client != "10.240.0.1:40212" || l.Protocol != "udp" {
				t.Errorf("summary fields wrong: %+v", l)
			}
			want := "CLIENT_QUERY"
			if tc.bitmap&2 != 0 {
				want += " CLIENT_RESPONSE"
			}
			if types(l) != want {
				t.Errorf("Messages %q, want %q", types(l), want)
			}
		})
	}
}

func TestPanicStillEndsSession(t *testing.T) {
	logs := captureLog(t)
	d := newTestDiag(t, "dnsdiag", plugin.HandlerFunc(func(context.Context, dns.ResponseWriter, *dns.Msg) (int, error) {
		panic("plugin bug")
	}))
	func() {
		defer func() {
			if recover() == nil {
				t.Error("dnsdiag swallowed the panic: the server must still see it")
			}
		}()
		d.ServeDNS(context.Background(), &test.ResponseWriter{}, query("example.org", dns.TypeA))
	}()
	l := logs.oneLine(t)
	if !l.Panic || !l.ServerGenerated || rcodeOf(l) != "SERVFAIL" || l.Status != "Failed" || l.BitMap != 1 {
		t.Errorf("panic session: %+v", l)
	}
	if sessions.inflight() != 0 {
		t.Errorf("%d sessions still in flight after the panic", sessions.inflight())
	}
}

func TestForwardedSessions(t *testing.T) {
	ok := upstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		switch r.Question[0].Name {
		case "fail.example.":
			m.SetRcode(r, dns.RcodeServerFailure)
		case "nx.example.":
			m.SetRcode(r, dns.RcodeNameError)
		default:
			m.SetReply(r)
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30}, A: net.IPv4(192, 0, 2, 7)})
		}
		w.WriteMsg(m)
	})
	for _, tc := range []struct{ name, status, rcode, upstreamRcode string }{
		{"www.example.", "Succeeded", "NOERROR", "NOERROR"},
		{"nx.example.", "Succeeded", "NXDOMAIN", "NXDOMAIN"},
		{"fail.example.", "Failed", "SERVFAIL", "SERVFAIL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := captureLog(t)
			d := newTestDiag(t, "dnsdiag {\n log all\n}", newForward(t, ok))
			if n := len(forwardsBelow(d.Next)); n != 1 || !d.hasForwards.Load() {
				t.Fatalf("%d forwards below, hooked %v: want 1, hooked", n, d.hasForwards.Load())
			}
			rw := &test.ResponseWriter{}
			d.ServeDNS(context.Background(), rw, query(tc.name, dns.TypeA))
			l := logs.oneLine(t)
			if l.BitMap != 15 || l.Status != tc.status || rcodeOf(l) != tc.rcode {
				t.Errorf("got %d %s %s, want 15 %s %s", l.BitMap, l.Status, rcodeOf(l), tc.status, tc.rcode)
			}
			if got := types(l); got != "CLIENT_QUERY FORWARDER_QUERY FORWARDER_RESPONSE CLIENT_RESPONSE" {
				t.Errorf("Messages %q", got)
			}
			if len(l.Upstreams) != 1 || l.Upstreams[0].Address != ok || l.Upstreams[0].Protocol != "udp" ||
				l.Upstreams[0].Rcode == nil || *l.Upstreams[0].Rcode != tc.upstreamRcode {
				t.Errorf("Upstreams %+v", l.Upstreams)
			}
			fq := l.Messages[1]
			if fq.ResponseAddress != ok || fq.Header(t).QNAME != tc.name {
				t.Errorf("FORWARDER_QUERY leg %+v", fq)
			}
			if fr := l.Messages[2]; fr.Header(t).QR != 1 {
				t.Errorf("FORWARDER_RESPONSE message %s", fr.Message)
			}
			for i := 1; i < len(l.Messages); i++ {
				if legTime(t, l.Messages[i]).Before(legTime(t, l.Messages[i-1])) {
					t.Errorf("legs out of order: %v", l.Messages)
				}
			}
		})
	}
}

func TestSilentUpstream(t *testing.T) {
	// A closed port on loopback refuses at once, so forward gives up fast.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := pc.LocalAddr().String()
	pc.Close()

	logs := captureLog(t)
	d := newTestDiag(t, "dnsdiag", newForward(t, dead))
	rcode, _ := d.ServeDNS(context.Background(), &test.ResponseWriter{}, query("example.org", dns.TypeA))
	if rcode != dns.RcodeServerFailure {
		t.Fatalf("forward returned %d, want SERVFAIL", rcode)
	}
	l := logs.oneLine(t)
	if l.BitMap != 5 || l.Status != "Failed" || rcodeOf(l) != "SERVFAIL" || !l.ServerGenerated {
		t.Errorf("got %+v", l)
	}
	if len(l.Upstreams) == 0 {
		t.Fatal("no upstream attempts recorded")
	}
	for _, u := range l.Upstreams {
		if u.Rcode != nil || u.Address != dead {
			t.Errorf("attempt %+v, want no answer from %s", u, dead)
		}
	}
	if !strings.Contains(l.Cause, "upstream did not answer") || l.Error == "" {
		t.Errorf("Cause %q Error %q", l.Cause, l.Error)
	}
}

func TestDefaultPolicyCountsEverythingLogsFailures(t *testing.T) {
	logs := captureLog(t)
	d := newTestDiag(t, "dnsdiag", answer(dns.RcodeSuccess))
	failing := newTestDiag(t, "dnsdiag", answer(dns.RcodeServerFailure))
	okBefore := testutil.ToFloat64(sessionsTotal.WithLabelValues("", "Succeeded", "3"))
	failBefore := testutil.ToFloat64(sessionsTotal.WithLabelValues("", "Failed", "3"))
	for range 3 {
		d.ServeDNS(context.Background(), &test.ResponseWriter{}, query("example.org", dns.TypeA))
	}
	failing.ServeDNS(context.Background(), &test.ResponseWriter{}, query("example.org", dns.TypeA))
	if l := logs.oneLine(t); l.Status != "Failed" {
		t.Errorf("logged %+v, want only the failure", l)
	}
	if got := testutil.ToFloat64(sessionsTotal.WithLabelValues("", "Succeeded", "3")) - okBefore; got != 3 {
		t.Errorf("counted %v Succeeded sessions, want 3", got)
	}
	if got := testutil.ToFloat64(sessionsTotal.WithLabelValues("", "Failed", "3")) - failBefore; got != 1 {
		t.Errorf("counted %v Failed sessions, want 1", got)
	}
}

func TestInflightLimitServesUntracked(t *testing.T) {
	logs := captureLog(t)
	d := newTestDiag(t, "dnsdiag {\n log all\n}", answer(dns.RcodeSuccess))
	d.limits.inflight = 0
	before := testutil.ToFloat64(droppedTotal.WithLabelValues(reasonInflightLimit))
	rw := &test.ResponseWriter{}
	rcode, err := d.ServeDNS(context.Background(), rw, query("example.org", dns.TypeA))
	if rcode != dns.RcodeSuccess || err != nil {
		t.Fatalf("query not served: %d %v", rcode, err)
	}
	if got := testutil.ToFloat64(droppedTotal.WithLabelValues(reasonInflightLimit)) - before; got != 1 {
		t.Errorf("inflight_limit drops %v, want 1", got)
	}
	if ls := logs.sessionLines(t); len(ls) != 0 {
		t.Errorf("untracked query logged: %+v", ls)
	}
}

func TestLateWriteIsCountedNotRecorded(t *testing.T) {
	captureLog(t)
	var kept dns.ResponseWriter
	d := newTestDiag(t, "dnsdiag", plugin.HandlerFunc(func(_ context.Context, w dns.ResponseWriter, _ *dns.Msg) (int, error) {
		kept = w
		return dns.RcodeSuccess, nil
	}))
	d.ServeDNS(context.Background(), &test.ResponseWriter{}, query("example.org", dns.TypeA))
	before := testutil.ToFloat64(droppedTotal.WithLabelValues(reasonLateWrite))
	m := new(dns.Msg)
	m.SetRcode(query("example.org", dns.TypeA), dns.RcodeSuccess)
	if err := kept.WriteMsg(m); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(droppedTotal.WithLabelValues(reasonLateWrite)) - before; got != 1 {
		t.Errorf("late_write drops %v, want 1", got)
	}
}

func TestLegLimitMarksSampleLoss(t *testing.T) {
	logs := captureLog(t)
	d := newTestDiag(t, "dnsdiag {\n max_line off\n}", plugin.HandlerFunc(func(_ context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
		m := new(dns.Msg)
		m.SetReply(r)
		for range maxLegs + 1 {
			w.WriteMsg(m)
		}
		return dns.RcodeSuccess, nil
	}))
	d.ServeDNS(context.Background(), &test.ResponseWriter{}, query("example.org", dns.TypeA))
	l := logs.oneLine(t)
	if l.Status != "SampleLoss" || len(l.Messages) != maxLegs {
		t.Errorf("Status %s with %d legs, want SampleLoss with %d", l.Status, len(l.Messages), maxLegs)
	}
}

// trackingWriter is a writer that tracks which plugin wrote the response,
// as the prometheus plugin's recorder does.
type trackingWriter struct {
	test.ResponseWriter
	plugin string
}

func (w *trackingWriter) SetPlugin(name string) { w.plugin = name }
func (w *trackingWriter) GetPlugin() string     { return w.plugin }

// namedAnswer is answer(NOERROR) under a plugin name.
type namedAnswer struct{}

func (namedAnswer) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	return answer(dns.RcodeSuccess)(ctx, w, r)
}
func (namedAnswer) Name() string { return "named" }

// TestServeNextTracksPlugin: dnsdiag calls the next plugin without
// plugin.NextOrFailure's wrapper, so its own writer must tell a tracking
// writer below what that wrapper would have: the next plugin's name.
func TestServeNextTracksPlugin(t *testing.T) {
	var via trackingWriter
	plugin.NextOrFailure("x", namedAnswer{}, context.Background(), &via, query("example.org", dns.TypeA))
	d := newTestDiag(t, "dnsdiag", namedAnswer{})
	var w trackingWriter
	if _, err := d.ServeDNS(context.Background(), &w, query("example.org", dns.TypeA)); err != nil {
		t.Fatal(err)
	}
	if w.plugin != via.plugin || w.plugin != "named" {
		t.Errorf("the tracker below dnsdiag saw plugin %q, through plugin.NextOrFailure %q; want both %q", w.plugin, via.plugin, "named")
	}
}

// TestUnloggedAllocs: an internal answer that is not logged costs dnsdiag
// one allocation, its writer (which also carries the session id's context):
// everything else a session needs is pooled or preallocated.
func TestUnloggedAllocs(t *testing.T) {
	next := benchFixed{}
	d := newTestDiag(t, benchDefault, next)
	w, r := newBenchWriter(), query("example.org", dns.TypeA)
	ctx := context.Background()
	logs := captureLog(t)
	// A new DNS ID each time, or every query would be a retransmission.
	serve := func(h plugin.Handler) func() {
		return func() { r.Id++; h.ServeDNS(ctx, w, r) }
	}
	serve(d)() // the first session fills the pools
	plain := testing.AllocsPerRun(200, serve(next))
	with := testing.AllocsPerRun(200, serve(d))
	if out := logs.String(); out != "" {
		t.Fatalf("sessions were logged, the test measures unlogged ones:\n%.2000s", out)
	}
	if with-plain != 1 {
		t.Errorf("dnsdiag adds %v allocations per unlogged internal answer (%v with, %v without), want 1", with-plain, with, plain)
	}
}

// otherAddr is a net.Addr of no type addrPortOf knows.
type otherAddr string

func (a otherAddr) Network() string { return "other" }
func (a otherAddr) String() string  { return string(a) }

// TestAddrPortOf: a session line's addresses, rendered from addrPortOf,
// read as the writer's net.Addr String() does.
func TestAddrPortOf(t *testing.T) {
	for _, a := range []net.Addr{
		&net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 53}, // 16-byte form
		&net.UDPAddr{IP: net.IP{192, 0, 2, 7}, Port: 40000},
		&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 853},
		&net.UDPAddr{IP: net.ParseIP("fe80::1"), Port: 5353, Zone: "eth0"},
		otherAddr("127.0.0.1:8053"),
	} {
		if got := appendAddrField(nil, "A", addrPortOf(a)); string(got) != `,"A":"`+a.String()+`"` {
			t.Errorf("%#v: rendered %s, want %q", a, got, a.String())
		}
	}
	for _, a := range []net.Addr{nil, otherAddr("not an address")} {
		if ap := addrPortOf(a); ap.IsValid() {
			t.Errorf("addrPortOf(%#v) = %v, want invalid", a, ap)
		}
	}
}
