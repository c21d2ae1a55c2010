package e2e

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dnsdiag/dnsdiag/plugin/dnsdiagtest"
	"github.com/miekg/dns"
)

const (
	cq = "CLIENT_QUERY"
	cr = "CLIENT_RESPONSE"
	fq = "FORWARDER_QUERY"
	fr = "FORWARDER_RESPONSE"
)

var (
	legs15 = []string{cq, fq, fr, cr}
	legs3  = []string{cq, cr}
)

const qTimeout = 3 * time.Second

// forwardCorefile is a client-facing block on {{PORT}} with dnsdiag (body
// lines extra, then forward to {{UP}}) and the upstream block.
func forwardCorefile(dnsdiag, extra, forwardOpts string) string {
	f := "forward . 127.0.0.1:{{UP}}"
	if forwardOpts != "" {
		f += " {\n        " + forwardOpts + "\n    }"
	}
	return `
.:{{PORT}} {
    bind 127.0.0.1
    ` + dnsdiag + `
    ` + extra + `
    ` + f + `
}
` + richUpstream
}

// silentCorefile is a client-facing block on {{PORT}} with dnsdiag and a
// cache, forwarding to an upstream block on {{UP}} that never answers.
func silentCorefile(dnsdiag string) string {
	return `
.:{{PORT}} {
    bind 127.0.0.1
    ` + dnsdiag + `
    cache 30
    forward . 127.0.0.1:{{UP}}
}
.:{{UP}} {
    bind 127.0.0.1
    erratic {
        drop 1
    }
}
`
}

const logAll = "dnsdiag {\n        log all\n    }"

// logAllUnlimited logs every session without the default rate limit (20
// lines/s, burst 40), for tests that log more lines than that.
const logAllUnlimited = "dnsdiag {\n        log all\n        rate 0\n    }"

func checkUpstream(t *testing.T, l Line, i int, addr, proto, rcode string) {
	t.Helper()
	if i < 0 {
		i += len(l.Upstreams)
	}
	if i < 0 || i >= len(l.Upstreams) {
		t.Errorf("no upstream attempt %d in %s", i, l.Raw)
		return
	}
	u := l.Upstreams[i]
	if u.Address != addr || (proto != "" && u.Protocol != proto) || dnsdiagtest.RcodeString(u.Rcode) != rcode {
		t.Errorf("upstream attempt %d: got %s %s %s, want %s %s %s\nline: %s", i, u.Address, u.Protocol, dnsdiagtest.RcodeString(u.Rcode), addr, proto, rcode, l.Raw)
	}
	if u.DurationMs < 0 {
		t.Errorf("upstream attempt %d: negative duration %v", i, u.DurationMs)
	}
}

func TestSessionCacheMissThenHit(t *testing.T) {
	t.Parallel()
	s := Start(t, forwardCorefile(logAll, "cache 30", ""), nil)

	r1 := Query(t, "udp", s.Addr("PORT"), "www.ok.test", dns.TypeA, qTimeout)
	mustAnswerA(t, r1, "192.0.2.1")
	l1 := s.WaitClient(r1)
	check(t, l1, want{Status: "Succeeded", BitMap: 15, Rcode: "NOERROR", Server: s.ServerLabel("PORT"), Client: r1.Local,
		Protocol: "udp", QName: "www.ok.test.", QType: "A", Types: legs15, ServerGen: ptr(false), Upstreams: 1})
	checkUpstream(t, l1, 0, s.Addr("UP"), "udp", "NOERROR")
	checkClientLegs(t, l1, r1)
	if l1.Cause != "" || l1.Error != "" {
		t.Errorf("a plain success has no Cause/Error: %s", l1.Raw)
	}
	// The forwarder legs go from CoreDNS to the upstream.
	for _, m := range l1.Messages[1:3] {
		if m.ResponseAddress != s.Addr("UP") || m.Protocol != "udp" {
			t.Errorf("%s leg: ResponseAddress %s Protocol %s, want %s udp", m.Type, m.ResponseAddress, m.Protocol, s.Addr("UP"))
		}
	}

	r2 := Query(t, "udp", s.Addr("PORT"), "www.ok.test", dns.TypeA, qTimeout)
	mustAnswerA(t, r2, "192.0.2.1")
	l2 := s.WaitClient(r2)
	check(t, l2, want{Status: "Succeeded", BitMap: 3, Rcode: "NOERROR", Client: r2.Local, Protocol: "udp",
		QName: "www.ok.test.", QType: "A", Types: legs3, ServerGen: ptr(false), Upstreams: 0})
	checkClientLegs(t, l2, r2)
	if l2.Session <= l1.Session {
		t.Errorf("session ids must increase: %d then %d", l1.Session, l2.Session)
	}
	if n := len(s.Lines()); n != 2 {
		t.Errorf("two queries, %d lines", n)
	}
}

