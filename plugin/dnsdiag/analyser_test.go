package dnsdiag

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	tap "github.com/dnstap/golang-dnstap"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"
)

// newTestAnalyser is an analyser logging every session, and a pairing of
// one connection whose shed count is *shed.
func newTestAnalyser(t testing.TB, cfg AnalyserConfig) (*pairing, *uint64) {
	t.Helper()
	cfg.Options = append([]string{"log all", "rate 0", "report off"}, cfg.Options...)
	if cfg.Window == 0 {
		cfg = AnalyserConfig{Options: cfg.Options, Window: time.Second, MaxSessions: 100, Queue: 10, Idle: time.Minute}
	}
	a, err := NewAnalyser(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	shed := new(uint64)
	return newPairing(a, func() uint64 { return *shed }), shed
}

var (
	tapClient1 = netip.MustParseAddrPort("192.0.2.10:5301")
	tapClient2 = netip.MustParseAddrPort("192.0.2.11:5302")
	tapCoreDNS = netip.MustParseAddrPort("127.0.0.1:40000")
	tapUp      = netip.MustParseAddrPort("127.0.0.53:53")
)

// tapMsg is a dnstap message as stock CoreDNS v1.15.0 taps it: client legs
// carry the client's address, forwarder legs CoreDNS's own socket and the
// upstream's; queryTime is the query time every leg of it repeats.
func tapMsg(t testing.TB, typ tap.Message_Type, m *dns.Msg, client netip.AddrPort, queryTime time.Time) *tap.Dnstap {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	sec, nsec := uint64(queryTime.Unix()), uint32(queryTime.Nanosecond())
	msg := &tap.Message{Type: &typ, SocketFamily: tap.SocketFamily_INET.Enum(), SocketProtocol: tap.SocketProtocol_UDP.Enum(),
		QueryTimeSec: &sec, QueryTimeNsec: &nsec}
	addr := func(ap netip.AddrPort) ([]byte, *uint32) { p := uint32(ap.Port()); return ap.Addr().AsSlice(), &p }
	switch typ {
	case tap.Message_CLIENT_QUERY, tap.Message_CLIENT_RESPONSE:
		msg.QueryAddress, msg.QueryPort = addr(client)
	default:
		msg.QueryAddress, msg.QueryPort = addr(tapCoreDNS)
		msg.ResponseAddress, msg.ResponsePort = addr(tapUp)
	}
	if typ == tap.Message_CLIENT_QUERY || typ == tap.Message_FORWARDER_QUERY {
		msg.QueryMessage = b
	} else {
		rt := queryTime.Add(time.Millisecond)
		rsec, rnsec := uint64(rt.Unix()), uint32(rt.Nanosecond())
		msg.ResponseMessage, msg.ResponseTimeSec, msg.ResponseTimeNsec = b, &rsec, &rnsec
	}
	dt := tap.Dnstap_MESSAGE
	return &tap.Dnstap{Type: &dt, Identity: []byte("core-1"), Message: msg}
}

// exchange is a query for name with id and its answer with rcode.
func exchange(name string, id uint16, rcode int) (q, r *dns.Msg) {
	q = query(name, dns.TypeA)
	q.Id = id
	r = new(dns.Msg)
	r.SetRcode(q, rcode)
	if rcode == dns.RcodeSuccess {
		rr, _ := dns.NewRR(name + " 60 IN A 192.0.2.1")
		r.Answer = append(r.Answer, rr)
	}
	return q, r
}

const (
	cq = tap.Message_CLIENT_QUERY
	cr = tap.Message_CLIENT_RESPONSE
	fq = tap.Message_FORWARDER_QUERY
	fr = tap.Message_FORWARDER_RESPONSE
)

// legMsg is what a leg of typ carries: q for a query, r for a response.
func legMsg(typ tap.Message_Type, q, r *dns.Msg) *dns.Msg {
	if typ == cr || typ == fr {
		return r
	}
	return q
}

// tapFeed hands a pairing dnstap messages (tapMsg) that all arrive at now.
type tapFeed struct {
	t   testing.TB
	p   *pairing
	now time.Time
}

// newTapFeed captures the log (captureLog) of a newTestAnalyser(t, cfg),
// and returns it with a tapFeed to the analyser's pairing, arriving now,
// and the pairing's shed count.
func newTapFeed(t testing.TB, cfg AnalyserConfig) (*logCapture, tapFeed, *uint64) {
	t.Helper()
	logs := captureLog(t)
	p, shed := newTestAnalyser(t, cfg)
	return logs, tapFeed{t, p, time.Now()}, shed
}

// legs hands the pairing the legs typs of one exchange, tapped for client
// with query time at.
func (f tapFeed) legs(client netip.AddrPort, at time.Time, q, r *dns.Msg, typs ...tap.Message_Type) {
	f.t.Helper()
	for _, typ := range typs {
		f.p.add(tapMsg(f.t, typ, legMsg(typ, q, r), client, at), f.now)
	}
}

func TestAnalyserPairsEachLegOrder(t *testing.T) {
	now := time.Now()
	q, r := exchange("a.example.", 7, dns.RcodeSuccess)
	servfail := new(dns.Msg).SetRcode(q, dns.RcodeServerFailure)
	for _, tc := range []struct {
		name   string
		legs   []tap.Message_Type
		reply  *dns.Msg // the client response, r if nil
		status string
		bitmap int
		upstr  int
	}{
		{"external", []tap.Message_Type{cq, fq, fr, cr}, nil, "Succeeded", 15, 1},
		{"internal", []tap.Message_Type{cq, cr}, nil, "Succeeded", 3, 0},
		{"first upstream dead", []tap.Message_Type{cq, fq, fq, fr, cr}, nil, "Succeeded", 15, 2},
		// dnstap's own CLIENT_RESPONSE for the server's SERVFAIL is no leg.
		{"upstream silent", []tap.Message_Type{cq, fq, fq, cr}, servfail, "Failed", 5, 2},
		{"response without query", []tap.Message_Type{cr}, nil, "SampleLoss", 2, 0},
		{"forwarder response without query", []tap.Message_Type{fr}, nil, "SampleLoss", 8, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := captureLog(t)
			p, _ := newTestAnalyser(t, AnalyserConfig{})
			reply := r
			if tc.reply != nil {
				reply = tc.reply
			}
			for _, typ := range tc.legs {
				m := q
				switch typ {
				case fr:
					m = r
				case cr:
					m = reply
				}
				p.add(tapMsg(t, typ, m, tapClient1, now), now)
			}
			p.expire(now.Add(time.Hour))
			l := logs.oneLine(t)
			if l.Status != tc.status || l.BitMap != tc.bitmap || len(l.Upstreams) != tc.upstr {
				t.Errorf("got %s %d with %d attempts, want %s %d with %d", l.Status, l.BitMap, len(l.Upstreams), tc.status, tc.bitmap, tc.upstr)
			}
			if tc.legs[0] == cq && l.Client != tapClient1.String() {
				t.Errorf("Client %q, want %s", l.Client, tapClient1)
			}
			if tc.reply != nil && !l.ServerGenerated {
				t.Errorf("dnstap's own response for the server's answer: want ServerGenerated")
			}
			if p.head != nil || len(p.clients)+len(p.forwards)+len(p.byQuestion) != 0 {
				t.Errorf("the pairing still holds sessions after they ended")
			}
		})
	}
}

