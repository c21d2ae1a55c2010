package e2e

// The cross-session diagnosis (plugin/hints) against the real binary, with
// real clients: glibc's getaddrinfo (getent) in a private namespace, dig,
// and raw UDP sockets replaying the exact packets a stub resolver resends.
// Each test asserts the codes and details on the lines and the
// coredns_dnsdiag_hints_total series of every code.

import (
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dnsdiag/dnsdiag/plugin/hints"
	"github.com/miekg/dns"
)

// hint is one member of a line's "Hints", with the details of every code
// under their JSON names (plugin/hints/json.go); pointers tell a detail the
// line lacks from its zero value.
type hint struct {
	Code, Text string

	EarlierSession uint64
	SamePort       *bool
	EarlierRcode   string
	AgoMs          *float64
	InFlight       *bool
	RunningMs      *float64
	Waiting        string
	Attempts       *int
	Upstream       string

	Lost         string
	OtherSession uint64

	Count    int
	Suffixes []string

	WindowMs *float64

	Evidence         string
	UDPAnsweredAgoMs *float64
}

// hintsOf is the Hints of l, in order.
func hintsOf(t testing.TB, l Line) []hint {
	t.Helper()
	var v struct{ Hints []hint }
	if err := json.Unmarshal([]byte(l.Raw), &v); err != nil {
		t.Fatalf("Hints of %s: %v", l.Raw, err)
	}
	if len(v.Hints) != len(l.Hints) {
		t.Fatalf("%d hints, dnsdiagtest parses %d: %s", len(v.Hints), len(l.Hints), l.Raw)
	}
	for i, h := range v.Hints {
		if h.Code == "" || h.Text == "" || l.Hints[i].Code != h.Code || l.Hints[i].Text != h.Text {
			t.Fatalf("hint %d without Code or Text, or not what dnsdiagtest parses: %s", i, l.Raw)
		}
	}
	return v.Hints
}

// mustHints fails the test unless l's hints have exactly codes, in this
// order, and returns them.
func mustHints(t testing.TB, l Line, codes ...hints.Code) []hint {
	t.Helper()
	hs := hintsOf(t, l)
	var got, want []string
	for _, h := range hs {
		got = append(got, h.Code)
	}
	for _, c := range codes {
		want = append(want, string(c))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s %s from %s: hints %v, want %v\nline: %s", l.QName, l.QType, l.Client, got, want, l.Raw)
	}
	return hs
}

// logLine logs l without its legs and upstreams, for the test's record of
// what each scenario produced.
func logLine(t testing.TB, scenario string, l Line) {
	t.Helper()
	raw := l.Raw
	if i := strings.Index(raw, `,"Time":`); i > 0 {
		raw = raw[:i] + ",…}"
	}
	t.Logf("%s: %s", scenario, raw)
}

// isBool and inMs report whether a detail is present, with value want or
// within [lo, hi]; msOf renders one for a failure message.
func isBool(p *bool, want bool) bool { return p != nil && *p == want }

func inMs(p *float64, lo, hi float64) bool { return p != nil && *p >= lo && *p <= hi }

func msOf(p *float64) any {
	if p == nil {
		return "absent"
	}
	return *p
}

// wantHintCounts waits until coredns_dnsdiag_hints_total of the server on
// placeholder name is want for every code (codes want lacks: 0), and fails
// the test if it is not within 10 s.
func wantHintCounts(t testing.TB, s *Server, name string, want map[hints.Code]float64) {
	t.Helper()
	server := s.ServerLabel(name)
	promWait(t, s.Addr("PROM"), fmt.Sprintf("hints_total of %s = %v", server, want), lineTimeout, func(ss []promSample) bool {
		for _, c := range hints.Codes {
			if promSum(ss, "coredns_dnsdiag_hints_total", map[string]string{"server": server, "code": string(c)}) != want[c] {
				return false
			}
		}
		return true
	})
}

// sessionsCounted waits until coredns_dnsdiag_sessions_total of the server
// on placeholder name reaches n.
func sessionsCounted(t testing.TB, s *Server, name string, n float64) []promSample {
	t.Helper()
	server := s.ServerLabel(name)
	return promWait(t, s.Addr("PROM"), fmt.Sprintf("%v sessions of %s", n, server), lineTimeout, func(ss []promSample) bool {
		return promSum(ss, "coredns_dnsdiag_sessions_total", map[string]string{"server": server}) >= n
	})
}

// dnsID is the DNS ID of the client's query of l.
func dnsID(t testing.TB, l Line) int {
	t.Helper()
	if len(l.Messages) == 0 {
		t.Fatalf("no legs: %s", l.Raw)
	}
	return l.Messages[0].Header(t).ID
}

