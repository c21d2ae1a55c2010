package dnsdiag

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/test"
	"github.com/dnsdiag/dnsdiag/plugin/dnsdiagtest"
	"github.com/dnsdiag/dnsdiag/plugin/hints"
	"github.com/miekg/dns"
)

// manyRecords is a next plugin that answers every query with n A records,
// times times (more than once: a plugin that writes twice).
func manyRecords(n, times int) plugin.HandlerFunc {
	return func(_ context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
		m := new(dns.Msg)
		m.SetReply(r)
		for i := range n {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30},
				A:   net.IPv4(10, 1, byte(i>>8), byte(i)),
			})
		}
		for range times {
			w.WriteMsg(m)
		}
		return dns.RcodeSuccess, nil
	}
}

// truncation is the MessagesTruncated member of a line.
type truncation struct{ Records, Messages, Omitted int }

// boundedLine is a session line as the bound tests read it: its length as
// written, with prefix and newline, and what a cut line says.
type boundedLine struct {
	line
	size      int
	truncated *truncation
	messages  []map[string]any // each leg's Message
}

func readBounded(t *testing.T, text string) []boundedLine {
	t.Helper()
	var out []boundedLine
	for _, l := range parseSessionLines(t, text) {
		var extra struct {
			MessagesTruncated *truncation
			Messages          []struct{ Message map[string]any }
		}
		if err := json.Unmarshal([]byte(l.Raw), &extra); err != nil {
			t.Fatal(err)
		}
		b := boundedLine{line: l, size: stdHeader() + len(dnsdiagtest.LinePrefix) + len(l.Raw) + 1, truncated: extra.MessagesTruncated}
		for _, m := range extra.Messages {
			b.messages = append(b.messages, m.Message)
		}
		out = append(out, b)
	}
	return out
}

// oneBounded serves one query through an instance of corefile in front of
// next and returns its one session line.
func oneBounded(t *testing.T, corefile string, next plugin.Handler) boundedLine {
	t.Helper()
	logs := captureLog(t)
	d := newTestDiag(t, corefile, next)
	d.ServeDNS(context.Background(), &test.ResponseWriter{}, query("bound.test", dns.TypeA))
	lines.flush(flushTimeout)
	ls := readBounded(t, logs.String())
	if len(ls) != 1 {
		t.Fatalf("%q: %d session lines, want 1", corefile, len(ls))
	}
	return ls[0]
}

// recordsOf is ANCOUNT + NSCOUNT + ARCOUNT of an RFC 8427 message.
func recordsOf(m map[string]any) int {
	n := 0
	for _, k := range []string{"ANCOUNT", "NSCOUNT", "ARCOUNT"} {
		v, _ := m[k].(float64)
		n += int(v)
	}
	return n
}

// TestBoundBigAnswer: an answer of 500 records, asked twice from the same
// client with the same ID (so the second session carries a hint). Both
// lines stay within the default 16 KiB, prefix and newline included; the
// summary and the hint are whole; the query keeps its whole message and
// the answer only its header, whose counts still say 500; and the line
// says 500 records of 1 message were left out.
func TestBoundBigAnswer(t *testing.T) {
	logs := captureLog(t)
	d := newTestDiag(t, "dnsdiag {\n log all\n rate 0\n}", manyRecords(500, 1))
	q := query("big.test", dns.TypeA)
	for range 2 {
		d.ServeDNS(context.Background(), &test.ResponseWriter{}, q)
	}
	d.diag.releaseAll(d.release) // a retransmission is held for the other half of an A/AAAA pair
	lines.flush(flushTimeout)
	ls := readBounded(t, logs.String())
	if len(ls) != 2 {
		t.Fatalf("%d session lines, want 2:\n%s", len(ls), logs.String())
	}
	for i, l := range ls {
		if l.size > defaultMaxLine {
			t.Errorf("line %d is %d bytes, want at most %d", i, l.size, defaultMaxLine)
		}
		if l.Status != "Succeeded" || l.BitMap != 3 || l.QName != "big.test." || l.QType != "A" || l.RcodeString() != "NOERROR" || l.Time == "" {
			t.Errorf("line %d: summary not kept: %s", i, l.Summary())
		}
		if got := strings.Join(l.Types(), " "); got != "CLIENT_QUERY CLIENT_RESPONSE" {
			t.Fatalf("line %d: legs %s, want the query and the answer", i, got)
		}
		if _, whole := l.messages[0]["answerRRs"]; !whole {
			t.Errorf("line %d: the query lost its sections: %v", i, l.messages[0])
		}
		if _, whole := l.messages[1]["answerRRs"]; whole || recordsOf(l.messages[1]) != 500 {
			t.Errorf("line %d: the answer is not its header with 500 records counted: %v", i, l.messages[1])
		}
		if l.truncated == nil || *l.truncated != (truncation{Records: 500, Messages: 1}) {
			t.Errorf("line %d: MessagesTruncated %+v, want 500 records of 1 message", i, l.truncated)
		}
	}
	if _, ok := ls[1].Hint(string(hints.RetransmitAfterAnswer)); !ok {
		t.Errorf("the retransmission's line lost its hint: %s", ls[1].Raw)
	}
}

