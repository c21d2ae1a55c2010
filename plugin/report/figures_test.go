package report

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestFigures(t *testing.T) {
	r := newTestReporter(Config{Instance: "pod-a", MinFailures: 1, FailureShare: 0.01, MinSessions: 1, SearchShare: 1, MinAnswersLost: 100, MinDrops: 1, ThrottledShare: 1})
	feed(r, 70, internal("svc.ns.svc.cluster.local.", dns.RcodeSuccess))
	feed(r, 10, internal("svc.ns.svc.cluster.local.", dns.RcodeServerFailure))
	feed(r, 15, external("www.example.", up1, dns.RcodeSuccess, 2*time.Millisecond))
	feed(r, 5, external("www.example.", up1, -1, 2*time.Second))
	feed(r, 3, Session{Name: "x.", Hints: HintTruncatedNoTCPRetry | HintUpstreamTCPFailed})
	sys := System{
		Sockets:      SocketFigures{Present: true, Drops: 7},
		UDP:          UDPFigures{Present: true, InErrors: 9, RcvbufErrors: 8},
		CPU:          CPUFigures{Present: true, Periods: 400, ThrottledPeriods: 3, Throttled: 1500 * time.Microsecond, QuotaCores: 2, GOMAXPROCS: 2},
		PeakInFlight: 42,
	}
	rep, ok := r.Tick(t0.Add(90*time.Second), sys)
	if !ok {
		t.Fatal("no report")
	}
	if rep.Instance != "pod-a" || !rep.Start.Equal(t0) || !rep.End.Equal(t0.Add(90*time.Second)) || rep.Seconds != 90 {
		t.Errorf("window %q %v %v %v", rep.Instance, rep.Start, rep.End, rep.Seconds)
	}
	if rep.Sessions != 103 || rep.Failed != 15 || rep.FailureShare != 0.1456 {
		t.Errorf("Sessions %d Failed %d FailureShare %v, want 103 15 0.1456", rep.Sessions, rep.Failed, rep.FailureShare)
	}
	if want := (Population{Sessions: 83, Failed: 10, FailureShare: 0.1205}); rep.Internal != want {
		t.Errorf("Internal %+v, want %+v", rep.Internal, want)
	}
	if want := (Population{Sessions: 20, Failed: 5, FailureShare: 0.25}); rep.External != want {
		t.Errorf("External %+v, want %+v", rep.External, want)
	}
	if len(rep.Upstreams) != 1 {
		t.Fatalf("Upstreams %+v", rep.Upstreams)
	}
	u := rep.Upstreams[0]
	if u.Address != "10.0.0.2:53" || u.Attempts != 20 || u.NoAnswer != 5 || u.NoAnswerShare != 0.25 || len(u.Rcodes) != 1 || u.Rcodes["NOERROR"] != 15 {
		t.Errorf("upstream %+v", u)
	}
	// 5 of 20 attempts took 2 s: the 99th percentile is in the (1 s, 2.5 s]
	// bucket, capped at the longest attempt.
	if u.P99Ms != 2000 || u.MaxMs != 2000 {
		t.Errorf("P99Ms %v MaxMs %v, want 2000 2000", u.P99Ms, u.MaxMs)
	}
	if h := rep.Hints; len(h) != 2 || h["truncated_no_tcp_retry"] != 3 || h["upstream_tcp_failed"] != 3 {
		t.Errorf("Hints %v", h)
	}
	if *rep.Sockets != (SocketReport{Drops: 7}) || *rep.UDP != (UDPReport{InErrors: 9, RcvbufErrors: 8}) {
		t.Errorf("Sockets %+v UDP %+v", rep.Sockets, rep.UDP)
	}
	if want := (CPUReport{Periods: 400, ThrottledPeriods: 3, ThrottledShare: 0.0075, ThrottledMs: 1.5, QuotaCores: 2, GOMAXPROCS: 2}); *rep.CPU != want {
		t.Errorf("CPU %+v, want %+v", *rep.CPU, want)
	}
	if rep.PeakInFlight != 42 {
		t.Errorf("PeakInFlight %d", rep.PeakInFlight)
	}
	if len(rep.FailedNames) != 2 {
		t.Fatalf("FailedNames %+v", rep.FailedNames)
	}
	f := rep.FailedNames[0]
	if f.Name != "svc.ns.svc.cluster.local." || f.QType != "A" || f.Rcode == nil || *f.Rcode != "SERVFAIL" ||
		f.Count != 10 || f.Internal != 10 || f.External != 0 || f.Overcount != 0 || f.Upstream != "" || !f.Last.Equal(t0.Add(30*time.Second)) {
		t.Errorf("FailedNames[0] %+v", f)
	}

	// The next window starts where this one ended, with every count zero.
	rep = r.close(t0.Add(150*time.Second), System{})
	if !rep.Start.Equal(t0.Add(90*time.Second)) || rep.Sessions != 0 || rep.Upstreams != nil || rep.FailedNames != nil || rep.Hints != nil {
		t.Errorf("window after Tick not empty: %+v", rep)
	}
}