// byTime sorts lines by when their query arrived.
func byTime(t testing.TB, ls []Line) []Line {
	t.Helper()
	ls = slices.Clone(ls)
	slices.SortStableFunc(ls, func(a, b Line) int { return lineTime(t, a).Compare(lineTime(t, b)) })
	return ls
}

// lineTime is when the line's session started.
func lineTime(t testing.TB, l Line) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, l.Time)
	if err != nil {
		t.Fatalf("Time %q: %v", l.Time, err)
	}
	return v
}

func port(t testing.TB, hostport string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatalf("address %q: %v", hostport, err)
	}
	return p
}

// ---------------------------------------------------------------------------
// Raw UDP: one socket sending exact bytes, as a stub resolver does.

type rawUDP struct {
	t  testing.TB
	c  *net.UDPConn
	to *net.UDPAddr
}

func newRawUDP(t testing.TB, addr string) *rawUDP {
	t.Helper()
	to, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawUDP{t: t, c: c, to: to}
}

// Local is the socket's address, as the server sees it.
func (r *rawUDP) Local() string { return r.c.LocalAddr().String() }

func (r *rawUDP) send(b []byte) {
	r.t.Helper()
	if _, err := r.c.WriteTo(b, r.to); err != nil {
		r.t.Fatalf("send from %s: %v", r.Local(), err)
	}
}

// recv is the next datagram from the server, exactly as it came.
func (r *rawUDP) recv() []byte {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(qTimeout))
	buf := make([]byte, 65535)
	n, from, err := r.c.ReadFrom(buf)
	if err != nil {
		r.t.Fatalf("read on %s: %v", r.Local(), err)
	}
	if from.String() != r.to.String() {
		r.t.Fatalf("datagram from %s, want %s", from, r.to)
	}
	return buf[:n]
}

// rawQuery is a query as glibc sends it: RD set, no EDNS.
func rawQuery(t testing.TB, id uint16, name string, qtype uint16) (*dns.Msg, []byte) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = id
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return m, b
}

// unpack parses a reply and checks it answers m.
func unpack(t testing.TB, m *dns.Msg, b []byte, rcode int) *dns.Msg {
	t.Helper()
	r := new(dns.Msg)
	if err := r.Unpack(b); err != nil {
		t.Fatalf("reply to %s: %v", m.Question[0].Name, err)
	}
	return Result{Query: m, Msg: r}.MustAnswer(t, rcode)
}

// rawCorefile answers A and AAAA of raw.test itself.
func rawCorefile(dnsdiag string) string {
	return `
.:{{DNS}} {
    bind 127.0.0.1
    prometheus 127.0.0.1:{{PROM}}
    ` + dnsdiag + `
    template IN A raw.test {
        answer "{{ .Name }} 60 IN A 192.0.2.20"
    }
    template IN AAAA raw.test {
        answer "{{ .Name }} 60 IN AAAA 2001:db8::20"
    }
}
`
}

// ---------------------------------------------------------------------------
// Real glibc in a private namespace

// glibcCorefile serves 127.0.0.1:53 as a cluster DNS does: cluster.local
// is NXDOMAIN (no such Service), the rest is forwarded to an upstream
// block that answers A and AAAA of example.com.
func glibcCorefile(dnsdiag, extra string) string {
	return `
.:{{DNS}} {
    bind 127.0.0.1
    prometheus 127.0.0.1:{{PROM}}
    ` + dnsdiag + `
    ` + extra + `
    template IN ANY cluster.local {
        rcode NXDOMAIN
        authority "cluster.local. 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 30"
    }
    forward . 127.0.0.1:{{UP}}
}
.:{{UP}} {
    bind 127.0.0.1
    template IN A example.com {
        answer "{{ .Name }} 60 IN A 192.0.2.10"
    }
    template IN AAAA example.com {
        answer "{{ .Name }} 60 IN AAAA 2001:db8::10"
    }
}
`
}

var port53 = map[string]int{"DNS": 53}

// getentExample resolves www.example.com (or its FQDN) with glibc and checks
// it got both addresses.
func getentExample(t *testing.T, name string, want ...string) {
	t.Helper()
	out, code := Getent(t, 20*time.Second, "ahosts", name)
	if code != 0 {
		t.Fatalf("getent ahosts %s: exit %d:\n%s", name, code, out)
	}
	for _, w := range want {
		if !strings.Contains(out, w+" ") {
			t.Fatalf("getent ahosts %s: no %s in:\n%s", name, w, out)
		}
	}
}

