package report

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var (
	t0  = time.Date(2026, 12, 1, 19, 0, 0, 0, time.UTC)
	up1 = netip.MustParseAddrPort("10.0.0.2:53")
	up2 = netip.MustParseAddrPort("[2001:db8::53]:53")
)

// newTestReporter returns a Reporter whose window starts at t0 and whose
// clock stands at t0+30s.
func newTestReporter(cfg Config) *Reporter {
	r := New(cfg)
	r.start = t0
	r.now = func() time.Time { return t0.Add(30 * time.Second) }
	return r
}

// tick closes the window a minute after t0.
func tick(r *Reporter, sys System) (*Report, bool) {
	return r.Tick(t0.Add(time.Minute), sys)
}

// feed observes s n times.
func feed(r *Reporter, n int, s Session) {
	for range n {
		r.Observe(&s)
	}
}

// internal is a session answered inside CoreDNS with rcode.
func internal(name string, rcode int) Session {
	return Session{Name: name, Qtype: dns.TypeA, Rcode: rcode, Failed: failedRcode(rcode)}
}

// external is a session forwarded to up, whose single attempt took d and
// got rcode (-1: no answer, and the server answered SERVFAIL).
func external(name string, up netip.AddrPort, rcode int, d time.Duration) Session {
	a := Attempt{Upstream: up, Answered: rcode >= 0, Rcode: rcode, Duration: d}
	client := rcode
	if rcode < 0 {
		client = dns.RcodeServerFailure
	}
	return Session{External: true, Name: name, Qtype: dns.TypeA, Rcode: client, Failed: failedRcode(client), Attempts: []Attempt{a}}
}

func failedRcode(rc int) bool { return rc != dns.RcodeSuccess && rc != dns.RcodeNameError }

func codes(r *Report) []string {
	var c []string
	for _, v := range r.Verdicts {
		c = append(c, v.Code)
	}
	return c
}

func verdictText(t *testing.T, r *Report, code string) string {
	t.Helper()
	for _, v := range r.Verdicts {
		if v.Code == code {
			return v.Text
		}
	}
	t.Fatalf("no %s verdict in %v", code, codes(r))
	return ""
}

// wantCodes ticks and checks the verdicts, in order; none means no report.
func wantCodes(t *testing.T, r *Reporter, sys System, want ...string) *Report {
	t.Helper()
	rep, ok := tick(r, sys)
	if len(want) == 0 {
		if ok || rep != nil {
			t.Fatalf("healthy window reported: %v", codes(rep))
		}
		return nil
	}
	if !ok || rep == nil {
		t.Fatalf("no report, want %v", want)
	}
	if got := codes(rep); !slices.Equal(got, want) {
		t.Fatalf("verdicts %v, want %v", got, want)
	}
	return rep
}