// A forwarder query with no client session waiting is a background one.
func TestAnalyserBackground(t *testing.T) {
	logs, f, _ := newTapFeed(t, AnalyserConfig{})
	now := f.now
	q, r := exchange("pre.example.", 9, dns.RcodeSuccess)
	f.legs(tapClient1, now, q, r, fq, fr)
	l := logs.oneLine(t)
	if !l.Background || l.Status != "Succeeded" || l.BitMap != 12 {
		t.Errorf("want a Succeeded background session 12, got %+v", l)
	}
}

// The same question and id from two clients at once: which forward
// invocation was whose is a guess, said on both lines and counted.
func TestAnalyserAmbiguous(t *testing.T) {
	logs, f, _ := newTapFeed(t, AnalyserConfig{})
	p, now := f.p, f.now
	before := testutil.ToFloat64(p.a.m.ambiguous)
	q, r := exchange("same.example.", 11, dns.RcodeSuccess)
	f.legs(tapClient1, now, q, r, cq)
	f.legs(tapClient2, now, q, r, cq)
	later := now.Add(time.Millisecond) // each forward ServeDNS stamps its own time
	f.legs(tapClient1, later, q, r, fq, fr)
	f.legs(tapClient1, now, q, r, cr)
	f.legs(tapClient2, later.Add(time.Millisecond), q, r, fq, fr)
	f.legs(tapClient2, now, q, r, cr)
	ls := logs.sessionLines(t)
	if len(ls) != 2 {
		t.Fatalf("want 2 sessions, got %d", len(ls))
	}
	for _, l := range ls {
		if l.BitMap != 15 || len(l.Upstreams) != 1 {
			t.Errorf("want each session 15 with one attempt: %+v", l)
		}
	}
	if n := strings.Count(logs.String(), `"Ambiguous":true`); n != 2 {
		t.Errorf("%d lines say Ambiguous, want 2:\n%s", n, logs)
	}
	if got := testutil.ToFloat64(p.a.m.ambiguous) - before; got != 1 {
		t.Errorf("ambiguous_total grew by %v, want 1", got)
	}
	// Distinct ids are never ambiguous.
	logs.Take()
	q2, r2 := exchange("same.example.", 12, dns.RcodeSuccess)
	f.legs(tapClient1, now, q, r, cq)
	f.legs(tapClient2, now, q2, r2, cq)
	f.legs(tapClient2, later, q2, r2, fq, fr)
	f.legs(tapClient2, now, q2, r2, cr)
	f.legs(tapClient1, now, q, r, cr)
	if strings.Contains(logs.String(), "Ambiguous") {
		t.Errorf("distinct ids: nothing ambiguous:\n%s", logs)
	}
	for _, l := range logs.sessionLines(t) {
		if l.Client == tapClient2.String() && l.BitMap != 15 || l.Client == tapClient1.String() && l.BitMap != 3 {
			t.Errorf("forward invocation paired with the wrong client: %+v", l)
		}
	}
}