// TestHintsGlibcSearchWalk: getaddrinfo of www.example.com with ndots:5
// walks the pod's three search suffixes first; each candidate is an A and
// an AAAA (one socket, one sendmmsg), answered NXDOMAIN, then the bare
// name is answered. The detector counts each candidate once, A and AAAA
// alike, for the first final answer to end: Count 6 (3 suffixes x 2 types)
// on one of the two final sessions, none on the other. By default that is
// counted, not logged; `hints all` logs it.
func TestHintsGlibcSearchWalk(t *testing.T) {
	t.Parallel()
	if !InNetns(t, podResolvConf) {
		return
	}
	const final = "www.example.com."
	isFinal := func(l Line) bool { return l.QName == final }
	walked := func(l Line) bool { return strings.HasPrefix(l.QName, "www.example.com.") }
	const sessions = 8 // 3 candidates and the final name, A and AAAA each

	// The default policy: counted, not logged.
	s := Start(t, glibcCorefile("dnsdiag", ""), port53)
	getentExample(t, "www.example.com", "192.0.2.10", "2001:db8::10")
	wantHintCounts(t, s, "DNS", map[hints.Code]float64{hints.SearchExpansion: 1})
	ss := sessionsCounted(t, s, "DNS", sessions)
	if n := promSum(ss, "coredns_dnsdiag_sessions_total", map[string]string{"server": s.ServerLabel("DNS")}); n != sessions {
		t.Fatalf("%v sessions, want %d (getaddrinfo's walk): %s", n, sessions, promDnsdiag(ss))
	}
	// Every session was counted before the policy passed on it.
	if n := promSum(ss, "coredns_dnsdiag_log_suppressed_total", map[string]string{"server": s.ServerLabel("DNS"), "reason": "policy"}); n != sessions {
		t.Errorf("log_suppressed_total{reason=policy} = %v, want %d: the search_expansion session must not be logged by default", n, sessions)
	}
	if ls := s.LinesWhere(walked); len(ls) != 0 {
		t.Fatalf("default policy: %d lines of the walk, want none (search_expansion is counted, not logged); first: %s", len(ls), ls[0].Raw)
	}
	s.Stop()

	// hints all: the final session carrying the finding is logged.
	s = Start(t, glibcCorefile("dnsdiag {\n        hints all\n    }", ""), port53)
	getentExample(t, "www.example.com", "192.0.2.10", "2001:db8::10")
	wantHintCounts(t, s, "DNS", map[hints.Code]float64{hints.SearchExpansion: 1})
	sessionsCounted(t, s, "DNS", sessions)
	l := s.WaitLine("with search_expansion", isFinal)
	check(t, l, want{Status: "Succeeded", BitMap: 15, Rcode: "NOERROR", Protocol: "udp", QName: final, Upstreams: 1})
	h := mustHints(t, l, hints.SearchExpansion)[0]
	if h.Count != 6 || !slices.Equal(h.Suffixes, podSearch) {
		t.Errorf("search_expansion: Count %d Suffixes %v, want 6 %v\nline: %s", h.Count, h.Suffixes, podSearch, l.Raw)
	}
	logLine(t, "search walk (hints all)", l)
	// The lines are written in session order: by the time the hinted line
	// is out, any other of the walk would be too.
	s.Stop()
	if ls := s.LinesWhere(walked); len(ls) != 1 {
		t.Errorf("hints all: %d lines of the walk, want only the one with the finding", len(ls))
	}
}

