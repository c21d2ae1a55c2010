package e2e

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// lcHeavyUpstream answers heavy.test with 40 TXT records, so that each
// session line is large (four legs with whole messages) and slow to render:
// the log writer falls behind a burst and has lines pending at SIGTERM.
func lcHeavyUpstream() string {
	var b strings.Builder
	b.WriteString(".:{{UP}} {\n\tbind 127.0.0.1\n\ttemplate IN ANY heavy.test {\n")
	for i := range 40 {
		fmt.Fprintf(&b, "\t\tanswer \"{{ .Name }} 60 IN TXT %s%02d\"\n", strings.Repeat("t", 60), i)
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

// lcCorefile has no reload plugin: reloads come from SIGUSR1 only.
const lcCorefile = `
.:{{DNS}} {
	bind 127.0.0.1
	prometheus 127.0.0.1:{{PROM}}
	dnsdiag {
		log all
		rate 0
	}
	forward . 127.0.0.1:{{UP}}
}
`

// lcGoroutines is the least go_goroutines over a few scrapes a little
// apart, so that a query or an old server shutting down does not count.
func lcGoroutines(t testing.TB, prom string) float64 {
	t.Helper()
	least := -1.0
	for range 6 {
		g := promSum(promScrape(t, prom), "go_goroutines", nil)
		if least < 0 || g < least {
			least = g
		}
		time.Sleep(150 * time.Millisecond)
	}
	return least
}

// TestLifecycleReloadsUnderTraffic reloads the process with SIGUSR1 50
// times while a client keeps querying a forwarded name. Every query must be
// answered, every session logged with exactly one upstream attempt and
// BitMap 15 (a forward hooked twice would show two FORWARDER_QUERY legs, an
// unhooked one BitMap 3), the goroutine count must not grow with reloads,
// and sessions_total must stay one series per label set and count every
// query once.
func TestLifecycleReloadsUnderTraffic(t *testing.T) {
	// Not parallel: it bounds the growth of go_goroutines across reloads,
	// which the load of the parallel tests (floods, a CPU-limited cgroup)
	// blurs with queries in flight on a 2-core machine.
	// The upstream is a separate process, so that only the one under test
	// is reloaded.
	up := Start(t, richUpstream, nil)
	s := Start(t, lcCorefile, map[string]int{"UP": up.Port("UP")})
	dnsAddr, prom, server := s.Addr("DNS"), s.Addr("PROM"), s.ServerLabel("DNS")

	const reloads, maxQueries = 50, 3000
	var (
		stop      = make(chan struct{})
		done      = make(chan struct{})
		sent      atomic.Int64
		mu        sync.Mutex
		unanswerd []string
	)
	go func() {
		defer close(done)
		for i := 0; i < maxQueries; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("q%d.ok.test.", i)
			r := Query(t, "udp", dnsAddr, name, dns.TypeA, 3*time.Second)
			sent.Add(1)
			if r.Err != nil || r.Msg == nil || r.Msg.Rcode != dns.RcodeSuccess || len(r.Msg.Answer) != 1 {
				mu.Lock()
				unanswerd = append(unanswerd, fmt.Sprintf("%s: %v %v", name, r.Err, r.Msg))
				mu.Unlock()
			}
			time.Sleep(3 * time.Millisecond)
		}
	}()

	started := time.Now()
	var g10, g50 float64
	for i := 1; i <= reloads; i++ {
		s.Reload()
		time.Sleep(100 * time.Millisecond)
		switch i {
		case 10:
			g10 = lcGoroutines(t, prom)
		case reloads:
			g50 = lcGoroutines(t, prom)
		}
	}
	reloadTime := time.Since(started)
	close(stop)
	<-done
	n := int(sent.Load())
	t.Logf("%d reloads in %v; %d queries; go_goroutines %v after reload 10, %v after reload %d", reloads, reloadTime.Round(time.Millisecond), n, g10, g50, reloads)

	if got := s.count("Reloading complete"); got != reloads {
		t.Errorf("%d 'Reloading complete' lines, want %d", got, reloads)
	}
	if len(unanswerd) > 0 {
		t.Errorf("%d of %d queries got no answer during reloads, e.g. %v", len(unanswerd), n, unanswerd[:min(5, len(unanswerd))])
	}
	if g50 > g10+10 {
		t.Errorf("go_goroutines grew from %v after reload 10 to %v after reload %d", g10, g50, reloads)
	}

	// Every query was logged once, with exactly one upstream attempt and
	// all four legs.
	ls := s.WaitLines("one per query", n, func(l Line) bool { return strings.HasSuffix(l.QName, ".ok.test.") })
	seen := map[string]int{}
	bad := 0
	for _, l := range ls {
		seen[l.QName]++
		if l.Background {
			t.Errorf("background session: %s", l.Raw)
			continue
		}
		if l.Count("FORWARDER_QUERY") != 1 || l.Count("FORWARDER_RESPONSE") != 1 || l.BitMap != 15 || l.Status != "Succeeded" {
			if bad++; bad <= 5 {
				t.Errorf("session with %d FORWARDER_QUERY, %d FORWARDER_RESPONSE legs, BitMap %d, Status %s (want 1, 1, 15, Succeeded): %s",
					l.Count("FORWARDER_QUERY"), l.Count("FORWARDER_RESPONSE"), l.BitMap, l.Status, l.Summary())
			}
		}
		check(t, l, want{Server: server, Upstreams: -1})
	}
	if bad > 0 {
		t.Errorf("%d of %d sessions did not show exactly one upstream attempt with BitMap 15", bad, len(ls))
	}
	if len(ls) != n || len(seen) != n {
		dups := 0
		for _, c := range seen {
			if c > 1 {
				dups++
			}
		}
		t.Errorf("%d session lines for %d distinct names (%d logged more than once), %d queries sent", len(ls), len(seen), dups, n)
	}

	// sessions_total: one series per label set, counting every query once.
	text := promScrapeText(t, prom)
	ss, err := promParse(text)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]int{}
	for _, x := range ss {
		if strings.HasPrefix(x.Name, "coredns_dnsdiag_") {
			keys[x.key()]++
		}
	}
	for k, c := range keys {
		if c > 1 {
			t.Errorf("series exposed %d times: %s", c, k)
		}
	}
	if got := promSum(ss, "coredns_dnsdiag_sessions_total", nil); int(got) != n {
		t.Errorf("sessions_total = %v, want %d (one per query)\n%s", got, n, promDnsdiag(ss))
	}
	if got := promSum(ss, "coredns_dnsdiag_sessions_total", map[string]string{"server": server, "status": "Succeeded", "bitmap": "15"}); int(got) != n {
		t.Errorf(`sessions_total{status="Succeeded",bitmap="15"} = %v, want %d`, got, n)
	}
	if got := promSum(ss, "coredns_dnsdiag_upstream_attempts_total", nil); int(got) != n {
		t.Errorf("upstream_attempts_total = %v, want %d", got, n)
	}
	if got := promSum(ss, "coredns_dnsdiag_log_lines_total", nil); int(got) != n {
		t.Errorf("log_lines_total = %v, want %d", got, n)
	}
	if got := promSum(ss, "coredns_dnsdiag_inflight_sessions", nil); got != 0 {
		t.Errorf("inflight_sessions = %v after the traffic stopped", got)
	}
}