func TestSessionHostsAnswer(t *testing.T) {
	t.Parallel()
	s := Start(t, `
.:{{PORT}} {
    bind 127.0.0.1
    `+logAll+`
    hosts {
        192.0.2.10 h.test
        fallthrough
    }
    forward . 127.0.0.1:{{UP}}
}
`+richUpstream, nil)
	r := Query(t, "udp", s.Addr("PORT"), "h.test", dns.TypeA, qTimeout)
	mustAnswerA(t, r, "192.0.2.10")
	l := s.WaitClient(r)
	check(t, l, want{Status: "Succeeded", BitMap: 3, Rcode: "NOERROR", Server: s.ServerLabel("PORT"), Client: r.Local,
		Protocol: "udp", QName: "h.test.", QType: "A", Types: legs3, ServerGen: ptr(false), Upstreams: 0})
	checkClientLegs(t, l, r)
}

func TestSessionTemplateAnswer(t *testing.T) {
	t.Parallel()
	s := Start(t, `
.:{{PORT}} {
    bind 127.0.0.1
    `+logAll+`
    template IN AAAA t.test {
        answer "{{ .Name }} 60 IN AAAA 2001:db8::7"
    }
}
`, nil)
	r := Query(t, "udp", s.Addr("PORT"), "x.t.test", dns.TypeAAAA, qTimeout)
	m := r.MustAnswer(t, dns.RcodeSuccess)
	if len(m.Answer) != 1 || m.Answer[0].(*dns.AAAA).AAAA.String() != "2001:db8::7" {
		t.Fatalf("answer %v, want 2001:db8::7", m.Answer)
	}
	l := s.WaitClient(r)
	check(t, l, want{Status: "Succeeded", BitMap: 3, Rcode: "NOERROR", Client: r.Local, Protocol: "udp",
		QName: "x.t.test.", QType: "AAAA", Types: legs3, ServerGen: ptr(false), Upstreams: 0})
	checkClientLegs(t, l, r)
}

func TestSessionUpstreamNXDOMAIN(t *testing.T) {
	t.Parallel()
	s := Start(t, forwardCorefile(logAll, "", ""), nil)
	r := Query(t, "udp", s.Addr("PORT"), "no.nx.test", dns.TypeA, qTimeout)
	r.MustAnswer(t, dns.RcodeNameError)
	l := s.WaitClient(r)
	check(t, l, want{Status: "Succeeded", BitMap: 15, Rcode: "NXDOMAIN", Client: r.Local, Protocol: "udp",
		QName: "no.nx.test.", QType: "A", Types: legs15, ServerGen: ptr(false), Upstreams: 1})
	checkUpstream(t, l, 0, s.Addr("UP"), "udp", "NXDOMAIN")
	checkClientLegs(t, l, r)
}

func TestSessionUpstreamSERVFAIL(t *testing.T) {
	t.Parallel()
	s := Start(t, forwardCorefile(logAll, "", ""), nil)
	r := Query(t, "udp", s.Addr("PORT"), "x.fail.test", dns.TypeA, qTimeout)
	r.MustAnswer(t, dns.RcodeServerFailure)
	l := s.WaitClient(r)
	check(t, l, want{Status: "Failed", BitMap: 15, Rcode: "SERVFAIL", Client: r.Local, Protocol: "udp",
		QName: "x.fail.test.", QType: "A", Types: legs15, ServerGen: ptr(false), Upstreams: 1})
	checkUpstream(t, l, 0, s.Addr("UP"), "udp", "SERVFAIL")
	checkClientLegs(t, l, r)
	if !strings.Contains(l.Cause, "SERVFAIL") || !strings.Contains(l.Cause, "upstream") {
		t.Errorf("Cause %q should say the upstream answered SERVFAIL", l.Cause)
	}
}

