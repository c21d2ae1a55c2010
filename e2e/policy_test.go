package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// The log policy options, each in a server block of one process:
//
//	HDR     log all, messages header: legs carry header and question only
//	HITS    status Succeeded, bitmap 3: only successful cache answers
//	SLOW    slow 250ms: failures, plus any session slower than 250 ms;
//	        two forwards in one block, both hooked
//	SAMPLE  sample 3: failures, plus every 3rd success
func TestPolicyOptions(t *testing.T) {
	t.Parallel()
	s := Start(t, `
.:{{HDR}} {
    bind 127.0.0.1
    dnsdiag {
        log all
        messages header
    }
    forward . 127.0.0.1:{{UP}}
}
.:{{HITS}} {
    bind 127.0.0.1
    dnsdiag {
        status Succeeded
        bitmap 3
    }
    cache 30
    forward . 127.0.0.1:{{UP}}
}
.:{{SLOW}} {
    bind 127.0.0.1
    dnsdiag {
        slow 250ms
    }
    forward slow.test 127.0.0.1:{{SLOWUP}}
    forward . 127.0.0.1:{{UP}}
}
.:{{SAMPLE}} {
    bind 127.0.0.1
    dnsdiag {
        sample 3
    }
    forward . 127.0.0.1:{{UP}}
}
.:{{SLOWUP}} {
    bind 127.0.0.1
    erratic {
        delay 1 500ms
    }
}
`+richUpstream, nil)

	q := func(port, name string, rcode int) Result {
		t.Helper()
		r := Query(t, "udp", s.Addr(port), name, dns.TypeA, qTimeout)
		r.MustAnswer(t, rcode)
		return r
	}
	linesOf := func(port string) []Line {
		return s.LinesWhere(func(l Line) bool { return l.Server == s.ServerLabel(port) })
	}

	// messages header
	rh := q("HDR", "h.ok.test", dns.RcodeSuccess)
	lh := s.WaitClient(rh)
	check(t, lh, want{Status: "Succeeded", BitMap: 15, Types: legs15, Upstreams: 1})
	checkClientLegs(t, lh, rh)
	for _, m := range lh.Messages {
		var members map[string]json.RawMessage
		if err := json.Unmarshal(m.Message, &members); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"answerRRs", "authorityRRs", "additionalRRs"} {
			if _, ok := members[k]; ok {
				t.Errorf("messages header: %s leg has %s: %s", m.Type, k, m.Message)
			}
		}
		if _, ok := members["QNAME"]; !ok {
			t.Errorf("messages header: %s leg lost its question: %s", m.Type, m.Message)
		}
	}
	if h := lh.Messages[3].Header(t); h.ANCOUNT != 1 {
		t.Errorf("messages header keeps the counts: ANCOUNT %d, want 1", h.ANCOUNT)
	}

	// status Succeeded + bitmap 3
	q("HITS", "a.ok.test", dns.RcodeSuccess)            // miss: 15, not logged
	hit := q("HITS", "a.ok.test", dns.RcodeSuccess)     // hit: 3, logged
	q("HITS", "a.fail.test", dns.RcodeServerFailure)    // Failed 15
	q("HITS", "a.fail.test", dns.RcodeServerFailure)    // cached SERVFAIL: Failed 3
	q("HITS", "a.nx.test", dns.RcodeNameError)          // 15
	nxHit := q("HITS", "a.nx.test", dns.RcodeNameError) // Succeeded 3, logged
	check(t, s.WaitClient(hit), want{Status: "Succeeded", BitMap: 3, Rcode: "NOERROR", Types: legs3, Upstreams: 0})
	check(t, s.WaitClient(nxHit), want{Status: "Succeeded", BitMap: 3, Rcode: "NXDOMAIN", Types: legs3, Upstreams: 0})

	// slow 250ms: the slow success is logged, the fast one is not.
	q("SLOW", "fast.ok.test", dns.RcodeSuccess)
	slow := q("SLOW", "x.slow.test", dns.RcodeSuccess)
	failed := q("SLOW", "x.fail.test", dns.RcodeServerFailure)
	ls := s.WaitClient(slow)
	check(t, ls, want{Status: "Succeeded", BitMap: 15, Types: legs15, Upstreams: 1})
	checkUpstream(t, ls, 0, s.Addr("SLOWUP"), "udp", "NOERROR")
	if ls.DurationMs < 250 {
		t.Errorf("slow session logged with DurationMs %v", ls.DurationMs)
	}
	lf := s.WaitClient(failed)
	check(t, lf, want{Status: "Failed", BitMap: 15, Types: legs15, Upstreams: 1})
	checkUpstream(t, lf, 0, s.Addr("UP"), "udp", "SERVFAIL")

	// sample 3: the 3rd, 6th and 9th successes, and the failure.
	var sampled []Result
	for i := 1; i <= 9; i++ {
		r := q("SAMPLE", fmt.Sprintf("s%d.ok.test", i), dns.RcodeSuccess)
		if i%3 == 0 {
			sampled = append(sampled, r)
		}
		if i == 5 {
			sampled = append(sampled, q("SAMPLE", "s.fail.test", dns.RcodeServerFailure))
		}
	}
	for _, r := range sampled {
		s.WaitClient(r)
	}

	// Every line has been written by now (one writer, in order): check
	// that nothing else was.
	got := func(port string) string {
		var names []string
		for _, l := range linesOf(port) {
			names = append(names, fmt.Sprintf("%s/%d", strings.TrimSuffix(l.QName, "."), l.BitMap))
		}
		return strings.Join(names, " ")
	}
	for port, want := range map[string]string{
		"HDR":    "h.ok.test/15",
		"HITS":   "a.ok.test/3 a.nx.test/3",
		"SLOW":   "x.slow.test/15 x.fail.test/15",
		"SAMPLE": "s3.ok.test/15 s.fail.test/15 s6.ok.test/15 s9.ok.test/15",
	} {
		if g := got(port); g != want {
			t.Errorf("%s logged %q, want %q", port, g, want)
		}
	}
}
