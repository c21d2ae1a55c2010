package report

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// healthy feeds a busy, healthy minute: cache hits, forwarded answers, a
// few NXDOMAINs and a few failures well under the thresholds.
func healthy(r *Reporter) {
	feed(r, 500, internal("svc.ns.svc.cluster.local.", dns.RcodeSuccess))
	feed(r, 50, internal("nope.ns.svc.cluster.local.", dns.RcodeNameError))
	feed(r, 400, external("www.example.", up1, dns.RcodeSuccess, 3*time.Millisecond))
	feed(r, 3, external("flaky.example.", up1, dns.RcodeServerFailure, 3*time.Millisecond))
	feed(r, 2, internal("broken.ns.svc.cluster.local.", dns.RcodeServerFailure))
	feed(r, 5, Session{Name: "x.", Hints: HintRetransmitAfterAnswer | HintRetransmitUnanswered, SearchCandidates: 2})
}

var healthySys = System{
	Sockets:      SocketFigures{Present: true},
	UDP:          UDPFigures{Present: true, InErrors: 3, RcvbufErrors: 0},
	CPU:          CPUFigures{Present: true, Periods: 600, ThrottledPeriods: 2, Throttled: 5 * time.Millisecond, QuotaCores: 1, GOMAXPROCS: 1},
	PeakInFlight: 12,
}

func TestHealthyWindowWritesNothing(t *testing.T) {
	r := newTestReporter(DefaultConfig())
	healthy(r)
	wantCodes(t, r, healthySys)
	// An empty window is healthy too.
	wantCodes(t, r, System{})
}