// An upstream that never answers: forward gives up after its 5 s budget and
// returns SERVFAIL without writing it; the server writes it. A second query
// within the cache's servfail TTL is answered from the cache.
func TestSessionUpstreamSilent(t *testing.T) {
	t.Parallel()
	s := Start(t, silentCorefile(logAll), nil)
	start := time.Now()
	r := Query(t, "udp", s.Addr("PORT"), "silent.test", dns.TypeA, 10*time.Second)
	r.MustAnswer(t, dns.RcodeServerFailure)
	took := time.Since(start)
	l := s.WaitClient(r)
	check(t, l, want{Status: "Failed", BitMap: 5, Rcode: "SERVFAIL", Client: r.Local, Protocol: "udp",
		QName: "silent.test.", QType: "A", ServerGen: ptr(true), Upstreams: -1})
	if len(l.Upstreams) < 1 {
		t.Errorf("want at least one upstream attempt: %s", l.Raw)
	}
	for i := range l.Upstreams {
		checkUpstream(t, l, i, s.Addr("UP"), "udp", "null")
	}
	if ts := l.Types(); ts[len(ts)-1] != fq || l.Count(cr) != 0 || l.Count(fr) != 0 {
		t.Errorf("legs %v: want the client query and forwarder queries only", ts)
	}
	if !strings.Contains(l.Cause, "did not answer") {
		t.Errorf("Cause %q should say the upstream did not answer", l.Cause)
	}
	if l.DurationMs < 1000 || l.DurationMs > float64(took.Milliseconds())+50 {
		t.Errorf("DurationMs %v: want forward's seconds of waiting, at most the client's %v", l.DurationMs, took)
	}

	r2 := Query(t, "udp", s.Addr("PORT"), "silent.test", dns.TypeA, qTimeout)
	r2.MustAnswer(t, dns.RcodeServerFailure)
	l2 := s.WaitClient(r2)
	check(t, l2, want{Status: "Failed", BitMap: 3, Rcode: "SERVFAIL", Client: r2.Local, Types: legs3, ServerGen: ptr(false), Upstreams: 0})
	if l2.Cause == "" {
		t.Errorf("a failed session needs a Cause: %s", l2.Raw)
	}
}

func TestSessionACLDrop(t *testing.T) {
	t.Parallel()
	s := Start(t, `
.:{{PORT}} {
    bind 127.0.0.1
    `+logAll+`
    acl drop.test {
        drop
    }
    forward . 127.0.0.1:{{UP}}
}
`+richUpstream, nil)
	r := Query(t, "udp", s.Addr("PORT"), "x.drop.test", dns.TypeA, 700*time.Millisecond)
	if r.Err == nil || r.Msg != nil {
		t.Fatalf("acl drop: want a client timeout, got %v %v", r.Msg, r.Err)
	}
	l := s.WaitClient(r)
	check(t, l, want{Status: "Failed", BitMap: 1, Rcode: "null", Client: r.Local, Protocol: "udp",
		QName: "x.drop.test.", QType: "A", Types: []string{cq}, ServerGen: ptr(false), Upstreams: 0})
	checkClientLegs(t, l, r)
	if !strings.Contains(l.Cause, "no response") {
		t.Errorf("Cause %q should say CoreDNS sent no response", l.Cause)
	}
}

// Two upstreams, the first a closed port: forward tries it, gets connection
// refused, and moves on to the second; both attempts are in one session.
func TestSessionDeadFirstUpstream(t *testing.T) {
	t.Parallel()
	s := Start(t, `
.:{{PORT}} {
    bind 127.0.0.1
    `+logAll+`
    forward . 127.0.0.1:{{DEAD}} 127.0.0.1:{{UP}} {
        policy sequential
    }
}
`+richUpstream, nil)
	r := Query(t, "udp", s.Addr("PORT"), "www.ok.test", dns.TypeA, 8*time.Second)
	mustAnswerA(t, r, "192.0.2.1")
	l := s.WaitClient(r)
	check(t, l, want{Status: "Succeeded", BitMap: 15, Rcode: "NOERROR", Client: r.Local, Protocol: "udp",
		QName: "www.ok.test.", QType: "A", ServerGen: ptr(false), Upstreams: -1})
	if len(l.Upstreams) < 2 {
		t.Fatalf("want at least 2 upstream attempts, got %d: %s", len(l.Upstreams), l.Raw)
	}
	checkUpstream(t, l, 0, s.Addr("DEAD"), "udp", "null")
	checkUpstream(t, l, -1, s.Addr("UP"), "udp", "NOERROR")
	if l.Count(fr) != 1 || l.Count(cr) != 1 {
		t.Errorf("want one forwarder response and one client response: %v", l.Types())
	}
	checkClientLegs(t, l, r)
}