// TestHintsGlibcPairResend: acl drops every AAAA. glibc sends A and AAAA
// from one socket, gets only the A answered, and one timeout later resends
// both, same IDs, same port; each resent half carries parallel_a_aaaa with
// Lost none (CoreDNS saw both first copies and left the AAAA unanswered),
// naming the other half's session. glibc then falls back to one socket per
// query: retransmissions from new ports, no pair.
func TestHintsGlibcPairResend(t *testing.T) {
	t.Parallel()
	if !InNetns(t, podResolvConf) {
		return
	}
	const name = "www.example.com."
	var s *Server
	// glibc resends both halves back to back, but on a machine loaded by
	// the other tests CoreDNS may start them further apart than the pair
	// gap; the detector then rightly sees no pair. Such a try tells
	// nothing and is made again, on a new server.
	const tries = 3
	for try := 1; ; try++ {
		s = Start(t, glibcCorefile("dnsdiag", "acl {\n        drop type AAAA\n    }"), port53)
		start := time.Now()
		out, code := Getent(t, 20*time.Second, "ahosts", name)
		elapsed := time.Since(start)
		if !strings.Contains(out, "192.0.2.10 ") || code != 0 {
			t.Fatalf("getent ahosts %s: exit %d, want the A record:\n%s", name, code, out)
		}
		if elapsed < 900*time.Millisecond {
			t.Fatalf("getent took %v: glibc did not wait for the dropped AAAA", elapsed)
		}
		// glibc 2.36 (clients.md): the pair from port P, both resent
		// from P one timeout later, then each from a port of its own:
		// three copies of each, six sessions.
		sessionsCounted(t, s, "DNS", 6)
		// Logged by default: every AAAA (Failed) and the A copies with a hint.
		ls := s.WaitLines("of the AAAA copies and the resent A copies", 5, func(l Line) bool { return l.QName == name })
		gap := resendGap(t, ls)
		if gap < hints.DefaultPairGap {
			break
		}
		s.Stop()
		if try == tries {
			t.Fatalf("in %d tries CoreDNS never started glibc's resent halves within %v of each other (last %v)", tries, hints.DefaultPairGap, gap)
		}
		t.Logf("try %d: the resent halves started %v apart, more than the pair gap: again", try, gap)
	}
	// The A copies after the first and every AAAA copy after the first are
	// retransmissions; the resend from P is the pair, both halves.
	wantHintCounts(t, s, "DNS", map[hints.Code]float64{hints.RetransmitAfterAnswer: 2, hints.RetransmitUnanswered: 2, hints.ParallelAAAAA: 2})
	s.Stop()
	var as, aaaas []Line
	for _, l := range byTime(t, s.LinesWhere(func(l Line) bool { return l.QName == name })) {
		logLine(t, "glibc pair resend ("+l.QType+")", l)
		switch l.QType {
		case "A":
			check(t, l, want{Status: "Succeeded", BitMap: 15, Rcode: "NOERROR", Protocol: "udp", Upstreams: 1})
			as = append(as, l)
		case "AAAA":
			check(t, l, want{Status: "Failed", BitMap: 1, Rcode: "null", Protocol: "udp", Types: []string{cq}, Upstreams: 0})
			aaaas = append(aaaas, l)
		}
	}
	if len(as) != 2 || len(aaaas) != 3 {
		t.Fatalf("%d A and %d AAAA lines, want 2 (the resent copies) and 3", len(as), len(aaaas))
	}
	for _, ls := range [][]Line{as, aaaas} {
		for _, l := range ls {
			if dnsID(t, l) != dnsID(t, ls[0]) {
				t.Fatalf("glibc resent %s with DNS ID %d, then %d: want one ID per type", l.QType, dnsID(t, ls[0]), dnsID(t, l))
			}
		}
	}
	a2, a3, aaaa1, aaaa2, aaaa3 := as[0], as[1], aaaas[0], aaaas[1], aaaas[2]
	p := port(t, aaaa1.Client)
	if port(t, a2.Client) != p || port(t, aaaa2.Client) != p || port(t, a3.Client) == p || port(t, aaaa3.Client) == p || a3.Client == aaaa3.Client {
		t.Fatalf("ports: AAAA %s %s %s, A %s %s: want the pair and its resend from one port, then one port each",
			aaaa1.Client, aaaa2.Client, aaaa3.Client, a2.Client, a3.Client)
	}

	mustHints(t, aaaa1)
	// The resend: both halves carry the pair, Lost none, naming each other.
	hs := mustHints(t, a2, hints.RetransmitAfterAnswer, hints.ParallelAAAAA)
	if h := hs[0]; h.EarlierSession == 0 || h.EarlierSession == a2.Session || !isBool(h.SamePort, true) || h.EarlierRcode != "NOERROR" || !inMs(h.AgoMs, 500, 2000) {
		t.Errorf("A resent: retransmit_after_answer %+v (AgoMs %v), want the first A's session, SamePort, NOERROR, about 1 s (timeout:1)\nline: %s", h, msOf(h.AgoMs), a2.Raw)
	}
	if h := hs[1]; h.Lost != hints.LostNone || h.OtherSession != aaaa2.Session {
		t.Errorf("A resent: parallel_a_aaaa Lost %q OtherSession %d, want none %d\nline: %s", h.Lost, h.OtherSession, aaaa2.Session, a2.Raw)
	}
	hs = mustHints(t, aaaa2, hints.RetransmitUnanswered, hints.ParallelAAAAA)
	if h := hs[0]; h.EarlierSession != aaaa1.Session || !isBool(h.SamePort, true) || !isBool(h.InFlight, false) || h.Waiting != hints.WaitingPlugin ||
		h.Attempts == nil || *h.Attempts != 0 || h.Upstream != "" {
		t.Errorf("AAAA resent: retransmit_unanswered %+v, want EarlierSession %d SamePort true InFlight false Waiting plugin Attempts 0, no Upstream\nline: %s", h, aaaa1.Session, aaaa2.Raw)
	}
	if h := hs[1]; h.Lost != hints.LostNone || h.OtherSession != a2.Session {
		t.Errorf("AAAA resent: parallel_a_aaaa Lost %q OtherSession %d, want none %d\nline: %s", h.Lost, h.OtherSession, a2.Session, aaaa2.Raw)
	}
	// The fallback, one socket per query: retransmissions, no pair.
	if h := mustHints(t, a3, hints.RetransmitAfterAnswer)[0]; h.EarlierSession != a2.Session || !isBool(h.SamePort, false) {
		t.Errorf("A from its own socket: %+v, want EarlierSession %d SamePort false\nline: %s", h, a2.Session, a3.Raw)
	}
	if h := mustHints(t, aaaa3, hints.RetransmitUnanswered)[0]; h.EarlierSession != aaaa2.Session || !isBool(h.SamePort, false) || h.Waiting != hints.WaitingPlugin {
		t.Errorf("AAAA from its own socket: %+v, want EarlierSession %d SamePort false Waiting plugin\nline: %s", h, aaaa2.Session, aaaa3.Raw)
	}
}