func TestUpstreamFailingNoAnswer(t *testing.T) {
	r := newTestReporter(Config{Instance: "coredns-7d9f-abcde", MinFailures: 10, FailureShare: 0.05, MinSessions: 100, SearchShare: 0.5, MinAnswersLost: 10, MinDrops: 1, ThrottledShare: 0.01})
	healthy(r)
	feed(r, 60, external("api.partner.example.", up2, -1, 2*time.Second))
	rep := wantCodes(t, r, healthySys, CodeUpstreamFailing)
	text := verdictText(t, rep, CodeUpstreamFailing)
	for _, want := range []string{
		"only cluster-external domain names fail",
		"Upstream [2001:db8::53]:53: 60 attempts, 100% no answer",
		"api.partner.example. A SERVFAIL x60 via [2001:db8::53]:53, last at 2026-12-01T19:00:30Z",
		"window 2026-12-01T19:00:00Z to 2026-12-01T19:01:00Z",
		"instance coredns-7d9f-abcde",
		"63 of 463 forwarded sessions failed",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	// up1 answered all but 3 of 403 attempts: under the failure share, so
	// the text does not accuse it.
	if strings.Contains(text, "Upstream "+up1.String()) {
		t.Errorf("text names the healthy upstream %s:\n%s", up1, text)
	}
}

func TestUpstreamFailingPatterns(t *testing.T) {
	r := newTestReporter(DefaultConfig())
	feed(r, 100, internal("svc.ns.svc.cluster.local.", dns.RcodeSuccess))
	feed(r, 30, external("a.example.", up1, dns.RcodeServerFailure, time.Millisecond))
	feed(r, 10, external("b.example.", up1, dns.RcodeRefused, time.Millisecond))
	feed(r, 60, external("c.example.", up1, dns.RcodeSuccess, time.Millisecond))
	rep := wantCodes(t, r, System{}, CodeUpstreamFailing)
	text := verdictText(t, rep, CodeUpstreamFailing)
	if want := "Upstream 10.0.0.2:53: 100 attempts, 30% SERVFAIL, 10% REFUSED, p99 1ms."; !strings.Contains(text, want) {
		t.Errorf("text lacks %q:\n%s", want, text)
	}
}

// A SERVFAIL the cache stored is answered internally: when the same name
// failed upstream in the window, it is the upstream's failure, so the
// verdict stays upstream_failing and not everything_failing.
func TestCachedUpstreamFailureIsTheUpstreams(t *testing.T) {
	r := newTestReporter(DefaultConfig())
	feed(r, 100, internal("svc.ns.svc.cluster.local.", dns.RcodeSuccess))
	feed(r, 20, external("down.example.", up1, dns.RcodeServerFailure, time.Millisecond))
	feed(r, 50, internal("down.example.", dns.RcodeServerFailure)) // cache hits of the SERVFAIL
	rep := wantCodes(t, r, System{}, CodeUpstreamFailing)
	if rep.Internal.Failed != 50 || rep.Internal.FailedCachedUpstream != 50 {
		t.Errorf("Internal %+v, want 50 failed, all cached from the upstream", rep.Internal)
	}
	// The same internal failures with no upstream failure behind them are
	// CoreDNS's own.
	feed(r, 100, internal("svc.ns.svc.cluster.local.", dns.RcodeSuccess))
	feed(r, 50, internal("down.example.", dns.RcodeServerFailure))
	rep = wantCodes(t, r, System{}, CodeInternalFailing)
	if rep.Internal.FailedCachedUpstream != 0 {
		t.Errorf("FailedCachedUpstream %d, want 0", rep.Internal.FailedCachedUpstream)
	}
}

func TestInternalFailingOnly(t *testing.T) {
	r := newTestReporter(DefaultConfig())
	healthy(r)
	feed(r, 40, internal("db.prod.svc.cluster.local.", dns.RcodeServerFailure))
	feed(r, 10, internal("dropped.prod.svc.cluster.local.", -1)) // BitMap 1: nothing sent
	rep := wantCodes(t, r, healthySys, CodeInternalFailing)
	text := verdictText(t, rep, CodeInternalFailing)
	for _, want := range []string{"52 of 607 internal sessions failed", "db.prod.svc.cluster.local. A SERVFAIL x40", "dropped.prod.svc.cluster.local. A no answer x10"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
}

func TestEverythingFailingOnly(t *testing.T) {
	r := newTestReporter(DefaultConfig())
	healthy(r)
	feed(r, 40, internal("db.prod.svc.cluster.local.", dns.RcodeServerFailure))
	feed(r, 40, external("www.example.", up1, -1, 2*time.Second))
	rep := wantCodes(t, r, healthySys, CodeEverythingFailing)
	if text := verdictText(t, rep, CodeEverythingFailing); !strings.Contains(text, "both cluster-internal and cluster-external domain names fail") {
		t.Errorf("text does not name the guide's case:\n%s", text)
	}
}

func TestFailuresBelowThresholds(t *testing.T) {
	cases := map[string]func(r *Reporter){
		"fewer than MinFailures, all failing": func(r *Reporter) {
			feed(r, 9, external("www.example.", up1, -1, 2*time.Second))
			feed(r, 9, internal("db.svc.cluster.local.", dns.RcodeServerFailure))
		},
		"under the failure share": func(r *Reporter) {
			feed(r, 1000, external("www.example.", up1, dns.RcodeSuccess, time.Millisecond))
			feed(r, 49, external("www.example.", up1, -1, 2*time.Second))
			feed(r, 1000, internal("db.svc.cluster.local.", dns.RcodeSuccess))
			feed(r, 49, internal("db.svc.cluster.local.", dns.RcodeServerFailure))
		},
		"NXDOMAIN is not a failure": func(r *Reporter) {
			feed(r, 100, external("nx.example.", up1, dns.RcodeNameError, time.Millisecond))
			feed(r, 100, internal("nx.svc.cluster.local.", dns.RcodeNameError))
		},
	}
	for name, fill := range cases {
		t.Run(name, func(t *testing.T) {
			r := newTestReporter(DefaultConfig())
			fill(r)
			wantCodes(t, r, System{})
		})
	}
	// At the thresholds exactly, both fire.
	r := newTestReporter(DefaultConfig())
	feed(r, 190, external("www.example.", up1, dns.RcodeSuccess, time.Millisecond))
	feed(r, 10, external("www.example.", up1, -1, 2*time.Second))
	wantCodes(t, r, System{}, CodeUpstreamFailing)
}

func TestOverloaded(t *testing.T) {
	drops := healthySys
	drops.Sockets = SocketFigures{Present: true, Drops: 1500}
	drops.UDP = UDPFigures{Present: true, InErrors: 1510, RcvbufErrors: 1500}
	r := newTestReporter(DefaultConfig())
	healthy(r)
	rep := wantCodes(t, r, drops, CodeOverloaded)
	text := verdictText(t, rep, CodeOverloaded)
	for _, want := range []string{"dropped 1500 datagrams on CoreDNS's own UDP sockets", "1500 RcvbufErrors", "raise or remove the CPU limit", "CPU Burst", "replicas spread over different nodes", "NodeLocal DNSCache", "peak 12 sessions"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "throttled") {
		t.Errorf("2 of 600 periods is under the throttled share, yet:\n%s", text)
	}

	throttled := healthySys
	throttled.CPU = CPUFigures{Present: true, Periods: 600, ThrottledPeriods: 120, Throttled: 3200 * time.Millisecond, QuotaCores: 0.5, GOMAXPROCS: 4}
	healthy(r)
	rep = wantCodes(t, r, throttled, CodeOverloaded)
	text = verdictText(t, rep, CodeOverloaded)
	for _, want := range []string{"throttled in 120 of 600 CPU periods (20%, 3.2s in all)", "limit of 0.5 cores", "GOMAXPROCS 4"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "datagrams") {
		t.Errorf("no drops, yet:\n%s", text)
	}
}

// Figures that could not be read are no evidence: whatever values come
// with Present false, no verdict and no figure.
func TestOverloadedAbsentFigures(t *testing.T) {
	absent := System{
		Sockets: SocketFigures{Drops: 1e6},
		UDP:     UDPFigures{InErrors: 1e6, RcvbufErrors: 1e6},
		CPU:     CPUFigures{Periods: 600, ThrottledPeriods: 600, Throttled: time.Minute},
	}
	r := newTestReporter(DefaultConfig())
	healthy(r)
	wantCodes(t, r, absent)

	// In a report fired by something else, the absent groups are left out.
	healthy(r)
	feed(r, 60, external("www.example.", up1, -1, 2*time.Second))
	rep := wantCodes(t, r, absent, CodeUpstreamFailing)
	if rep.Sockets != nil || rep.UDP != nil || rep.CPU != nil {
		t.Errorf("absent figures reported: %+v %+v %+v", rep.Sockets, rep.UDP, rep.CPU)
	}
	b, err := rep.AppendJSON(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, member := range []string{`"Sockets"`, `"UDP"`, `"CPU"`} {
		if strings.Contains(string(b), member) {
			t.Errorf("JSON has %s: %s", member, b)
		}
	}
}

func TestAnswersLost(t *testing.T) {
	r := newTestReporter(DefaultConfig())
	healthy(r) // 5 retransmit_after_answer
	feed(r, 3, Session{Name: "a.", Hints: HintParallelAAAA})
	feed(r, 50, Session{Name: "b.", Hints: HintRetransmitUnanswered}) // not an answer lost
	wantCodes(t, r, healthySys)

	healthy(r)
	feed(r, 5, Session{Name: "a.", Hints: HintParallelAAAA})
	rep := wantCodes(t, r, healthySys, CodeAnswersLost)
	text := verdictText(t, rep, CodeAnswersLost)
	for _, want := range []string{"resent 10 queries", "retransmit_after_answer 5", "parallel_a_aaaa 5", "conntrack", "client-side load", "IPVS"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
}

func TestSearchPath(t *testing.T) {
	// 60 NXDOMAIN candidates for 40 names reached through the walk: 60
	// of the window's 100 sessions.
	walk := func(r *Reporter) {
		feed(r, 60, internal("www.example.ns.svc.cluster.local.", dns.RcodeNameError))
		s := external("www.example.", up1, dns.RcodeSuccess, time.Millisecond)
		s.Hints, s.SearchCandidates = HintSearchExpansion, 1
		feed(r, 20, s)
		s.SearchCandidates = 2
		feed(r, 20, s)
	}
	r := newTestReporter(DefaultConfig())
	walk(r)
	rep := wantCodes(t, r, System{}, CodeSearchPath)
	if rep.SearchCandidates != 60 || rep.SearchShare != 0.6 || rep.Hints["search_expansion"] != 40 {
		t.Errorf("SearchCandidates %d SearchShare %v Hints %v", rep.SearchCandidates, rep.SearchShare, rep.Hints)
	}
	text := verdictText(t, rep, CodeSearchPath)
	for _, want := range []string{"60 of 100 queries (60%)", "ndots", "autopath", "trailing dot"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}

	// Under the share.
	walk(r)
	feed(r, 30, internal("svc.ns.svc.cluster.local.", dns.RcodeSuccess))
	wantCodes(t, r, System{})

	// Under MinSessions: 99 sessions.
	cfg := DefaultConfig()
	cfg.MinSessions = 101
	r = newTestReporter(cfg)
	walk(r)
	wantCodes(t, r, System{})
}

// Every verdict fires at once, in Codes order (everything_failing stands
// for the failing branch).
func TestVerdictOrder(t *testing.T) {
	r := newTestReporter(DefaultConfig())
	feed(r, 50, internal("db.svc.cluster.local.", dns.RcodeServerFailure))
	feed(r, 50, external("www.example.", up1, -1, time.Second))
	feed(r, 10, Session{Hints: HintRetransmitAfterAnswer, SearchCandidates: 10})
	wantCodes(t, r, System{Sockets: SocketFigures{Present: true, Drops: 1}}, CodeEverythingFailing, CodeOverloaded, CodeAnswersLost, CodeSearchPath)
}

// Forwarded sessions can fail although their upstream answered (say, an
// answer too big for the client): the verdict accuses no upstream.
func TestUpstreamFailingWithoutFailingUpstream(t *testing.T) {
	r := newTestReporter(DefaultConfig())
	s := external("big.example.", up1, dns.RcodeSuccess, time.Millisecond)
	s.Failed, s.Rcode = true, dns.RcodeServerFailure
	feed(r, 20, s)
	rep := wantCodes(t, r, System{}, CodeUpstreamFailing)
	text := verdictText(t, rep, CodeUpstreamFailing)
	if strings.Contains(text, "Upstream "+up1.String()) || !strings.Contains(text, "No upstream's failed attempts reach the failure share") {
		t.Errorf("text:\n%s", text)
	}
}
