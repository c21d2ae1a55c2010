package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dnsdiag/dnsdiag/plugin/dnsdiagtest"
	"github.com/miekg/dns"
)

// StartArgs is Start with more command-line arguments for coredns, such as
// -log-format json. It waits for the version banner in either log format:
// in JSON it is the msg of a record.
func StartArgs(t *testing.T, corefile string, args ...string) *Server {
	t.Helper()
	for attempt := 0; ; attempt++ {
		s := newServer(t)
		s.conf = filepath.Join(s.dir, "Corefile")
		s.WriteCorefile(corefile)
		s.start(binary, s.dir, append([]string{"-conf", s.conf}, args...)...)
		t.Cleanup(s.cleanup)

		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if s.count("CoreDNS-") > 0 && s.count("address already in use") == 0 {
				return s
			}
			if s.count("address already in use") > 0 || exitedNow(s) {
				break
			}
		}
		s.stopped = true
		s.kill()
		if attempt == 2 || s.count("address already in use") == 0 {
			t.Fatalf("coredns %v did not start; output:\n%s", args, strings.Join(s.Output(), "\n"))
		}
	}
}

func exitedNow(s *Server) bool {
	select {
	case <-s.exited:
		return true
	default:
		return false
	}
}

// jsonRecord is one record of CoreDNS's JSON log format.
type jsonRecord struct {
	Time    string
	Level   string
	Msg     string
	Plugin  string
	Session *dnsdiagtest.Line
	Report  *struct {
		Sessions, Failed int
		Verdicts         []struct{ Code, Text string }
	}

	raw string
}

// jsonRecords parses every line of s's output as a JSON record, failing on
// any line that is not one, and returns those of plugin/dnsdiag.
func jsonRecords(t *testing.T, s *Server) []jsonRecord {
	t.Helper()
	var rs []jsonRecord
	for _, l := range s.Output() {
		var r jsonRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("-log-format json wrote a line that is not a JSON record: %v\n%s", err, l)
		}
		if _, err := time.Parse(time.RFC3339Nano, r.Time); err != nil || r.Level == "" {
			t.Fatalf("record without a time or level: %s", l)
		}
		if r.Plugin == "dnsdiag" {
			r.raw = l
			rs = append(rs, r)
		}
	}
	return rs
}

// waitRecord waits, at most timeout, for a dnsdiag record for which pred
// holds.
func waitRecord(t *testing.T, s *Server, desc string, timeout time.Duration, pred func(jsonRecord) bool) jsonRecord {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		for _, r := range jsonRecords(t, s) {
			if pred(r) {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v; output:\n%s", desc, timeout, s.tail(40))
		}
	}
}

// TestLogFormatJSON: coredns -log-format json, an upstream answering
// SERVFAIL, `rate 1`, a report every second that fires on one failure.
// Every line is a JSON record; a session is an INFO record of plugin
// dnsdiag whose "session" member is the line as JSON; the report a WARN
// record with the report in "report"; the rate limit's warning a WARN
// record of plugin dnsdiag.
func TestLogFormatJSON(t *testing.T) {
	t.Parallel()
	s := StartArgs(t, `
.:{{DNS}} {
	bind 127.0.0.1
	dnsdiag {
		rate 1
		report 1s
		threshold min_failures 1
	}
	forward . 127.0.0.1:{{UP}}
}
`+richUpstream, "-log-format", "json")
	const n = 6
	for i := range n {
		Query(t, "udp", s.Addr("DNS"), fmt.Sprintf("j%d.fail.test.", i), dns.TypeA, 3*time.Second).MustAnswer(t, dns.RcodeServerFailure)
	}

	sess := waitRecord(t, s, "session record", lineTimeout, func(r jsonRecord) bool { return r.Session != nil })
	l := sess.Session
	if sess.Level != "INFO" || sess.Msg != "session" || l.Status != "Failed" || l.BitMap != 15 || !strings.HasSuffix(l.QName, ".fail.test.") ||
		l.RcodeString() != "SERVFAIL" || len(l.Upstreams) != 1 || l.Count("FORWARDER_RESPONSE") != 1 {
		t.Errorf("session record: %s", sess.raw)
	}
	var plain map[string]any
	if err := json.Unmarshal([]byte(sess.raw), &plain); err != nil {
		t.Fatal(err)
	}
	if _, ok := plain["session"].(map[string]any); !ok {
		t.Errorf(`"session" is not a JSON object: %s`, sess.raw)
	}

	rep := waitRecord(t, s, "report record", 10*time.Second, func(r jsonRecord) bool { return r.Report != nil })
	codes := ""
	for _, v := range rep.Report.Verdicts {
		codes += v.Code + " "
	}
	if rep.Level != "WARN" || rep.Msg != "report" || rep.Report.Failed < 1 || !strings.Contains(codes, "upstream_failing") {
		t.Errorf("report record: %s", rep.raw)
	}

	limited := regexp.MustCompile(`^rate limit: suppressed (\d+) session lines in the last 10s \(limit 1 lines/s\)`)
	warn := waitRecord(t, s, "rate-limit record", 15*time.Second, func(r jsonRecord) bool { return limited.MatchString(r.Msg) })
	if warn.Level != "WARN" || warn.Session != nil {
		t.Errorf("rate-limit record: %s", warn.raw)
	}
	for _, o := range s.Output() {
		if strings.Contains(o, dnsdiagtest.LinePrefix) {
			t.Errorf("a text line in JSON mode: %s", o)
		}
	}
}