// resendGap is how far apart CoreDNS started glibc's resent A and AAAA (the
// first logged A and the second AAAA, by time) among lines ls.
func resendGap(t *testing.T, ls []Line) time.Duration {
	t.Helper()
	var as, aaaas []Line
	for _, l := range byTime(t, ls) {
		switch l.QType {
		case "A":
			as = append(as, l)
		case "AAAA":
			aaaas = append(aaaas, l)
		}
	}
	if len(as) < 1 || len(aaaas) < 2 {
		t.Fatalf("%d A and %d AAAA lines, want at least 1 and 2", len(as), len(aaaas))
	}
	gap := lineTime(t, as[0]).Sub(lineTime(t, aaaas[1]))
	return max(gap, -gap)
}

// ---------------------------------------------------------------------------
// Raw packets

// TestHintsRetransmitAfterAnswer: an A answered, then the same bytes again
// from the same port (the answer was lost on the way back).
func TestHintsRetransmitAfterAnswer(t *testing.T) {
	t.Parallel()
	s := Start(t, rawCorefile(logAll), nil)
	c := newRawUDP(t, s.Addr("DNS"))
	m, q := rawQuery(t, 0x4a11, "again.raw.test.", dns.TypeA)

	c.send(q)
	first := c.recv()
	unpack(t, m, first, dns.RcodeSuccess)
	answered := time.Now()
	time.Sleep(300 * time.Millisecond)
	gap := time.Since(answered)
	c.send(q)
	second := c.recv()
	if string(second) != string(first) {
		t.Errorf("the resent query got another answer:\n%x\n%x", first, second)
	}

	r := Result{Query: m, Local: c.Local()}
	ls := byTime(t, s.WaitLines("of both copies", 2, func(l Line) bool { return isClient(l, r) }))
	for _, l := range ls {
		check(t, l, want{Status: "Succeeded", BitMap: 3, Rcode: "NOERROR", Client: c.Local(), Protocol: "udp", QName: "again.raw.test.", QType: "A", Types: legs3})
	}
	mustHints(t, ls[0])
	h := mustHints(t, ls[1], hints.RetransmitAfterAnswer)[0]
	lo, hi := float64(gap.Milliseconds())-50, float64(gap.Milliseconds())+1000
	if h.EarlierSession != ls[0].Session || !isBool(h.SamePort, true) || h.EarlierRcode != "NOERROR" || !inMs(h.AgoMs, lo, hi) {
		t.Errorf("retransmit_after_answer: EarlierSession %d SamePort %v EarlierRcode %q AgoMs %v, want %d true NOERROR within [%v, %v]\nline: %s",
			h.EarlierSession, h.SamePort != nil && *h.SamePort, h.EarlierRcode, msOf(h.AgoMs), ls[0].Session, lo, hi, ls[1].Raw)
	}
	logLine(t, "retransmit after answer", ls[1])
	wantHintCounts(t, s, "DNS", map[hints.Code]float64{hints.RetransmitAfterAnswer: 1})
}