func TestP99FromBuckets(t *testing.T) {
	cases := []struct {
		name  string
		durs  map[time.Duration]int
		p99   time.Duration
		max   time.Duration
		empty bool
	}{
		{name: "empty", empty: true},
		// 99 fast, 1 slow: the 99th of 100 is still fast, in (2.5ms, 5ms].
		{name: "one slow in a hundred", durs: map[time.Duration]int{4 * time.Millisecond: 99, 3 * time.Second: 1}, p99: 5 * time.Millisecond, max: 3 * time.Second},
		// 2 slow in a hundred: the 99th is slow, in (2.5s, 5s], capped at 3s.
		{name: "two slow in a hundred", durs: map[time.Duration]int{4 * time.Millisecond: 98, 3 * time.Second: 2}, p99: 3 * time.Second, max: 3 * time.Second},
		// Beyond the last bound, the longest attempt is the bound.
		{name: "past every bound", durs: map[time.Duration]int{30 * time.Second: 1}, p99: 30 * time.Second, max: 30 * time.Second},
		{name: "on a bound", durs: map[time.Duration]int{time.Millisecond: 10}, p99: time.Millisecond, max: time.Millisecond},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var u upstreamStats
			for d, n := range c.durs {
				for range n {
					u.observe(&Attempt{Answered: true, Duration: d})
				}
			}
			w := u.take()
			if got := w.p99(); got != c.p99 || w.max != c.max {
				t.Errorf("p99 %v max %v, want %v %v", got, w.max, c.p99, c.max)
			}
		})
	}
}

func TestBucketOf(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want int
	}{{0, 0}, {100 * time.Microsecond, 0}, {101 * time.Microsecond, 1}, {10 * time.Second, len(bucketBounds) - 1}, {10*time.Second + 1, len(bucketBounds)}, {-1, 0}} {
		if got := bucketOf(c.d); got != c.want {
			t.Errorf("bucketOf(%v) = %d, want %d", c.d, got, c.want)
		}
	}
}