// An upstream reply too big for UDP comes back truncated; with prefer_udp
// forward retries over TCP and the session's upstream attempt is over TCP.
func TestSessionTruncatedRetriedOverTCP(t *testing.T) {
	t.Parallel()
	s := Start(t, forwardCorefile(logAll, "", "prefer_udp"), nil)

	// The client asks over TCP, so it can take the whole answer; forward
	// still goes over UDP first.
	r := Query(t, "tcp", s.Addr("PORT"), "a.big.test", dns.TypeTXT, qTimeout)
	m := r.MustAnswer(t, dns.RcodeSuccess)
	if len(m.Answer) != 10 || m.Truncated {
		t.Fatalf("want all 10 TXT records untruncated, got %d (TC %v)", len(m.Answer), m.Truncated)
	}
	l := s.WaitClient(r)
	check(t, l, want{Status: "Succeeded", BitMap: 15, Rcode: "NOERROR", Client: r.Local, Protocol: "tcp",
		QName: "a.big.test.", QType: "TXT", ServerGen: ptr(false), Upstreams: -1})
	if len(l.Upstreams) < 1 {
		t.Fatalf("no upstream attempt: %s", l.Raw)
	}
	checkUpstream(t, l, -1, s.Addr("UP"), "tcp", "NOERROR")
	checkClientLegs(t, l, r)
	if c := l.Messages[len(l.Messages)-1]; c.Type != cr || c.Header(t).ANCOUNT != 10 {
		t.Errorf("last leg should be the client's 10-record answer: %s", l.Raw)
	}

	// Asked over UDP without EDNS, the client gets a truncated answer:
	// still a success, and the Cause says why the client must retry.
	r2 := Query(t, "udp", s.Addr("PORT"), "b.big.test", dns.TypeTXT, qTimeout)
	m2 := r2.MustAnswer(t, dns.RcodeSuccess)
	if !m2.Truncated {
		t.Fatalf("UDP answer without EDNS should be truncated: %v", m2)
	}
	l2 := s.WaitClient(r2)
	check(t, l2, want{Status: "Succeeded", BitMap: 15, Rcode: "NOERROR", Client: r2.Local, Protocol: "udp",
		QName: "b.big.test.", QType: "TXT", Upstreams: -1})
	checkUpstream(t, l2, -1, s.Addr("UP"), "tcp", "NOERROR")
	checkClientLegs(t, l2, r2)
	if !strings.Contains(l2.Cause, "truncated") {
		t.Errorf("Cause %q should mention the truncation", l2.Cause)
	}
}

// A cache hit close to expiry makes the cache prefetch: the refresh is a
// background session of its own, with forwarder legs only.
func TestSessionPrefetchBackground(t *testing.T) {
	t.Parallel()
	// TTL 5 and 90%: every hit is within the prefetch window.
	s := Start(t, forwardCorefile(logAll, "cache 30 {\n        prefetch 1 1m 90%\n    }", ""), nil)

	r1 := Query(t, "udp", s.Addr("PORT"), "p.short.test", dns.TypeA, qTimeout)
	r1.MustAnswer(t, dns.RcodeSuccess)
	l1 := s.WaitClient(r1)
	check(t, l1, want{Status: "Succeeded", BitMap: 15, Types: legs15, Upstreams: 1})

	r2 := Query(t, "udp", s.Addr("PORT"), "p.short.test", dns.TypeA, qTimeout)
	mustAnswerA(t, r2, "192.0.2.5")
	l2 := s.WaitClient(r2)
	check(t, l2, want{Status: "Succeeded", BitMap: 3, Types: legs3, Upstreams: 0})

	bg := s.WaitLine("background", func(l Line) bool { return l.Background })
	check(t, bg, want{Status: "Succeeded", BitMap: 12, Rcode: "NOERROR", QName: "p.short.test.", QType: "A",
		Types: []string{fq, fr}, Upstreams: 1})
	// cache prefetches over TCP: its prefetch writer's remote address is a
	// *net.TCPAddr (plugin/cache/cache.go prefetchAddr), and forward follows it.
	checkUpstream(t, bg, 0, s.Addr("UP"), "tcp", "NOERROR")
	if bg.ClientSession != 0 || bg.Client != "" {
		t.Errorf("a prefetch belongs to no client session: %s", bg.Raw)
	}
	if bg.Session == l1.Session || bg.Session == l2.Session {
		t.Errorf("background session reuses a client session id: %s", bg.Raw)
	}
	if bg.Server != s.ServerLabel("PORT") {
		t.Errorf("background Server %q, want %q", bg.Server, s.ServerLabel("PORT"))
	}
	// The client sessions did not absorb the refresh's legs.
	for _, l := range s.LinesWhere(func(l Line) bool { return !l.Background }) {
		if l.Session == l2.Session && l.BitMap != 3 {
			t.Errorf("the hit's session changed: %s", l.Raw)
		}
	}
	if n := len(s.LinesWhere(func(l Line) bool { return l.Background })); n != 1 {
		t.Errorf("one prefetch, %d background lines", n)
	}
}

// reloadCorefile answers *.rl.test with addr, no cache, so every query is
// forwarded.
func reloadCorefile(addr, extra string) string {
	return `
.:{{PORT}} {
    bind 127.0.0.1
    ` + logAllUnlimited + `
    ` + extra + `
    forward . 127.0.0.1:{{UP}}
}
.:{{UP}} {
    bind 127.0.0.1
    template IN A rl.test {
        answer "{{ .Name }} 60 IN A ` + addr + `"
    }
}
`
}