// TestHintsPairLostQuery: the conntrack race as CoreDNS sees it. An A
// alone (its AAAA was dropped before CoreDNS), then one timeout later
// glibc's resend of both from the same port: the same A bytes and the
// first AAAA CoreDNS ever sees.
func TestHintsPairLostQuery(t *testing.T) {
	t.Parallel()
	s := Start(t, rawCorefile(logAll), nil)
	c := newRawUDP(t, s.Addr("DNS"))
	// The two halves are sent back to back, but on a machine loaded by the
	// other tests CoreDNS may start them further apart than the pair gap;
	// the detector then rightly sees no pair. Such a try tells nothing and
	// is made again, under a new name.
	const tries = 3
	for try := 1; ; try++ {
		as, aaaa, gap := pairTry(t, s, c, fmt.Sprintf("race%d.raw.test.", try))
		if gap >= hints.DefaultPairGap {
			if try == tries {
				t.Fatalf("in %d tries CoreDNS never started the two halves within %v of each other (last %v)", tries, hints.DefaultPairGap, gap)
			}
			t.Logf("try %d: the halves started %v apart, more than the pair gap: again", try, gap)
			continue
		}
		mustHints(t, aaaa)
		mustHints(t, as[0])
		hs := mustHints(t, as[1], hints.RetransmitAfterAnswer, hints.ParallelAAAAA)
		if h := hs[0]; h.EarlierSession != as[0].Session || !isBool(h.SamePort, true) || h.EarlierRcode != "NOERROR" {
			t.Errorf("retransmit_after_answer: EarlierSession %d SamePort %v EarlierRcode %q, want %d true NOERROR\nline: %s",
				h.EarlierSession, h.SamePort != nil && *h.SamePort, h.EarlierRcode, as[0].Session, as[1].Raw)
		}
		if h := hs[1]; h.Lost != hints.LostQuery || h.OtherSession != aaaa.Session {
			t.Errorf("parallel_a_aaaa: Lost %q OtherSession %d, want %q %d (the AAAA's session)\nline: %s",
				h.Lost, h.OtherSession, hints.LostQuery, aaaa.Session, as[1].Raw)
		}
		logLine(t, "pair, lost query", as[1])
		// Every try's resent A was a retransmission; only this one's was half of a pair.
		wantHintCounts(t, s, "DNS", map[hints.Code]float64{hints.RetransmitAfterAnswer: float64(try), hints.ParallelAAAAA: 1})
		return
	}
}

// pairTry sends an A query for name and, a second later, sends it again
// together with its AAAA, from one socket as glibc does: the first A's
// answer was received, so the resent A is a retransmission whose other half
// CoreDNS did see. It returns the lines of both A copies in order, the
// AAAA's line, and how far apart CoreDNS started the resent A and the AAAA.
func pairTry(t *testing.T, s *Server, c *rawUDP, name string) ([]Line, Line, time.Duration) {
	t.Helper()
	ma, qa := rawQuery(t, 0x1111, name, dns.TypeA)
	m4, q4 := rawQuery(t, 0x2222, name, dns.TypeAAAA)

	c.send(qa)
	unpack(t, ma, c.recv(), dns.RcodeSuccess)
	time.Sleep(time.Second)
	c.send(qa)
	c.send(q4)
	for range 2 {
		if r := new(dns.Msg); r.Unpack(c.recv()) != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("resend: bad answer %v", r)
		}
	}

	ra, r4 := Result{Query: ma, Local: c.Local()}, Result{Query: m4, Local: c.Local()}
	as := byTime(t, s.WaitLines("of both A copies", 2, func(l Line) bool { return isClient(l, ra) }))
	aaaa := s.WaitClient(r4)
	check(t, aaaa, want{Status: "Succeeded", BitMap: 3, Rcode: "NOERROR", QType: "AAAA", Types: legs3})
	started := byTime(t, []Line{as[1], aaaa})
	return as, aaaa, lineTime(t, started[1]).Sub(lineTime(t, started[0]))
}

// forwardToUp is a client block with the default policy forwarding
// everything to {{UP}}.
const forwardToUp = `
.:{{DNS}} {
    bind 127.0.0.1
    prometheus 127.0.0.1:{{PROM}}
    dnsdiag
    forward . 127.0.0.1:{{UP}}
}
`