// A session without its response ends when its window closes, not before.
func TestAnalyserWindowExpiry(t *testing.T) {
	logs, f, _ := newTapFeed(t, AnalyserConfig{})
	p, now := f.p, f.now
	q, _ := exchange("drop.example.", 13, dns.RcodeSuccess)
	f.legs(tapClient1, now, q, nil, cq)
	p.expire(now.Add(p.a.cfg.Window - time.Millisecond))
	if ls := logs.sessionLines(t); len(ls) != 0 {
		t.Fatalf("ended before its window closed: %+v", ls)
	}
	p.expire(now.Add(p.a.cfg.Window))
	l := logs.oneLine(t)
	if l.Status != "Failed" || l.BitMap != 1 || !strings.Contains(l.Cause, "no response") {
		t.Errorf("want Failed 1, CoreDNS sent no response: %+v", l)
	}
}

// Past MaxSessions a client query gets no session, and is counted.
func TestAnalyserSessionCap(t *testing.T) {
	logs, f, _ := newTapFeed(t, AnalyserConfig{Window: time.Second, MaxSessions: 1, Queue: 1, Idle: time.Minute})
	p, now := f.p, f.now
	c := p.a.m.dropped.WithLabelValues(droppedSessionCap)
	before := testutil.ToFloat64(c)
	q1, r1 := exchange("one.example.", 1, dns.RcodeSuccess)
	q2, _ := exchange("two.example.", 2, dns.RcodeSuccess)
	f.legs(tapClient1, now, q1, r1, cq)
	f.legs(tapClient2, now, q2, nil, cq)
	if got := testutil.ToFloat64(c) - before; got != 1 {
		t.Errorf("sessions_dropped_total{session_cap} grew by %v, want 1", got)
	}
	f.legs(tapClient1, now, q1, r1, cr)
	l := logs.oneLine(t)
	if l.QName != "one.example." || l.BitMap != 3 {
		t.Errorf("the tracked session: %+v", l)
	}
	if analyserOpen.Load() != 0 {
		t.Errorf("%d sessions open after all ended", analyserOpen.Load())
	}
}

// A session open while its connection shed frames may lack a leg: it is
// SampleLoss. So is one left open when its connection ends.
func TestAnalyserShedAndEnd(t *testing.T) {
	logs, f, shed := newTapFeed(t, AnalyserConfig{})
	p, now := f.p, f.now
	q, r := exchange("shed.example.", 3, dns.RcodeSuccess)
	f.legs(tapClient1, now, q, r, cq)
	*shed++
	f.legs(tapClient1, now, q, r, cr)
	if l := logs.oneLine(t); l.Status != "SampleLoss" || l.BitMap != 3 {
		t.Errorf("want SampleLoss 3 after shedding: %+v", l)
	}
	logs.Take()
	f.legs(tapClient2, now, q, r, cq)
	p.endAll()
	if l := logs.oneLine(t); l.Status != "SampleLoss" || l.BitMap != 1 {
		t.Errorf("want SampleLoss 1 for a session its connection left open: %+v", l)
	}
}