// checkReloaded sends n queries and checks each has exactly one line, with
// exactly one forwarder attempt: hooks are neither lost nor duplicated.
func checkReloaded(t *testing.T, s *Server, tag, addr string, n int) {
	t.Helper()
	for i := range n {
		proto := []string{"udp", "tcp"}[i%2]
		name := fmt.Sprintf("q%d.%s.rl.test", i, tag)
		r := Query(t, proto, s.Addr("PORT"), name, dns.TypeA, qTimeout)
		if got := answerA(t, r.MustAnswer(t, dns.RcodeSuccess)); got != addr {
			t.Fatalf("%s: answer %s, want %s (reload not in effect)", name, got, addr)
		}
		l := s.WaitClient(r)
		check(t, l, want{Status: "Succeeded", BitMap: 15, Rcode: "NOERROR", Protocol: proto, QName: name + ".",
			Types: legs15, Upstreams: 1})
		checkUpstream(t, l, 0, s.Addr("UP"), proto, "NOERROR")
		if got := len(s.LinesWhere(func(l Line) bool { return l.QName == name+"." })); got != 1 {
			t.Errorf("%s: %d lines, want 1", name, got)
		}
	}
}

func TestSessionReloadSIGUSR1(t *testing.T) {
	t.Parallel()
	s := Start(t, reloadCorefile("192.0.2.1", ""), nil)
	checkReloaded(t, s, "before", "192.0.2.1", 4)

	// Queries keep flowing while CoreDNS reloads twice; every one that is
	// answered must be logged exactly once, with one attempt.
	var (
		wg       sync.WaitGroup
		stop     = make(chan struct{})
		mu       sync.Mutex
		answered []Result
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			r := Query(t, "udp", s.Addr("PORT"), fmt.Sprintf("c%d.during.rl.test", i), dns.TypeA, time.Second)
			if r.Err == nil && r.Msg != nil && r.Msg.Rcode == dns.RcodeSuccess {
				mu.Lock()
				answered = append(answered, r)
				mu.Unlock()
			}
		}
	}()
	s.WriteCorefile(reloadCorefile("192.0.2.2", ""))
	s.Reload()
	s.WriteCorefile(reloadCorefile("192.0.2.3", ""))
	s.Reload()
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()

	checkReloaded(t, s, "after", "192.0.2.3", 6)

	if len(answered) < 5 {
		t.Errorf("only %d queries answered during the reloads", len(answered))
	}
	during := s.WaitLines("for the queries during the reloads", len(answered), func(l Line) bool {
		return strings.HasSuffix(l.QName, ".during.rl.test.")
	})
	for _, r := range answered {
		n := 0
		for _, l := range during {
			if !isClient(l, r) {
				continue
			}
			n++
			if l.Status != "Succeeded" || l.BitMap != 15 || strings.Join(l.Types(), ",") != strings.Join(legs15, ",") || len(l.Upstreams) != 1 {
				t.Errorf("query during reload: want Succeeded, BitMap 15, one attempt: %s", l.Summary())
			}
		}
		if n != 1 {
			t.Errorf("%s answered during reload: %d lines, want 1", r.Query.Question[0].Name, n)
		}
	}
	// No line at all came out twice or for a session nobody asked.
	seen := map[uint64]bool{}
	for _, l := range s.Lines() {
		if seen[l.Session] {
			t.Errorf("session %d logged twice", l.Session)
		}
		seen[l.Session] = true
		if l.Background {
			t.Errorf("unexpected background session: %s", l.Raw)
		}
	}
}

// The reload plugin notices the changed Corefile by itself.
func TestSessionReloadPlugin(t *testing.T) {
	t.Parallel()
	s := Start(t, reloadCorefile("192.0.2.1", "reload 2s 1s"), nil)
	checkReloaded(t, s, "before", "192.0.2.1", 2)
	n := s.count("Reloading complete")
	s.WriteCorefile(reloadCorefile("192.0.2.2", "reload 2s 1s"))
	s.WaitOutput("Reloading complete", n+1)
	checkReloaded(t, s, "after", "192.0.2.2", 4)
}

func TestSessionTCP(t *testing.T) {
	t.Parallel()
	s := Start(t, forwardCorefile(logAll, "", ""), nil)
	r := Query(t, "tcp", s.Addr("PORT"), "tcp.ok.test", dns.TypeA, qTimeout)
	mustAnswerA(t, r, "192.0.2.1")
	l := s.WaitClient(r)
	check(t, l, want{Status: "Succeeded", BitMap: 15, Rcode: "NOERROR", Server: s.ServerLabel("PORT"), Client: r.Local,
		Protocol: "tcp", QName: "tcp.ok.test.", QType: "A", Types: legs15, ServerGen: ptr(false), Upstreams: 1})
	// forward follows the client's transport.
	checkUpstream(t, l, 0, s.Addr("UP"), "tcp", "NOERROR")
	checkClientLegs(t, l, r)
	for _, m := range l.Messages {
		if m.Protocol != "tcp" {
			t.Errorf("%s leg over %q, want tcp", m.Type, m.Protocol)
		}
	}
}