// TestHintsDigRetransmitUnanswered: dig +tries=2 +time=1 against an
// upstream that never answers: its second try, same ID from a new port,
// arrives while the first is still waiting for the upstream.
func TestHintsDigRetransmitUnanswered(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("dig"); err != nil {
		t.Fatalf("dig is not installed (make e2e-tools installs bind9-dnsutils): %v", err)
	}
	s := Start(t, forwardToUp+`
.:{{UP}} {
    bind 127.0.0.1
    erratic {
        drop 1
    }
}
`, nil)
	const name = "slow.test."
	out, err := exec.Command("dig", "-p", fmt.Sprint(s.Port("DNS")), "@127.0.0.1", "+tries=2", "+time=1", name, "A").CombinedOutput()
	if code := exitCode(err); code != 9 {
		t.Fatalf("dig: exit %d (%v), want 9 (no reply):\n%s", code, err, out)
	}

	ls := byTime(t, s.WaitLines("of both tries", 2, func(l Line) bool { return l.QName == name }))
	if len(ls) != 2 {
		t.Fatalf("%d lines of %s, want dig's 2 tries", len(ls), name)
	}
	for _, l := range ls {
		check(t, l, want{Status: "Failed", BitMap: 5, Protocol: "udp", QType: "A", Upstreams: -1})
	}
	if dnsID(t, ls[0]) != dnsID(t, ls[1]) || port(t, ls[0].Client) == port(t, ls[1].Client) {
		t.Fatalf("dig's tries: %s id %d and %s id %d, want the same ID from two ports", ls[0].Client, dnsID(t, ls[0]), ls[1].Client, dnsID(t, ls[1]))
	}
	mustHints(t, ls[0])
	h := mustHints(t, ls[1], hints.RetransmitUnanswered)[0]
	attempts := min(len(ls[0].Upstreams), 8)
	if h.EarlierSession != ls[0].Session || !isBool(h.SamePort, false) || !isBool(h.InFlight, true) || !inMs(h.RunningMs, 900, 2500) ||
		h.Waiting != hints.WaitingUpstream || h.Attempts == nil || *h.Attempts != attempts || attempts == 0 || h.Upstream != s.Addr("UP") {
		t.Errorf("retransmit_unanswered: got %+v (RunningMs %v), want EarlierSession %d SamePort false InFlight true RunningMs in [900, 2500] Waiting upstream Attempts %d Upstream %s\nline: %s",
			h, msOf(h.RunningMs), ls[0].Session, attempts, s.Addr("UP"), ls[1].Raw)
	}
	logLine(t, "dig retransmit unanswered", ls[1])
	wantHintCounts(t, s, "DNS", map[hints.Code]float64{hints.RetransmitUnanswered: 1})
}

// TestHintsDistinctLookups: 200 lookups of one name, A and AAAA, each with
// its own ID from its own socket, 8 at a time: distinct lookups, never
// retransmissions or a resent pair, however close together.
func TestHintsDistinctLookups(t *testing.T) {
	t.Parallel()
	s := Start(t, rawCorefile(logAllUnlimited), nil)
	const n, name = 200, "many.raw.test."
	results := Concurrently(n, 8, func(i int) Result {
		m := new(dns.Msg)
		m.SetQuestion(name, []uint16{dns.TypeA, dns.TypeAAAA}[i%2])
		m.Id = uint16(1000 + i)
		return Exchange(t, "udp", s.Addr("DNS"), m, qTimeout)
	})
	for _, r := range results {
		r.MustAnswer(t, dns.RcodeSuccess)
	}
	ls := s.WaitLines("of every lookup", n, func(l Line) bool { return l.QName == name })
	if len(ls) != n {
		t.Fatalf("%d lines, want %d", len(ls), n)
	}
	for _, l := range ls {
		mustHints(t, l)
	}
	wantHintCounts(t, s, "DNS", map[hints.Code]float64{})
	t.Logf("distinct lookups: %d lines, none with a hint; e.g. %s", len(ls), ls[0].Summary())
}

// ---------------------------------------------------------------------------
// Truncation

// bigA is 40 A records: 665 bytes, more than a client without EDNS takes.
var bigA = func() string {
	var b strings.Builder
	for i := range 40 {
		fmt.Fprintf(&b, "        answer \"{{ .Name }} 60 IN A 192.0.2.%d\"\n", i+1)
	}
	return b.String()
}()

// TestHintsTruncated: a truncated UDP answer never retried over TCP gets
// truncated_no_tcp_retry, its line written when the 3 s window closes; the
// same answer retried over TCP (same ID, as dig and glibc do) gets nothing,
// on either line.
func TestHintsTruncated(t *testing.T) {
	t.Parallel()
	s := Start(t, `
.:{{DNS}} {
    bind 127.0.0.1
    prometheus 127.0.0.1:{{PROM}}
    `+logAll+`
    template IN A big.test {
`+bigA+`
    }
}
`, nil)
	udpOnly, retried := "udp.big.test.", "tcp.big.test."
	askUDP := func(id uint16, name string) (Result, []byte, time.Time) {
		m, q := rawQuery(t, id, name, dns.TypeA)
		c := newRawUDP(t, s.Addr("DNS"))
		c.send(q)
		b := c.recv()
		if r := unpack(t, m, b, dns.RcodeSuccess); !r.Truncated || len(b) > 512 {
			t.Fatalf("%s over UDP: %d bytes, TC %v, want a truncated answer within 512 bytes", name, len(b), r.Truncated)
		}
		return Result{Query: m, Local: c.Local()}, q, time.Now()
	}

	ru, _, answeredU := askUDP(0x7001, udpOnly)
	rt, q, answeredT := askUDP(0x7002, retried)
	full := new(dns.Msg)
	if err := full.Unpack(RawExchange(t, "tcp", s.Addr("DNS"), q, qTimeout)); err != nil || full.Truncated || len(full.Answer) != 40 {
		t.Fatalf("%s over TCP: %v truncated %v, %d answers, want 40", retried, err, full.Truncated, len(full.Answer))
	}

	// Without TCP: the line comes when the window closes.
	l := s.WaitClient(ru)
	if waited := time.Since(answeredU); waited < 2900*time.Millisecond {
		t.Errorf("the truncated session's line came %v after its answer, want after the 3 s window", waited)
	}
	check(t, l, want{Status: "Succeeded", BitMap: 3, Rcode: "NOERROR", Protocol: "udp", QName: udpOnly, Types: legs3})
	if h := mustHints(t, l, hints.TruncatedNoTCPRetry)[0]; h.WindowMs == nil || *h.WindowMs != 3000 {
		t.Errorf("truncated_no_tcp_retry: WindowMs %v, want 3000\nline: %s", msOf(h.WindowMs), l.Raw)
	}
	logLine(t, "truncated, no TCP retry", l)

	// With TCP: past the window (and a release tick), neither line has it.
	time.Sleep(time.Until(answeredT.Add(4 * time.Second)))
	lu := s.WaitClient(rt)
	mustHints(t, lu)
	lt := s.WaitLine("of the TCP retry", func(l Line) bool { return l.QName == retried && l.Protocol == "tcp" })
	check(t, lt, want{Status: "Succeeded", BitMap: 3, Rcode: "NOERROR", Protocol: "tcp", Types: legs3})
	mustHints(t, lt)
	logLine(t, "truncated, retried over TCP (UDP line)", lu)
	wantHintCounts(t, s, "DNS", map[hints.Code]float64{hints.TruncatedNoTCPRetry: 1})
}