// TestBoundManyLegs: eleven legs of 40 records each against `max_line 4k`:
// the line fits, the legs shown and the legs omitted are all eleven, and
// Records is exactly the header counts of the messages cut to their header
// plus 40 for each leg omitted.
func TestBoundManyLegs(t *testing.T) {
	l := oneBounded(t, "dnsdiag {\n log all\n rate 0\n max_line 4k\n}", manyRecords(40, 10))
	if l.size > 4096 {
		t.Errorf("line is %d bytes, want at most 4096", l.size)
	}
	tr := l.truncated
	if tr == nil || tr.Omitted == 0 || len(l.Messages)+tr.Omitted != 11 {
		t.Fatalf("%d legs shown, MessagesTruncated %+v: want some of 11 legs omitted, the others shown", len(l.Messages), tr)
	}
	records, cut := 40*tr.Omitted, 0
	for _, m := range l.messages {
		if _, whole := m["answerRRs"]; !whole && recordsOf(m) > 0 {
			records += recordsOf(m)
			cut++
		}
	}
	if tr.Records != records || tr.Messages != cut {
		t.Errorf("MessagesTruncated %+v, want %d records, %d messages", tr, records, cut)
	}
}

// TestBoundKeepsWhatFits: a line under the bound is the line unbounded:
// no MessagesTruncated, every record there; `max_line off` lets a 500
// record answer through whole.
func TestBoundKeepsWhatFits(t *testing.T) {
	for _, tc := range []struct {
		corefile string
		records  int
	}{
		{"dnsdiag {\n log all\n}", 3},
		{"dnsdiag {\n log all\n max_line off\n}", 500},
	} {
		l := oneBounded(t, tc.corefile, manyRecords(tc.records, 1))
		rrs, _ := l.messages[1]["answerRRs"].([]any)
		if l.truncated != nil || len(rrs) != tc.records || strings.Contains(l.Raw, "MessagesTruncated") {
			t.Errorf("%q: %d records shown of %d, MessagesTruncated %+v", tc.corefile, len(rrs), tc.records, l.truncated)
		}
	}
}

// TestBoundHeaderOnlyLines: with `messages header` nothing more is left out
// of the messages, so a line that does not fit only omits legs, and counts
// no records.
func TestBoundHeaderOnlyLines(t *testing.T) {
	l := oneBounded(t, "dnsdiag {\n log all\n messages header\n max_line 2048\n}", manyRecords(5, 20))
	if l.size > 2048 || l.truncated == nil || l.truncated.Records != 0 || l.truncated.Messages != 0 || len(l.Messages)+l.truncated.Omitted != 21 {
		t.Errorf("%d bytes, %d legs, MessagesTruncated %+v: want at most 2048 bytes, 21 legs shown or omitted, no records counted", l.size, len(l.Messages), l.truncated)
	}
}

func TestMaxLineOption(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		want int
	}{
		{"16384", 16384}, {"64k", 65536}, {"2K", 2048}, {"1m", 1 << 20}, {"2048", 2048}, {"off", -1},
	} {
		c := caddy.NewTestController("dns", "dnsdiag {\n max_line "+tc.arg+"\n}")
		d, err := parse(c)
		if err != nil {
			t.Errorf("max_line %s: %v", tc.arg, err)
			continue
		}
		if d.policy.maxLine != tc.want {
			t.Errorf("max_line %s: %d, want %d", tc.arg, d.policy.maxLine, tc.want)
		}
	}
	for _, tc := range []struct{ corefile, want string }{
		{"dnsdiag {\n log all\n max_line\n}", "Testfile:3 - Error during parsing: Wrong argument count"},
		{"dnsdiag {\n max_line 2047\n}", "Testfile:2 - Error during parsing: max_line: want"},
		{"dnsdiag {\n max_line 0\n}", "Testfile:2 - Error during parsing: max_line"},
		{"dnsdiag {\n max_line 65m\n}", "Testfile:2 - Error during parsing: max_line"},
		{"dnsdiag {\n max_line -1\n}", "Testfile:2 - Error during parsing: max_line"},
		{"dnsdiag {\n max_line 16kb\n}", "Testfile:2 - Error during parsing: max_line"},
		{"dnsdiag {\n max_line 16384 1\n}", "Testfile:2 - Error during parsing: max_line"},
		{"dnsdiag {\n max_line 4k\n max_line 8k\n}", "Testfile:3 - Error during parsing: duplicate option \"max_line\""},
		{"dnsdiag {\n log none\n max_line 8k\n}", "Testfile:3 - Error during parsing: 'log none' logs nothing"},
	} {
		_, err := parse(caddy.NewTestController("dns", tc.corefile))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one starting %q", tc.corefile, err, tc.want)
		}
	}
}

// TestLineLimit: the bound counts what surrounds the session's JSON in each
// format.
func TestLineLimit(t *testing.T) {
	text := fmt.Sprint(lineLimit(0, modeBatch, 0), lineLimit(4096, modeText, 20), lineLimit(-1, modeBatch, 0), lineLimit(0, modeJSON, 0) < defaultMaxLine-100)
	if want := fmt.Sprint(defaultMaxLine-len(linePrefix)-1, 4096-20-len(linePrefix)-1, 0, true); text != want {
		t.Errorf("lineLimit: %s, want %s", text, want)
	}
}
