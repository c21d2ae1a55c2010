package e2e

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// ---------------------------------------------------------------------------
// Prometheus scraping (shared by metrics_test, ratelimit_test and
// lifecycle_test).

// promSample is one series of a promScrape: metric name, labels and value.
type promSample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

func (s promSample) String() string {
	var ls []string
	for k, v := range s.Labels {
		ls = append(ls, k+"="+strconv.Quote(v))
	}
	sort.Strings(ls)
	return fmt.Sprintf("%s{%s} %v", s.Name, strings.Join(ls, ","), s.Value)
}

// key identifies the series: name and sorted labels (s is a copy, so
// zeroing its value leaves the caller's sample alone).
func (s promSample) key() string {
	s.Value = 0
	return s.String()
}

// promScrapeText fetches the text exposition of the prometheus plugin at addr.
func promScrapeText(t testing.TB, addr string) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("promScrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("promScrape %s: %v", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("promScrape %s: HTTP %d:\n%s", addr, resp.StatusCode, body)
	}
	return string(body)
}

// promScrape fetches and parses every series the prometheus plugin at addr
// exposes.
func promScrape(t testing.TB, addr string) []promSample {
	t.Helper()
	ss, err := promParse(promScrapeText(t, addr))
	if err != nil {
		t.Fatalf("promScrape %s: %v", addr, err)
	}
	return ss
}

// promParse is a small parser for the Prometheus text format:
// `name{l="v",...} value [timestamp]`, comments skipped.
func promParse(text string) ([]promSample, error) {
	var out []promSample
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		s := promSample{Labels: map[string]string{}}
		i := strings.IndexAny(line, "{ ")
		if i < 0 {
			return nil, fmt.Errorf("line %d: %q", n+1, line)
		}
		s.Name = line[:i]
		rest := line[i:]
		if rest[0] == '{' {
			rest = rest[1:]
			for {
				rest = strings.TrimLeft(rest, ", ")
				if strings.HasPrefix(rest, "}") {
					rest = rest[1:]
					break
				}
				eq := strings.Index(rest, "=\"")
				if eq < 0 {
					return nil, fmt.Errorf("line %d: bad labels: %q", n+1, line)
				}
				name := rest[:eq]
				rest = rest[eq+2:]
				var v strings.Builder
				j := 0
				for ; j < len(rest); j++ {
					c := rest[j]
					if c == '\\' && j+1 < len(rest) {
						j++
						switch rest[j] {
						case 'n':
							v.WriteByte('\n')
						default:
							v.WriteByte(rest[j])
						}
						continue
					}
					if c == '"' {
						break
					}
					v.WriteByte(c)
				}
				if j >= len(rest) {
					return nil, fmt.Errorf("line %d: unterminated label value: %q", n+1, line)
				}
				s.Labels[name] = v.String()
				rest = rest[j+1:]
			}
		}
		f := strings.Fields(rest)
		if len(f) < 1 {
			return nil, fmt.Errorf("line %d: no value: %q", n+1, line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: value: %v", n+1, err)
		}
		s.Value = v
		out = append(out, s)
	}
	return out, nil
}

// promSum is the sum of the series of metric name whose labels include
// every label of match.
func promSum(ss []promSample, name string, match map[string]string) float64 {
	sum := 0.0
	for _, s := range ss {
		if s.Name != name {
			continue
		}
		ok := true
		for k, v := range match {
			if s.Labels[k] != v {
				ok = false
				break
			}
		}
		if ok {
			sum += s.Value
		}
	}
	return sum
}