// Serve reads a real Frame Streams connection.
func TestAnalyserServe(t *testing.T) {
	logs := captureLog(t)
	p, _ := newTestAnalyser(t, AnalyserConfig{})
	a := p.a
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go a.Serve(ln)
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	w, err := tap.NewWriter(conn, &tap.WriterOptions{Bidirectional: true})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	q, r := exchange("served.example.", 5, dns.RcodeSuccess)
	for _, typ := range []tap.Message_Type{cq, cr} {
		b, err := proto.Marshal(tapMsg(t, typ, legMsg(typ, q, r), tapClient1, now))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.WriteFrame(b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.WriteFrame([]byte("not protobuf")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	for deadline := time.Now().Add(5 * time.Second); len(logs.sessionLines(t)) == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if l := logs.oneLine(t); l.QName != "served.example." || l.BitMap != 3 {
		t.Errorf("want the session read from the stream: %+v", l)
	}
}

// FuzzAnalyserFrame feeds arbitrary frames, and dnstap messages built from
// fuzzed fields, to a connection's decoding and pairing: nothing may
// panic, every line must be valid JSON, and once the connection ends no
// session may stay open.
func FuzzAnalyserFrame(f *testing.F) {
	q, r := exchange("fuzz.example.", 21, dns.RcodeSuccess)
	now := time.Now()
	for _, typ := range []tap.Message_Type{cq, cr, fq, fr} {
		b, err := proto.Marshal(tapMsg(f, typ, legMsg(typ, q, r), tapClient1, now))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(0), int32(typ), packed(f, q), packed(f, r))
	}
	f.Add([]byte("\x0a\x03abc"), uint8(3), int32(99), []byte{1, 2, 3}, []byte(nil))
	logs := captureLog(f)
	f.Fuzz(func(t *testing.T, frame []byte, shape uint8, typ int32, qmsg, rmsg []byte) {
		// A fresh analyser each time, and without its periodic goroutine:
		// the hint detectors remember clients across sessions, and a
		// ticker firing at random would make coverage depend on time.
		a, err := newAnalyser(AnalyserConfig{Options: []string{"log all", "rate 0", "report off"},
			Window: time.Second, MaxSessions: 100, Queue: 10, Idle: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		p := newPairing(a, func() uint64 { return 0 })
		// A fixed time: wall-clock digits would change the coverage of
		// rendering a line from one run to the next.
		now := time.Unix(1_700_000_000, 123_000_000)
		if d, ok := a.decode(frame); ok {
			p.add(d, now)
		}
		d := fuzzTap(shape, typ, nil, tapClient1.Addr().AsSlice(), tapUp.Addr().AsSlice(), 5301, 53, int32(tap.SocketProtocol_UDP), qmsg, rmsg, uint64(now.Unix()), 0)
		b, err := proto.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := a.decode(b); ok {
			p.add(d, now)
		}
		p.endAll()
		if p.head != nil || len(p.clients)+len(p.forwards)+len(p.byQuestion) != 0 {
			t.Fatal("sessions left open after the connection ended")
		}
		fuzzLines(t, logs)
	})
}

// The same query again from the same socket before the first was answered:
// the answers are taken in turn, and both sessions say it was a guess.
func TestAnalyserRetransmittedQuery(t *testing.T) {
	logs, f, _ := newTapFeed(t, AnalyserConfig{})
	p, now := f.p, f.now
	q, r := exchange("again.example.", 17, dns.RcodeSuccess)
	f.legs(tapClient1, now, q, r, cq)
	f.legs(tapClient1, now.Add(time.Millisecond), q, r, cq)
	f.legs(tapClient1, now, q, r, cr)
	f.legs(tapClient1, now.Add(time.Millisecond), q, r, cr)
	p.a.d.diag.releaseAll(p.a.d.release) // the retransmission detector may hold one
	ls := logs.sessionLines(t)
	if len(ls) != 2 || ls[0].BitMap != 3 || ls[1].BitMap != 3 || ls[0].Session >= ls[1].Session {
		t.Fatalf("want two sessions 3, the older answered first: %+v", ls)
	}
	if n := strings.Count(logs.String(), `"Ambiguous":true`); n != 2 {
		t.Errorf("%d lines say Ambiguous, want 2", n)
	}
	if p.head != nil || len(p.clients) != 0 {
		t.Errorf("the pairing still holds sessions after they ended")
	}
}