// markerBlock is a second client-facing block logging everything: a query
// to it, once logged, proves every line emitted before it was written (one
// writer, in order).
const markerBlock = `
.:{{MARK}} {
    bind 127.0.0.1
    dnsdiag {
        log all
    }
    template IN A mark.test {
        answer "{{ .Name }} 60 IN A 192.0.2.99"
    }
}
`

func (s *Server) mark(t *testing.T) {
	t.Helper()
	r := Query(t, "udp", s.Addr("MARK"), "m.mark.test", dns.TypeA, qTimeout)
	r.MustAnswer(t, dns.RcodeSuccess)
	s.WaitClient(r)
}

func TestLogNone(t *testing.T) {
	t.Parallel()
	s := Start(t, forwardCorefile("dnsdiag {\n        log none\n    }", "acl drop.test {\n        drop\n    }", "")+markerBlock, nil)
	Query(t, "udp", s.Addr("PORT"), "a.ok.test", dns.TypeA, qTimeout).MustAnswer(t, dns.RcodeSuccess)
	Query(t, "udp", s.Addr("PORT"), "a.fail.test", dns.TypeA, qTimeout).MustAnswer(t, dns.RcodeServerFailure)
	Query(t, "tcp", s.Addr("PORT"), "a.nx.test", dns.TypeA, qTimeout).MustAnswer(t, dns.RcodeNameError)
	if r := Query(t, "udp", s.Addr("PORT"), "a.drop.test", dns.TypeA, 300*time.Millisecond); r.Msg != nil {
		t.Fatalf("acl should drop: %v", r.Msg)
	}
	s.mark(t)
	for _, l := range s.Lines() {
		if l.Server != s.ServerLabel("MARK") {
			t.Errorf("log none logged: %s", l.Raw)
		}
	}
}

func TestLogDefaultFailedOnly(t *testing.T) {
	t.Parallel()
	s := Start(t, forwardCorefile("dnsdiag", "acl drop.test {\n        drop\n    }", "")+markerBlock, nil)
	ok := Query(t, "udp", s.Addr("PORT"), "a.ok.test", dns.TypeA, qTimeout)
	ok.MustAnswer(t, dns.RcodeSuccess)
	nx := Query(t, "udp", s.Addr("PORT"), "a.nx.test", dns.TypeA, qTimeout)
	nx.MustAnswer(t, dns.RcodeNameError)
	fail := Query(t, "udp", s.Addr("PORT"), "a.fail.test", dns.TypeA, qTimeout)
	fail.MustAnswer(t, dns.RcodeServerFailure)
	drop := Query(t, "udp", s.Addr("PORT"), "a.drop.test", dns.TypeA, 300*time.Millisecond)
	if drop.Msg != nil {
		t.Fatalf("acl should drop: %v", drop.Msg)
	}
	s.mark(t)

	lf := s.WaitClient(fail)
	check(t, lf, want{Status: "Failed", BitMap: 15, Rcode: "SERVFAIL", QName: "a.fail.test.", Types: legs15, Upstreams: 1})
	ld := s.WaitClient(drop)
	check(t, ld, want{Status: "Failed", BitMap: 1, Rcode: "null", QName: "a.drop.test.", Types: []string{cq}, Upstreams: 0})
	for _, l := range s.LinesWhere(func(l Line) bool { return l.Server == s.ServerLabel("PORT") }) {
		if isClient(l, ok) || isClient(l, nx) || l.Status == "Succeeded" {
			t.Errorf("default policy logged a success: %s", l.Raw)
		}
	}
	if n := len(s.LinesWhere(func(l Line) bool { return l.Server == s.ServerLabel("PORT") })); n != 2 {
		t.Errorf("want 2 lines (SERVFAIL, drop), got %d", n)
	}
}

// On SIGTERM every session already answered is still logged before exit.
func TestShutdownFlushesLines(t *testing.T) {
	t.Parallel()
	s := Start(t, forwardCorefile(logAllUnlimited, "", ""), nil)
	const n = 100
	for i := range n {
		Query(t, "udp", s.Addr("PORT"), fmt.Sprintf("s%d.ok.test", i), dns.TypeA, qTimeout).MustAnswer(t, dns.RcodeSuccess)
	}
	if code := s.Stop(); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
	if got := len(s.Lines()); got != n {
		t.Errorf("%d queries answered, %d lines after shutdown", n, got)
	}
}