func TestRcodeCounts(t *testing.T) {
	r := newTestReporter(DefaultConfig())
	for _, rc := range []int{dns.RcodeSuccess, dns.RcodeNameError, dns.RcodeServerFailure, dns.RcodeRefused, dns.RcodeBadCookie, 15, -7} {
		r.ObserveAttempt(Attempt{Upstream: up1, Answered: true, Rcode: rc, Duration: time.Millisecond})
	}
	r.ObserveAttempt(Attempt{Upstream: up1, Rcode: dns.RcodeRefused}) // unanswered: its Rcode is ignored
	rep := r.close(t0.Add(time.Minute), System{})
	want := map[string]uint64{"NOERROR": 1, "NXDOMAIN": 1, "SERVFAIL": 1, "REFUSED": 1, "RCODE15": 1, "other": 2}
	got := rep.Upstreams[0].Rcodes
	if len(got) != len(want) {
		t.Fatalf("Rcodes %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("Rcodes[%s] = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
	if u := rep.Upstreams[0]; u.Attempts != 8 || u.NoAnswer != 1 {
		t.Errorf("Attempts %d NoAnswer %d", u.Attempts, u.NoAnswer)
	}
}

// The top failing names come most first, at most topNames of them, ties
// by name; a name failing with two rcodes is two entries.
func TestTopNamesOrderAndCap(t *testing.T) {
	r := newTestReporter(DefaultConfig())
	for i := range 20 {
		feed(r, i+1, internal(fmt.Sprintf("n%02d.example.", i), dns.RcodeServerFailure))
	}
	feed(r, 20, internal("n00.example.", dns.RcodeRefused))
	feed(r, 20, internal("a-tie.example.", dns.RcodeRefused))
	rep := r.close(t0.Add(time.Minute), System{})
	if len(rep.FailedNames) != topNames {
		t.Fatalf("%d names, want %d", len(rep.FailedNames), topNames)
	}
	want := []string{"a-tie.example./REFUSED/20", "n00.example./REFUSED/20", "n19.example./SERVFAIL/20", "n18.example./SERVFAIL/19", "n17.example./SERVFAIL/18"}
	for i, w := range want {
		f := rep.FailedNames[i]
		if got := fmt.Sprintf("%s/%s/%d", f.Name, *f.Rcode, f.Count); got != w {
			t.Errorf("FailedNames[%d] = %s, want %s", i, got, w)
		}
	}
	if last := rep.FailedNames[topNames-1]; last.Name != "n12.example." {
		t.Errorf("last name %s, want n12.example.", last.Name)
	}
}

// Past maxNameEntries candidates, a name that fails often enough still
// reaches the top even though it started late; replaced candidates are
// counted, and what the newcomer inherited is shown as Overcount.
func TestNameTableEviction(t *testing.T) {
	r := newTestReporter(DefaultConfig())
	for i := range maxNameEntries + 44 {
		feed(r, 1, internal(fmt.Sprintf("random%d.example.", i), dns.RcodeServerFailure))
	}
	feed(r, 5, external("late.example.", up1, -1, time.Second))
	names := &r.sets[r.epoch.Load()&1].names
	if n := len(names.entries); n != maxNameEntries || len(names.idx) != maxNameEntries {
		t.Fatalf("table holds %d entries, %d indexed, cap %d", n, len(names.idx), maxNameEntries)
	}
	rep := r.close(t0.Add(time.Minute), System{})
	top := rep.FailedNames[0]
	if top.Name != "late.example." || top.Count != 6 || top.Overcount != 1 || top.External != 5 || top.Upstream != up1.String() {
		t.Errorf("top %+v, want late.example. counted 6 (5 + 1 inherited)", top)
	}
	if rep.FailedNamesEvicted != 45 {
		t.Errorf("FailedNamesEvicted %d, want 45", rep.FailedNamesEvicted)
	}
	if len(names.entries) != 0 || len(names.idx) != 0 {
		t.Errorf("table not reset: %d entries", len(names.entries))
	}
}

func TestLongNameTruncated(t *testing.T) {
	r := newTestReporter(DefaultConfig())
	long := string(make([]byte, 3*maxNameLen))
	feed(r, 2, internal(long, dns.RcodeServerFailure))
	rep := r.close(t0.Add(time.Minute), System{})
	if len(rep.FailedNames) != 1 || len(rep.FailedNames[0].Name) != maxNameLen || rep.FailedNames[0].Count != 2 {
		t.Errorf("long name stored as %d bytes, %d entries", len(rep.FailedNames[0].Name), len(rep.FailedNames))
	}
}

func TestUpstreamCap(t *testing.T) {
	r := newTestReporter(DefaultConfig())
	for i := range maxUpstreams + 6 {
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}), 53)
		for range 2 {
			r.ObserveAttempt(Attempt{Upstream: addr, Answered: true, Duration: time.Millisecond})
		}
	}
	rep := r.close(t0.Add(time.Minute), System{})
	if len(rep.Upstreams) != maxUpstreams || rep.UpstreamsUntracked != 12 {
		t.Errorf("%d upstreams, %d untracked attempts; want %d, 12", len(rep.Upstreams), rep.UpstreamsUntracked, maxUpstreams)
	}
	// Upstreams idle in a window are left out of its report.
	r.ObserveAttempt(Attempt{Upstream: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, 0, 3}), 53), Answered: true})
	rep = r.close(t0.Add(2*time.Minute), System{})
	if len(rep.Upstreams) != 1 || rep.Upstreams[0].Address != "10.1.0.3:53" || rep.UpstreamsUntracked != 0 {
		t.Errorf("second window: %+v untracked %d", rep.Upstreams, rep.UpstreamsUntracked)
	}
}

func TestHintFromCode(t *testing.T) {
	for i, c := range hintCodes {
		h := HintFromCode(c)
		if h != 1<<i || h.code() != c {
			t.Errorf("HintFromCode(%q) = %b", c, h)
		}
	}
	if h := HintFromCode("nonsense"); h != 0 {
		t.Errorf("unknown code gave %b", h)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	bad := map[string]func(*Config){
		"failure share": func(c *Config) { c.FailureShare = 0 },
		"search share":  func(c *Config) { c.SearchShare = 1.5 },
		"throttled":     func(c *Config) { c.ThrottledShare = -0.1 },
		"min failures":  func(c *Config) { c.MinFailures = 0 },
		"min sessions":  func(c *Config) { c.MinSessions = 0 },
		"answers lost":  func(c *Config) { c.MinAnswersLost = 0 },
		"min drops":     func(c *Config) { c.MinDrops = 0 },
	}
	for name, breakIt := range bad {
		c := DefaultConfig()
		breakIt(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: invalid config accepted: %+v", name, c)
		}
	}
}