// manyA is a template answer of n A records.
func manyA(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "        answer \"{{ .Name }} 60 IN A 10.0.%d.%d\"\n", i/250, i%250+1)
	}
	return b.String()
}

// TestLogFormatBoundedLine: a TCP answer of 500 A records, answered by a
// template below dnsdiag, by default and under `max_line 4k`. The client
// gets all 500; each session line, prefix and newline included, stays
// within its bound (16 KiB, 4 KiB), keeps its summary, and says in
// MessagesTruncated how many records it left out: the records the answer
// holds.
func TestLogFormatBoundedLine(t *testing.T) {
	t.Parallel()
	block := func(opts string) string {
		return `
.:{{` + opts + `}} {
	bind 127.0.0.1
	dnsdiag {
		log all
		` + map[string]string{"DEFAULT": "", "SMALL": "max_line 4k"}[opts] + `
	}
	template IN A many.test {
` + manyA(500) + `
	}
}
`
	}
	s := Start(t, block("DEFAULT")+block("SMALL"), nil)
	for _, tc := range []struct {
		port  string
		bound int
	}{{"DEFAULT", 16384}, {"SMALL", 4096}} {
		r := Query(t, "tcp", s.Addr(tc.port), "many.test.", dns.TypeA, 5*time.Second)
		got := r.MustAnswer(t, dns.RcodeSuccess)
		if len(got.Answer) != 500 {
			t.Fatalf("%s: %d records answered, want 500", tc.port, len(got.Answer))
		}
		l := s.WaitClient(r)
		if size := len(dnsdiagtest.LinePrefix) + len(l.Raw) + 1; size > tc.bound {
			t.Errorf("%s: line of %d bytes, want at most %d", tc.port, size, tc.bound)
		}
		if l.Status != "Succeeded" || l.BitMap != 3 || l.QName != "many.test." || l.Protocol != "tcp" || l.Time == "" {
			t.Errorf("%s: summary not kept: %s", tc.port, l.Summary())
		}
		var cut struct {
			MessagesTruncated *struct{ Records, Messages, Omitted int }
		}
		if err := json.Unmarshal([]byte(l.Raw), &cut); err != nil {
			t.Fatal(err)
		}
		want := len(got.Answer) + len(got.Ns) + len(got.Extra)
		if tr := cut.MessagesTruncated; tr == nil || tr.Records != want || tr.Messages+tr.Omitted != 1 {
			t.Errorf("%s: MessagesTruncated %+v, want the %d records of the answer", tc.port, tr, want)
		}
		if n := l.Count("CLIENT_RESPONSE"); n == 1 && l.Messages[len(l.Messages)-1].Header(t).ANCOUNT != 500 {
			t.Errorf("%s: the answer's header does not count its 500 records", tc.port)
		}
	}
}