// promSeries is every series of metric name.
func promSeries(ss []promSample, name string) []promSample {
	var out []promSample
	for _, s := range ss {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// promWait scrapes addr until cond holds, at most timeout, and returns
// the last promScrape; on timeout it fails the test showing the dnsdiag series.
func promWait(t testing.TB, addr, desc string, timeout time.Duration, cond func([]promSample) bool) []promSample {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ss := promScrape(t, addr)
		if cond(ss) {
			return ss
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for metrics: %s; dnsdiag series:\n%s", desc, promDnsdiag(ss))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func promDnsdiag(ss []promSample) string {
	var b strings.Builder
	for _, s := range ss {
		if strings.HasPrefix(s.Name, "coredns_dnsdiag_") && !strings.HasSuffix(s.Name, "_bucket") {
			b.WriteString(s.String() + "\n")
		}
	}
	return b.String()
}

// ---------------------------------------------------------------------------

// mtDNSBlock is the client-facing block {{DNS}} of the metrics and
// monitoring tests: prometheus on {{PROM}}, dnsdiag, an acl that drops
// drop.test, a cache, and forward to {{UP}}.
const mtDNSBlock = `
.:{{DNS}} {
    bind 127.0.0.1
    prometheus 127.0.0.1:{{PROM}}
    dnsdiag
    acl drop.test {
        drop
    }
    cache
    forward . 127.0.0.1:{{UP}}
}`

var mtCorefile = mtDNSBlock + richUpstream

// TestMetricsExactCounts drives a known mix of traffic through
// dnsdiag + acl + cache + forward and checks every coredns_dnsdiag_* series
// exactly.
func TestMetricsExactCounts(t *testing.T) {
	t.Parallel()
	s := Start(t, mtCorefile, nil)
	dnsAddr, prom := s.Addr("DNS"), s.Addr("PROM")
	server := s.ServerLabel("DNS")
	upstream := s.Addr("UP")

	var (
		mu      sync.Mutex
		clients []string
	)
	q := func(name string, rcode int) {
		r := Query(t, "udp", dnsAddr, name, dns.TypeA, 2*time.Second)
		r.MustAnswer(t, rcode)
		mu.Lock()
		clients = append(clients, r.Local)
		mu.Unlock()
	}

	// 7 distinct answered names: forwarded, BitMap 15, Succeeded.
	for i := 1; i <= 7; i++ {
		q(fmt.Sprintf("a%d.ok.test.", i), dns.RcodeSuccess)
	}
	// 3 repeats: cache hits, BitMap 3, Succeeded.
	for i := 1; i <= 3; i++ {
		q(fmt.Sprintf("a%d.ok.test.", i), dns.RcodeSuccess)
	}
	// 3 NXDOMAIN: forwarded, BitMap 15, Succeeded.
	for i := 1; i <= 3; i++ {
		q(fmt.Sprintf("n%d.nx.test.", i), dns.RcodeNameError)
	}
	// 4 upstream SERVFAIL, distinct names since cache keeps SERVFAIL:
	// forwarded, BitMap 15, Failed.
	for i := 1; i <= 4; i++ {
		q(fmt.Sprintf("f%d.fail.test.", i), dns.RcodeServerFailure)
	}
	// 2 acl drops: the client gets nothing, BitMap 1, Failed.
	var wg sync.WaitGroup
	for i := 1; i <= 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := Query(t, "udp", dnsAddr, fmt.Sprintf("d%d.drop.test.", i), dns.TypeA, 700*time.Millisecond)
			if r.Msg != nil {
				t.Errorf("acl drop: got an answer %v", r.Msg)
			}
			mu.Lock()
			clients = append(clients, r.Local)
			mu.Unlock()
		}()
	}
	wg.Wait()

	const total = 7 + 3 + 3 + 4 + 2
	sessions := func(ss []promSample, status, bitmap string) float64 {
		m := map[string]string{"server": server}
		if status != "" {
			m["status"] = status
		}
		if bitmap != "" {
			m["bitmap"] = bitmap
		}
		return promSum(ss, "coredns_dnsdiag_sessions_total", m)
	}
	ss := promWait(t, prom, fmt.Sprintf("%d sessions and 6 lines", total), 10*time.Second, func(ss []promSample) bool {
		return sessions(ss, "", "") == total && promSum(ss, "coredns_dnsdiag_log_lines_total", nil) == 6
	})

	// sessions_total: exactly these four series.
	wantSessions := map[[2]string]float64{
		{"Succeeded", "15"}: 7 + 3,
		{"Succeeded", "3"}:  3,
		{"Failed", "15"}:    4,
		{"Failed", "1"}:     2,
	}
	got := map[[2]string]float64{}
	for _, x := range promSeries(ss, "coredns_dnsdiag_sessions_total") {
		if x.Labels["server"] != server {
			t.Errorf("sessions_total series with server %q, want %q: %v", x.Labels["server"], server, x)
		}
		got[[2]string{x.Labels["status"], x.Labels["bitmap"]}] += x.Value
	}
	for k, v := range wantSessions {
		if got[k] != v {
			t.Errorf("sessions_total{status=%q,bitmap=%q} = %v, want %v", k[0], k[1], got[k], v)
		}
	}
	for k, v := range got {
		if _, ok := wantSessions[k]; !ok && v != 0 {
			t.Errorf("unexpected sessions_total{status=%q,bitmap=%q} = %v", k[0], k[1], v)
		}
	}

	// session_duration_seconds: one observation per session.
	if n := promSum(ss, "coredns_dnsdiag_session_duration_seconds_count", map[string]string{"server": server}); n != total {
		t.Errorf("session_duration_seconds_count = %v, want %d (the session total)", n, total)
	}
	for _, st := range []string{"Succeeded", "Failed"} {
		n := promSum(ss, "coredns_dnsdiag_session_duration_seconds_count", map[string]string{"server": server, "status": st})
		if want := sessions(ss, st, ""); n != want {
			t.Errorf("session_duration_seconds_count{status=%q} = %v, want %v", st, n, want)
		}
	}

	// upstream_attempts_total by outcome: 7 + 3 + 4 upstream exchanges.
	wantOutcome := map[string]float64{"NOERROR": 7, "NXDOMAIN": 3, "SERVFAIL": 4}
	gotOutcome := map[string]float64{}
	for _, x := range promSeries(ss, "coredns_dnsdiag_upstream_attempts_total") {
		if x.Labels["upstream"] != upstream || x.Labels["server"] != server {
			t.Errorf("upstream_attempts_total series with unexpected labels: %v (want server %q upstream %q)", x, server, upstream)
		}
		gotOutcome[x.Labels["outcome"]] += x.Value
	}
	for k, v := range wantOutcome {
		if gotOutcome[k] != v {
			t.Errorf("upstream_attempts_total{outcome=%q} = %v, want %v", k, gotOutcome[k], v)
		}
	}
	for k, v := range gotOutcome {
		if _, ok := wantOutcome[k]; !ok && v != 0 {
			t.Errorf("unexpected upstream_attempts_total{outcome=%q} = %v", k, v)
		}
	}
	if n := promSum(ss, "coredns_dnsdiag_upstream_attempt_duration_seconds_count", nil); n != 14 {
		t.Errorf("upstream_attempt_duration_seconds_count = %v, want 14", n)
	}

	// Default policy logs the 6 Failed sessions, suppresses the 13
	// Succeeded ones, and the rate limit (20/s) has no effect.
	if n := promSum(ss, "coredns_dnsdiag_log_lines_total", map[string]string{"server": server}); n != 6 {
		t.Errorf("log_lines_total = %v, want 6", n)
	}
	if n := promSum(ss, "coredns_dnsdiag_log_suppressed_total", map[string]string{"server": server, "reason": "policy"}); n != 13 {
		t.Errorf(`log_suppressed_total{reason="policy"} = %v, want 13`, n)
	}
	if n := promSum(ss, "coredns_dnsdiag_log_suppressed_total", map[string]string{"reason": "rate_limit"}); n != 0 {
		t.Errorf(`log_suppressed_total{reason="rate_limit"} = %v, want 0`, n)
	}
	if n := promSum(ss, "coredns_dnsdiag_background_sessions_total", nil); n != 0 {
		t.Errorf("background_sessions_total = %v, want 0", n)
	}
	if n := promSum(ss, "coredns_dnsdiag_dropped_total", nil); n != 0 {
		t.Errorf("dropped_total = %v, want 0", n)
	}

	// inflight_sessions returns to 0.
	promWait(t, prom, "inflight_sessions back to 0", 5*time.Second, func(ss []promSample) bool {
		return len(promSeries(ss, "coredns_dnsdiag_inflight_sessions")) == 1 &&
			promSum(ss, "coredns_dnsdiag_inflight_sessions", nil) == 0
	})

	// The lines logged are the 6 Failed sessions.
	ls := s.WaitLines("Failed", 6, func(l Line) bool { return true })
	if len(ls) != 6 {
		t.Errorf("got %d session lines, want 6", len(ls))
	}
	byBitmap := map[int]int{}
	for _, l := range ls {
		check(t, l, want{Status: "Failed", Server: server, Upstreams: -1})
		byBitmap[l.BitMap]++
		if l.BitMap == 1 && l.RcodeString() != "null" {
			t.Errorf("dropped query: Rcode %s, want null: %s", l.RcodeString(), l.Raw)
		}
		if l.BitMap == 15 && l.RcodeString() != "SERVFAIL" {
			t.Errorf("upstream SERVFAIL: Rcode %s: %s", l.RcodeString(), l.Raw)
		}
	}
	if byBitmap[15] != 4 || byBitmap[1] != 2 {
		t.Errorf("logged BitMaps %v, want 4×15 and 2×1", byBitmap)
	}

	// Cardinality: no label of any dnsdiag series carries a query name or
	// a client address, and only the documented label names exist.
	allowed := map[string]bool{"server": true, "status": true, "bitmap": true, "upstream": true, "outcome": true, "reason": true, "code": true, "file": true, "family": true, "counter": true, "le": true}
	for _, x := range ss {
		if !strings.HasPrefix(x.Name, "coredns_dnsdiag_") {
			continue
		}
		for k, v := range x.Labels {
			if !allowed[k] {
				t.Errorf("unexpected label %q on %v", k, x)
			}
			if strings.Contains(v, "test") {
				t.Errorf("label %s=%q carries a query name: %v", k, v, x)
			}
			for _, c := range clients {
				if strings.Contains(v, c) {
					t.Errorf("label %s=%q carries client address %s: %v", k, v, c, x)
				}
			}
			if k != "server" && k != "upstream" && strings.Contains(v, "127.0.0.1") {
				t.Errorf("label %s=%q carries an address: %v", k, v, x)
			}
		}
	}
}