// TestLifecycleShutdownFlushesLines sends queries with `log all rate 0` and
// SIGTERMs the process as soon as the last answer is in: every session
// line must be in the output once the process has exited.
func TestLifecycleShutdownFlushesLines(t *testing.T) {
	t.Parallel()
	up := Start(t, lcHeavyUpstream(), nil)
	s := Start(t, lcCorefile, map[string]int{"UP": up.Port("UP")})
	dnsAddr := s.Addr("DNS")

	const n = 1000
	results := Concurrently(n, 16, func(i int) Result {
		proto := "udp"
		if i%4 == 0 {
			proto = "tcp"
		}
		m := new(dns.Msg)
		m.SetQuestion(fmt.Sprintf("s%d.heavy.test.", i), dns.TypeTXT)
		m.SetEdns0(65000, false)
		return Exchange(t, proto, dnsAddr, m, 3*time.Second)
	})
	before := len(s.Lines()) // lines already read from the pipe when SIGTERM goes out
	if code := s.Stop(); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}

	ls := s.Lines()
	byName := map[string]Line{}
	for _, l := range ls {
		byName[l.QName] = l
	}
	missing := 0
	for _, r := range results {
		if r.Msg == nil || r.Msg.Rcode != dns.RcodeSuccess {
			t.Errorf("query %s: no answer: %v", r.Query.Question[0].Name, r.Err)
			continue
		}
		l, ok := byName[r.Query.Question[0].Name]
		if !ok {
			if missing++; missing <= 5 {
				t.Errorf("no session line for %s after shutdown", r.Query.Question[0].Name)
			}
			continue
		}
		if !isClient(l, r) {
			t.Errorf("session line for %s does not match the query from %s: %s", r.Query.Question[0].Name, r.Local, l.Summary())
		}
	}
	if missing > 0 || len(ls) != n {
		t.Errorf("%d session lines after SIGTERM for %d answered queries (%d missing)", len(ls), n, missing)
	}
	t.Logf("%d queries; %d session lines read before SIGTERM, %d after exit", n, before, len(ls))
}
