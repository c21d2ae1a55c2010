package e2e

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var rlCorefile = `
.:{{DNS}} {
	bind 127.0.0.1
	prometheus 127.0.0.1:{{PROM}}
	dnsdiag {
		rate 5
	}
	forward . 127.0.0.1:{{UP}}
}
` + richUpstream

var rlReport = regexp.MustCompile(`\[WARNING\] plugin/dnsdiag: rate limit: suppressed (\d+) session lines in the last \S+ \(limit (\d+) lines/s\)`)

// TestRateLimitBurstOfFailures sends 200 failing queries as fast as a few
// concurrent clients can to `dnsdiag { rate 5 }`: the lines written stay
// within the token bucket (burst 10 + 5/s), sessions_total still counts all
// 200, log_suppressed_total{reason="rate_limit"} counts exactly the rest,
// and the periodic WARNING reports the same number.
func TestRateLimitBurstOfFailures(t *testing.T) {
	t.Parallel()
	s := Start(t, rlCorefile, nil)
	dnsAddr, prom, server := s.Addr("DNS"), s.Addr("PROM"), s.ServerLabel("DNS")

	const n = 200
	started := time.Now()
	results := Concurrently(n, 8, func(i int) Result {
		return Query(t, "udp", dnsAddr, fmt.Sprintf("r%d.fail.test.", i), dns.TypeA, 3*time.Second)
	})
	var failed []string
	for i, r := range results {
		if r.Err != nil || r.Msg == nil || r.Msg.Rcode != dns.RcodeServerFailure {
			failed = append(failed, fmt.Sprintf("r%d: %v %v", i, r.Err, r.Msg))
		}
	}
	elapsed := time.Since(started)
	burstEnd := time.Now()
	if len(failed) > 0 {
		t.Fatalf("%d of %d queries did not get SERVFAIL: %v", len(failed), n, failed)
	}
	t.Logf("%d failing queries in %v", n, elapsed)

	ss := promWait(t, prom, "200 Failed sessions, each logged or suppressed", 10*time.Second, func(ss []promSample) bool {
		return promSum(ss, "coredns_dnsdiag_sessions_total", map[string]string{"server": server}) == n &&
			promSum(ss, "coredns_dnsdiag_log_lines_total", map[string]string{"server": server})+
				promSum(ss, "coredns_dnsdiag_log_suppressed_total", map[string]string{"server": server}) == n
	})
	if got := promSum(ss, "coredns_dnsdiag_sessions_total", map[string]string{"server": server, "status": "Failed", "bitmap": "15"}); got != n {
		t.Errorf(`sessions_total{status="Failed",bitmap="15"} = %v, want %d`, got, n)
	}
	linesTotal := int(promSum(ss, "coredns_dnsdiag_log_lines_total", map[string]string{"server": server}))
	rateSuppressed := int(promSum(ss, "coredns_dnsdiag_log_suppressed_total", map[string]string{"server": server, "reason": "rate_limit"}))
	if p := promSum(ss, "coredns_dnsdiag_log_suppressed_total", map[string]string{"reason": "policy"}); p != 0 {
		t.Errorf(`log_suppressed_total{reason="policy"} = %v, want 0: every session failed`, p)
	}

	// The lines in the output are the lines counted.
	s.WaitLines("written", linesTotal, func(Line) bool { return true })
	time.Sleep(100 * time.Millisecond)
	written := len(s.Lines())
	if written != linesTotal {
		t.Errorf("%d session lines in the output, log_lines_total says %d", written, linesTotal)
	}
	limit := 5*2 + int(5*elapsed.Seconds()) + 1
	if written < 1 || written > limit {
		t.Errorf("%d session lines for %d failures in %v, want between 1 and %d (burst 10 + 5/s)", written, n, elapsed, limit)
	}
	if rateSuppressed != n-written {
		t.Errorf(`log_suppressed_total{reason="rate_limit"} = %d, want %d - %d lines = %d`, rateSuppressed, n, written, n-written)
	}
	for _, l := range s.Lines() {
		check(t, l, want{Status: "Failed", BitMap: 15, Rcode: "SERVFAIL", Server: server, Upstreams: 1})
	}

	// The periodic report (every 10 s) says how many lines it suppressed;
	// the burst may straddle two reports, so add them up.
	deadline := burstEnd.Add(12 * time.Second)
	reported, reports := 0, 0
	for {
		reported, reports = 0, 0
		for _, o := range s.Output() {
			if m := rlReport.FindStringSubmatch(o); m != nil {
				k, _ := strconv.Atoi(m[1])
				reported += k
				reports++
				if m[2] != "5" {
					t.Errorf("report names limit %s, want 5: %s", m[2], o)
				}
			}
		}
		if reported >= rateSuppressed || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if reported != rateSuppressed {
		t.Errorf("rate-limit reports say %d suppressed lines (%d reports), want %d", reported, reports, rateSuppressed)
	}
	t.Logf("%d lines written, %d suppressed (reported in %d WARNING line(s)), limit %d", written, rateSuppressed, reports, limit)
}