// With dnsdiag in the chain the client gets, byte for byte, what it gets
// from the same Corefile without dnsdiag.
func TestTransparent(t *testing.T) {
	t.Parallel()
	body := `
    hosts {
        192.0.2.10 h.test
        fallthrough
    }
    template IN A t.test {
        answer "{{ .Name }} 60 IN A 192.0.2.7"
    }
    template IN ANY nxl.test {
        rcode NXDOMAIN
    }
    forward . 127.0.0.1:{{UP}}
}
`
	s := Start(t, `
.:{{WITH}} {
    bind 127.0.0.1
    `+logAll+`
`+body+`
.:{{WITHOUT}} {
    bind 127.0.0.1
`+body+richUpstream, nil)

	type q struct {
		name  string
		qtype uint16
		edns  bool
	}
	qs := []q{
		{"h.test", dns.TypeA, false},
		{"h.test", dns.TypeA, true},
		{"x.t.test", dns.TypeA, false},
		{"x.t.test", dns.TypeAAAA, true},
		{"y.nxl.test", dns.TypeA, true},
		{"www.ok.test", dns.TypeA, false},
		{"www.ok.test", dns.TypeA, true},
		{"no.nx.test", dns.TypeMX, false},
		{"bad.fail.test", dns.TypeA, false},
		{"a.big.test", dns.TypeTXT, false},
		{"a.big.test", dns.TypeTXT, true},
	}
	for _, proto := range []string{"udp", "tcp"} {
		for _, c := range qs {
			m := new(dns.Msg)
			m.SetQuestion(c.name+".", c.qtype)
			m.Id = 0x1234
			if c.edns {
				m.SetEdns0(1232, false)
			}
			packed, err := m.Pack()
			if err != nil {
				t.Fatal(err)
			}
			with := RawExchange(t, proto, s.Addr("WITH"), packed, qTimeout)
			without := RawExchange(t, proto, s.Addr("WITHOUT"), packed, qTimeout)
			with[0], with[1], without[0], without[1] = 0, 0, 0, 0
			if string(with) != string(without) {
				a, b := new(dns.Msg), new(dns.Msg)
				_ = a.Unpack(with)
				_ = b.Unpack(without)
				t.Errorf("%s %s %s edns=%v: answers differ\nwith dnsdiag:\n%v\nwithout:\n%v", proto, c.name, dns.TypeToString[c.qtype], c.edns, a, b)
			}
		}
	}
	// And dnsdiag did see every one of them.
	if got := len(s.WaitLines("for every query", 2*len(qs), func(Line) bool { return true })); got != 2*len(qs) {
		t.Errorf("%d queries, %d lines", 2*len(qs), got)
	}
}

// serve_stale verify with a short timeout: the client gets the stale answer
// at once (a cache answer, BitMap 3), and the refresh's forwarder legs arrive
// after its session ended. They form a background session that names the
// client session they came from.
func TestSessionServeStaleLateLegs(t *testing.T) {
	t.Parallel()
	s := Start(t, `
.:{{PORT}} {
    bind 127.0.0.1
    `+logAll+`
    cache 30 {
        success 1000 30 1
        serve_stale 1h verify 20ms
    }
    forward . 127.0.0.1:{{UP}}
}
.:{{UP}} {
    bind 127.0.0.1
    erratic {
        delay 1 300ms
    }
}
`, nil)
	// erratic answers A with TTL 0, which the cache keeps for its minimum
	// TTL of 1 s.
	r1 := Query(t, "udp", s.Addr("PORT"), "stale.test", dns.TypeA, qTimeout)
	mustAnswerA(t, r1, "192.0.2.53")
	l1 := s.WaitClient(r1)
	check(t, l1, want{Status: "Succeeded", BitMap: 15, Types: legs15, Upstreams: 1})
	if l1.DurationMs < 250 {
		t.Errorf("the upstream delays 300 ms, the session took %v ms", l1.DurationMs)
	}

	time.Sleep(2100 * time.Millisecond) // the entry is now stale

	// Had the client waited for the refresh, its session would hold the
	// forwarder legs (BitMap 15) and there would be no background session.
	r2 := Query(t, "udp", s.Addr("PORT"), "stale.test", dns.TypeA, qTimeout)
	mustAnswerA(t, r2, "192.0.2.53")
	l2 := s.WaitClient(r2)
	check(t, l2, want{Status: "Succeeded", BitMap: 3, Rcode: "NOERROR", Client: r2.Local, Types: legs3, Upstreams: 0})

	bg := s.WaitLine("background refresh", func(l Line) bool { return l.Background })
	check(t, bg, want{Status: "Succeeded", BitMap: 12, Rcode: "NOERROR", QName: "stale.test.", QType: "A", Types: []string{fq, fr}, Upstreams: 1})
	checkUpstream(t, bg, 0, s.Addr("UP"), "", "NOERROR")
	if bg.ClientSession != l2.Session {
		t.Errorf("late legs: ClientSession %d, want the stale-served session %d: %s", bg.ClientSession, l2.Session, bg.Raw)
	}
	// The finished client session was not changed by the late legs.
	if again := s.WaitClient(r2); again.BitMap != 3 || len(s.LinesWhere(func(l Line) bool { return isClient(l, r2) })) != 1 {
		t.Errorf("client session changed or logged twice: %s", again.Raw)
	}
}

