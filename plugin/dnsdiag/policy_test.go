package dnsdiag

import (
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"
)

func policyFrom(t *testing.T, corefile string) *policy {
	t.Helper()
	d, err := parse(caddy.NewTestController("dns", corefile))
	if err != nil {
		t.Fatal(err)
	}
	return &d.policy
}

func TestPolicySelects(t *testing.T) {
	fast := &session{bits: 3, start: time.Unix(0, 0), end: time.Unix(0, int64(time.Millisecond))}
	slow := &session{bits: 15, start: time.Unix(0, 0), end: time.Unix(2, 0)}
	upstreamDown := &session{bits: 5, start: time.Unix(0, 0), end: time.Unix(4, 0)}
	for _, tc := range []struct {
		corefile string
		s        *session
		st       status
		want     bool
	}{
		{"dnsdiag", fast, statusSucceeded, false},
		{"dnsdiag", fast, statusFailed, true},
		{"dnsdiag", fast, statusSampleLoss, true},
		{"dnsdiag {\n log all\n}", fast, statusSucceeded, true},
		{"dnsdiag {\n log none\n}", upstreamDown, statusFailed, false},
		{"dnsdiag {\n bitmap 5\n}", upstreamDown, statusFailed, true},
		{"dnsdiag {\n bitmap 5\n}", slow, statusFailed, false},
		{"dnsdiag {\n status SampleLoss\n}", fast, statusFailed, false},
		{"dnsdiag {\n slow 1s\n}", slow, statusSucceeded, true},
		{"dnsdiag {\n slow 1s\n}", fast, statusSucceeded, false},
	} {
		tc.s.verdict.status = tc.st
		if got, _ := policyFrom(t, tc.corefile).selects(tc.s); got != tc.want {
			t.Errorf("%q selects BitMap %d %v = %v, want %v", tc.corefile, tc.s.bits, tc.st, got, tc.want)
		}
	}
}

func TestPolicySamplesOneInN(t *testing.T) {
	p := policyFrom(t, "dnsdiag {\n sample 4\n}")
	s := &session{bits: 3, verdict: verdict{status: statusSucceeded}}
	n := 0
	for range 40 {
		if ok, _ := p.selects(s); ok {
			n++
		}
	}
	if n != 10 {
		t.Errorf("sample 4 selected %d of 40 Succeeded sessions, want 10", n)
	}
}

func TestLimiter(t *testing.T) {
	var l limiter
	l.setRate(10)
	now := time.Unix(100, 0)
	allowed := 0
	for range 100 {
		if l.allow(now) {
			allowed++
		}
	}
	if allowed != 10*defaultRateBurst {
		t.Errorf("burst allowed %d, want %d", allowed, 10*defaultRateBurst)
	}
	if l.allow(now.Add(50 * time.Millisecond)) {
		t.Error("allowed a line before a token was earned")
	}
	if !l.allow(now.Add(150 * time.Millisecond)) {
		t.Error("refused a line after a token was earned")
	}
	if got := l.suppressed.Load(); got != 100-int64(allowed)+1 {
		t.Errorf("suppressed %d, want %d", got, 100-allowed+1)
	}
	// A held session is decided after later ones, with its own (earlier)
	// end: that must neither earn tokens nor take them back.
	var late limiter
	late.setRate(10)
	late.allow(now.Add(3 * time.Second))
	if !late.allow(now) {
		t.Error("a session that ended before the latest one seen found no token: its time took tokens back")
	}
	var unlimited limiter
	for range 1000 {
		if !unlimited.allow(now) {
			t.Fatal("rate 0 must not limit")
		}
	}
}

func TestLimiterReport(t *testing.T) {
	logs := captureLog(t)
	var l limiter
	l.setRate(1)
	for range 5 {
		l.allow(time.Unix(100, 0))
	}
	l.report(10 * time.Second)
	l.report(10 * time.Second) // nothing new: no second line
	want := "[WARNING] plugin/dnsdiag: rate limit: suppressed 3 session lines in the last 10s (limit 1 lines/s)"
	if got := logs.String(); !containsOnce(got, want) {
		t.Errorf("report wrote %q, want one line containing %q", got, want)
	}
}

func containsOnce(s, sub string) bool { return strings.Count(s, sub) == 1 }