// ---------------------------------------------------------------------------
// An upstream that does not take TCP

// udpOnlyUpstream answers every question over UDP on a port where nothing
// listens on TCP (freePort checked both were free): TCP is refused.
func udpOnlyUpstream(t *testing.T) int {
	t.Helper()
	p := freePort(t)
	pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", fmt.Sprint(p)))
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if q := r.Question; len(q) == 1 && q[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 30)})
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return p
}

// TestHintsUpstreamTCPFailed: forward follows a TCP client's protocol to an
// upstream that only takes UDP. First with nothing known of the upstream
// over UDP (Evidence client_tcp), then after it answered over UDP
// (udp_answered).
func TestHintsUpstreamTCPFailed(t *testing.T) {
	t.Parallel()
	up := udpOnlyUpstream(t)
	s := Start(t, forwardToUp, map[string]int{"UP": up})
	upstream := s.Addr("UP")
	failedTCP := func(name string) (Line, hint) {
		t.Helper()
		r := Query(t, "tcp", s.Addr("DNS"), name, dns.TypeA, 10*time.Second)
		r.MustAnswer(t, dns.RcodeServerFailure)
		l := s.WaitClient(r)
		check(t, l, want{Status: "Failed", BitMap: 5, Rcode: "SERVFAIL", Protocol: "tcp", Upstreams: -1})
		if len(l.Upstreams) == 0 {
			t.Fatalf("no upstream attempt: %s", l.Raw)
		}
		for i := range l.Upstreams {
			checkUpstream(t, l, i, upstream, "tcp", "null")
		}
		h := mustHints(t, l, hints.UpstreamTCPFailed)[0]
		if h.Upstream != upstream {
			t.Errorf("upstream_tcp_failed: Upstream %q, want %s\nline: %s", h.Upstream, upstream, l.Raw)
		}
		return l, h
	}

	l, h := failedTCP("first.udponly.test.")
	if h.Evidence != hints.EvidenceClientTCP || h.UDPAnsweredAgoMs != nil {
		t.Errorf("upstream_tcp_failed: Evidence %q UDPAnsweredAgoMs %v, want client_tcp and none\nline: %s", h.Evidence, msOf(h.UDPAnsweredAgoMs), l.Raw)
	}
	logLine(t, "upstream TCP failed, client over TCP", l)

	udpAsked := time.Now()
	mustAnswerA(t, Query(t, "udp", s.Addr("DNS"), "second.udponly.test.", dns.TypeA, qTimeout), "192.0.2.30")
	l, h = failedTCP("third.udponly.test.")
	if hi := float64(time.Since(udpAsked).Milliseconds()) + 1; h.Evidence != hints.EvidenceUDPAnswered || !inMs(h.UDPAnsweredAgoMs, 0, hi) {
		t.Errorf("upstream_tcp_failed: Evidence %q UDPAnsweredAgoMs %v, want udp_answered within [0, %v]\nline: %s", h.Evidence, msOf(h.UDPAnsweredAgoMs), hi, l.Raw)
	}
	logLine(t, "upstream TCP failed after UDP answered", l)
	wantHintCounts(t, s, "DNS", map[hints.Code]float64{hints.UpstreamTCPFailed: 2})
}