// failfast_all_unhealthy_upstreams: once the only upstream is marked down,
// forward fails at once without sending anything, and the server writes
// SERVFAIL: the session has the client query only, but the client got an
// answer.
func TestSessionFailfastUnhealthy(t *testing.T) {
	t.Parallel()
	s := Start(t, `
.:{{PORT}} {
    bind 127.0.0.1
    `+logAll+`
    forward . 127.0.0.1:{{DEAD}} {
        max_fails 1
        health_check 100ms
        failfast_all_unhealthy_upstreams
    }
}
`, nil)
	var last Line
	for i := range 30 {
		r := Query(t, "udp", s.Addr("PORT"), fmt.Sprintf("ff%d.test", i), dns.TypeA, 8*time.Second)
		r.MustAnswer(t, dns.RcodeServerFailure)
		last = s.WaitClient(r)
		if last.BitMap == 1 {
			check(t, last, want{Status: "Failed", BitMap: 1, Rcode: "SERVFAIL", Client: r.Local, Types: []string{cq},
				ServerGen: ptr(true), Upstreams: 0})
			if !strings.Contains(last.Cause, "SERVFAIL") {
				t.Errorf("Cause %q should say the server answered SERVFAIL", last.Cause)
			}
			return
		}
		// Before the upstream is marked down: attempts that got nothing.
		check(t, last, want{Status: "Failed", BitMap: 5, Rcode: "SERVFAIL", ServerGen: ptr(true), Upstreams: -1})
		for j := range last.Upstreams {
			checkUpstream(t, last, j, s.Addr("DEAD"), "udp", "null")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the dead upstream was never marked down; last session: %s", last.Summary())
}

// Each server block has its own dnsdiag, hooked to its own forwards only:
// a block without dnsdiag that forwards to the same upstream produces no
// lines, neither client nor background ones, even on the same port.
func TestSessionServerBlocksIsolated(t *testing.T) {
	t.Parallel()
	s := Start(t, `
a.test:{{PORT}} {
    bind 127.0.0.1
    `+logAll+`
    forward . 127.0.0.1:{{UP}}
}
b.test:{{PORT}} {
    bind 127.0.0.1
    forward . 127.0.0.1:{{UP}}
}
.:{{OTHER}} {
    bind 127.0.0.1
    `+logAll+`
    forward . 127.0.0.1:{{UP}}
}
.:{{UP}} {
    bind 127.0.0.1
    template IN A test {
        answer "{{ .Name }} 60 IN A 192.0.2.1"
    }
}
`, nil)
	for i := range 3 {
		Query(t, "udp", s.Addr("PORT"), fmt.Sprintf("x%d.b.test", i), dns.TypeA, qTimeout).MustAnswer(t, dns.RcodeSuccess)
	}
	ra := Query(t, "udp", s.Addr("PORT"), "x.a.test", dns.TypeA, qTimeout)
	ra.MustAnswer(t, dns.RcodeSuccess)
	ro := Query(t, "tcp", s.Addr("OTHER"), "x.c.test", dns.TypeA, qTimeout)
	ro.MustAnswer(t, dns.RcodeSuccess)

	la := s.WaitClient(ra)
	check(t, la, want{Status: "Succeeded", BitMap: 15, Server: s.ServerLabel("PORT"), Types: legs15, Upstreams: 1})
	lo := s.WaitClient(ro)
	check(t, lo, want{Status: "Succeeded", BitMap: 15, Server: s.ServerLabel("OTHER"), Protocol: "tcp", Types: legs15, Upstreams: 1})
	// Lines are written in order: the b.test queries came first, so any
	// line of theirs would be here by now.
	time.Sleep(100 * time.Millisecond)
	for _, l := range s.Lines() {
		if strings.HasSuffix(l.QName, ".b.test.") || l.Background {
			t.Errorf("a block without dnsdiag was logged: %s", l.Raw)
		}
	}
	if n := len(s.Lines()); n != 2 {
		t.Errorf("want exactly 2 lines, got %d", n)
	}
}
