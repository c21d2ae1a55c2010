package dnsdiag

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	golog "log"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coredns/coredns/plugin"
	clog "github.com/coredns/coredns/plugin/pkg/log"
	"github.com/coredns/coredns/plugin/test"
	"github.com/dnsdiag/dnsdiag/plugin/dnsdiagtest"
	"github.com/dnsdiag/dnsdiag/plugin/report"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// jsonLog turns on CoreDNS's JSON logging (-log-format json) into a buffer
// for the test, and back to text, with the standard logger's output, flags
// and prefix as they were, when it ends.
func jsonLog(t *testing.T) *dnsdiagtest.SyncBuffer {
	out := new(dnsdiagtest.SyncBuffer)
	output, flags, prefix := golog.Writer(), golog.Flags(), golog.Prefix()
	t.Cleanup(func() {
		lines.flush(flushTimeout) // a line still queued is written in JSON
		if err := clog.Configure("text", io.Discard); err != nil {
			t.Error(err)
		}
		golog.SetOutput(output) // nil after another test's captureLog
		golog.SetFlags(flags)
		golog.SetPrefix(prefix)
	})
	if err := clog.Configure("json", out); err != nil {
		t.Fatal(err)
	}
	return out
}

// record is one JSON log record as the tests read it.
type record struct {
	Time    string
	Level   string
	Msg     string
	Plugin  string
	Session *dnsdiagtest.Line
	Report  *report.Report

	raw string
}

// records parses every line of out as a JSON record, failing on any that
// is not one, and keeps those of plugin/dnsdiag.
func records(t *testing.T, out string) []record {
	t.Helper()
	var rs []record
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var r record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("not a JSON record: %v\n%s", err, l)
		}
		if _, err := time.Parse(time.RFC3339Nano, r.Time); err != nil {
			t.Errorf("record without a time: %v\n%s", err, l)
		}
		if r.Plugin == "dnsdiag" {
			r.raw = l
			rs = append(rs, r)
		}
	}
	return rs
}

// TestJSONRecords: with -log-format json, a session is an INFO record whose
// "session" member is the line's object (not a string), a report a WARN
// record whose "report" member is the report, and the rate limit's warning
// a WARN record of plugin dnsdiag.
func TestJSONRecords(t *testing.T) {
	out := jsonLog(t)
	d := newTestDiag(t, "dnsdiag", answer(dns.RcodeServerFailure))
	d.ServeDNS(context.Background(), &test.ResponseWriter{}, query("fail.test", dns.TypeA))
	lines.flush(flushTimeout)

	rep := &report.Report{Sessions: 12, Failed: 11, Verdicts: []report.Verdict{{Code: "internal_failing", Text: "t"}}}
	b, err := rep.AppendJSON(nil)
	if err != nil {
		t.Fatal(err)
	}
	writeReport(b)

	var l limiter
	l.setRate(1)
	l.suppressed.Add(3)
	l.report(10 * time.Second)

	rs := records(t, out.String())
	if len(rs) != 3 {
		t.Fatalf("%d dnsdiag records, want 3:\n%s", len(rs), out.String())
	}
	s := rs[0]
	if s.Level != "INFO" || s.Msg != "session" || s.Session == nil || s.Session.Status != "Failed" || s.Session.QName != "fail.test." ||
		s.Session.RcodeString() != "SERVFAIL" || len(s.Session.Messages) != 2 {
		t.Errorf("session record: %s", s.raw)
	}
	r := rs[1]
	if r.Level != "WARN" || r.Msg != "report" || r.Report == nil || r.Report.Sessions != 12 || len(r.Report.Verdicts) != 1 || r.Report.Verdicts[0].Code != "internal_failing" {
		t.Errorf("report record: %s", r.raw)
	}
	w := rs[2]
	if w.Level != "WARN" || !strings.HasPrefix(w.Msg, "rate limit: suppressed 3 session lines in the last 10s") {
		t.Errorf("rate-limit record: %s", w.raw)
	}
}

// TestJSONBound: in JSON mode a 500-record answer's record, envelope and
// newline included, stays within the default bound, and says what it left
// out.
func TestJSONBound(t *testing.T) {
	out := jsonLog(t)
	d := newTestDiag(t, "dnsdiag {\n log all\n}", manyRecords(500, 1))
	d.ServeDNS(context.Background(), &test.ResponseWriter{}, query("big.test", dns.TypeA))
	lines.flush(flushTimeout)
	rs := records(t, out.String())
	if len(rs) != 1 {
		t.Fatalf("%d dnsdiag records, want 1:\n%s", len(rs), out.String())
	}
	var tr struct {
		Session struct{ MessagesTruncated *truncation }
	}
	if err := json.Unmarshal([]byte(rs[0].raw), &tr); err != nil {
		t.Fatal(err)
	}
	if n := len(rs[0].raw) + 1; n > defaultMaxLine || tr.Session.MessagesTruncated == nil || tr.Session.MessagesTruncated.Records != 500 {
		t.Errorf("record of %d bytes, MessagesTruncated %+v: want at most %d bytes, 500 records left out", n, tr.Session.MessagesTruncated, defaultMaxLine)
	}
}

// TestJSONLoggerInternals fails when CoreDNS no longer hands the standard
// logger a writer holding its JSON logger (internals.go, 4): reports would
// then be strings again.
func TestJSONLoggerInternals(t *testing.T) {
	if jsonLogger() != nil {
		t.Fatal("a JSON logger in text mode")
	}
	jsonLog(t)
	if jsonLogger() == nil {
		t.Fatalf("no JSON logger behind the standard logger's writer %T", golog.Writer())
	}
}

// endedSession is a session as ServeDNS and decide leave it for the
// writer, always the same: a query the chain did not answer.
func endedSession(d *Dnsdiag) *session {
	s := newSession()
	s.w, s.req, s.start = &test.ResponseWriter{}, query("batch.test", dns.TypeA), time.Unix(1, 0)
	s.req.Id = 7
	s.legs = append(s.legs, leg{kind: legCQ, at: s.start})
	s.bits, s.end, s.returned = legCQ, s.start.Add(time.Millisecond), true
	classify(s)
	d.ready(d.metrics.forServer("dns://:53"), s)
	return s
}

// addLine renders s into k as emit does, without the writer.
func addLine(k *lineBatch, lb *lineBuf, s *session) {
	mode, js := lb.renderFor(s)
	k.add(mode, js, s.metrics.lines)
	s.recycle()
}

// BenchmarkSink is the writer's cost per line, rendering included, to
// /dev/null: lines written one per write (what a quiet server gets, and
// what every line cost before batching) and 32 per write.
func BenchmarkSink(b *testing.B) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	output, flags := golog.Writer(), golog.Flags()
	b.Cleanup(func() {
		golog.SetOutput(output)
		golog.SetFlags(flags)
		null.Close()
	})
	golog.SetOutput(null)
	golog.SetFlags(0)
	d := newTestDiag(b, "dnsdiag {\n log all\n rate 0\n}", nil)
	for _, batch := range []int{1, 32} {
		b.Run(fmt.Sprintf("batch-%d", batch), func(b *testing.B) {
			var k lineBatch
			var lb lineBuf
			b.ReportAllocs()
			for i := range b.N {
				addLine(&k, &lb, endedSession(d))
				if (i+1)%batch == 0 {
					k.write()
				}
			}
			k.write()
		})
	}
}

// countingWriter counts the writes it gets.
type countingWriter struct {
	dnsdiagtest.SyncBuffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.SyncBuffer.Write(p)
}

// TestTextBatch: sessions queued together are written in one write, each
// line byte for byte what log.Info writes; with flags on the standard
// logger each line goes through log.Info, with its own header.
func TestTextBatch(t *testing.T) {
	flags := golog.Flags()
	t.Cleanup(func() { golog.SetFlags(flags) })
	d := newTestDiag(t, "dnsdiag {\n log all\n rate 0\n}", answer(dns.RcodeSuccess))
	ended := func(n int) []*session {
		var ss []*session
		for range n {
			ss = append(ss, endedSession(d))
		}
		return ss
	}
	expect := appendLine(nil, ended(1)[0], new(lineLayout))

	golog.SetFlags(0)
	want := &countingWriter{}
	golog.SetOutput(want)
	log.Info(string(expect))

	got := &countingWriter{}
	golog.SetOutput(got)
	var k lineBatch
	var lb lineBuf
	for _, s := range ended(3) {
		addLine(&k, &lb, s)
	}
	k.write()
	if got.writes != 1 || got.String() != strings.Repeat(want.String(), 3) {
		t.Errorf("%d writes of\n%q\nwant 1 of 3 times\n%q", got.writes, got.String(), want.String())
	}

	golog.SetFlags(golog.LstdFlags)
	stamped := &countingWriter{}
	golog.SetOutput(stamped)
	t.Cleanup(func() { golog.SetOutput(nil) })
	for _, s := range ended(2) {
		addLine(&k, &lb, s)
	}
	k.write()
	stampedLine := regexp.MustCompile(`^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ` + regexp.QuoteMeta(strings.TrimSuffix(want.String(), "\n")) + `$`)
	ls := strings.Split(strings.TrimSuffix(stamped.String(), "\n"), "\n")
	if stamped.writes != 2 || len(ls) != 2 || !stampedLine.MatchString(ls[0]) || !stampedLine.MatchString(ls[1]) {
		t.Errorf("with LstdFlags: %d writes of\n%s\nwant 2 lines each %q with a timestamp", stamped.writes, stamped.String(), want.String())
	}
}

// TestWriterGathersLines: lines emitted a little apart, as a busy server
// with one CPU emits them, share writes: the writer pauses after a batch's
// first line (batchDelay) instead of writing each as it comes.
func TestWriterGathersLines(t *testing.T) {
	output, flags := golog.Writer(), golog.Flags()
	t.Cleanup(func() {
		golog.SetOutput(output)
		golog.SetFlags(flags)
	})
	d := newTestDiag(t, "dnsdiag {\n log all\n rate 0\n}", answer(dns.RcodeSuccess))
	lines.flush(flushTimeout)
	golog.SetFlags(0)
	const n = 5
	// Only emits that all come within batchDelay tell; a descheduled test
	// tries again.
	for try := 0; ; try++ {
		got := &countingWriter{}
		golog.SetOutput(got)
		start := time.Now()
		for range n {
			emit(endedSession(d))
			// Spin: a sleep this short takes a millisecond here.
			for t0 := time.Now(); time.Since(t0) < batchDelay/10; {
			}
		}
		took := time.Since(start)
		lines.flush(flushTimeout)
		if l := strings.Count(got.String(), "\n"); l != n {
			t.Fatalf("%d lines written, want %d", l, n)
		}
		if took >= batchDelay {
			if try == 10 {
				t.Fatalf("emitting %d lines took %v or more in 10 tries, the test needs less than %v", n, took, batchDelay)
			}
			continue
		}
		if got.writes >= n {
			t.Errorf("%d lines emitted within %v took %d writes: none shared one", n, took, got.writes)
		}
		return
	}
}

// TestBatchWrite: a batch's text lines go out in order, in writes of at
// most batchSize bytes unless a line alone is longer; a line in another
// mode is written by itself between them; every line is counted once.
// The second round reuses the first one's chunks.
func TestBatchWrite(t *testing.T) {
	output, flags := golog.Writer(), golog.Flags()
	t.Cleanup(func() {
		golog.SetOutput(output)
		golog.SetFlags(flags)
	})
	golog.SetFlags(0)
	counted := prometheus.NewCounter(prometheus.CounterOpts{Name: "lines"})
	var k lineBatch
	for round := range 2 {
		got := &sizedWriter{}
		golog.SetOutput(got)
		var want strings.Builder
		add := func(mode sinkMode, n, pad int) int {
			js := fmt.Sprintf(`{"n":%d,"pad":"%s"}`, n, strings.Repeat("x", pad))
			k.add(mode, []byte(js), counted)
			want.WriteString(linePrefix + js + "\n")
			return len(linePrefix) + len(js) + 1
		}
		n := 0
		for i := range 40 { // 2 KiB each: 15 to a write
			add(modeBatch, n, 2<<10)
			n++
			if i == 20 { // with flags on, a line goes through log.Info alone
				add(modeText, n, 10)
				n++
			}
		}
		long := add(modeBatch, n, batchSize)
		k.write()

		if got.String() != want.String() {
			t.Fatalf("round %d written:\n%.200s...\nwant:\n%.200s...", round, got.String(), want.String())
		}
		// 15 lines; 6 lines, the text line, 9 lines (the rest of that
		// write's room); 10 lines; the long line.
		if len(got.sizes) != 6 || got.sizes[5] != long {
			t.Errorf("round %d: writes of %v bytes, want 6, the last of %d", round, got.sizes, long)
		}
		for i, size := range got.sizes[:len(got.sizes)-1] {
			if size > batchSize {
				t.Errorf("round %d write %d: %d bytes, more than batchSize %d", round, i, size, batchSize)
			}
		}
		if len(k.chunks) != 0 || k.lines != 0 {
			t.Errorf("round %d: batch not emptied: %d chunks, %d lines", round, len(k.chunks), k.lines)
		}
	}
	if c := testutil.ToFloat64(counted); c != 2*42 {
		t.Errorf("%v lines counted, want %d", c, 2*42)
	}
}

// sizedWriter records the size of each write.
type sizedWriter struct {
	dnsdiagtest.SyncBuffer
	sizes []int
}

func (w *sizedWriter) Write(p []byte) (int, error) {
	w.sizes = append(w.sizes, len(p))
	return w.SyncBuffer.Write(p)
}

// TestEmitRendersNow: a line is rendered as its session is emitted, from
// the messages as they are then: a plugin changing its answer afterwards
// (it owns the message again once the query is over) does not change the
// line, though no copy of the message was made.
func TestEmitRendersNow(t *testing.T) {
	out := captureLog(t)
	d := newTestDiag(t, "dnsdiag {\n log all\n rate 0\n}", nil)
	var written *dns.Msg
	d.Next = plugin.HandlerFunc(func(_ context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
		written = new(dns.Msg)
		written.SetRcode(r, dns.RcodeSuccess)
		written.Answer = []dns.RR{test.A("now.test. 30 IN A 192.0.2.1")}
		return dns.RcodeSuccess, w.WriteMsg(written)
	})
	if _, err := d.ServeDNS(context.Background(), &test.ResponseWriter{}, query("now.test", dns.TypeA)); err != nil {
		t.Fatal(err)
	}
	written.Answer[0].(*dns.A).A = net.IPv4(198, 51, 100, 9) // after the session ended
	lines.flush(flushTimeout)
	if s := out.String(); !strings.Contains(s, `"192.0.2.1"`) || strings.Contains(s, "198.51.100.9") {
		t.Errorf("line does not show the answer as written:\n%s", s)
	}
}

// TestEmitQueueFull: with logQueueSize lines waiting, a line is dropped
// and counted, and the query path does not wait.
func TestEmitQueueFull(t *testing.T) {
	captureLog(t)
	d := newTestDiag(t, "dnsdiag {\n log all\n rate 0\n}", answer(dns.RcodeSuccess))
	lines.flush(flushTimeout)
	drops := droppedTotal.WithLabelValues(reasonLogQueueFull)
	before := testutil.ToFloat64(drops)
	lines.pending.Add(logQueueSize)
	emit(endedSession(d))
	lines.pending.Add(-logQueueSize)
	if got := testutil.ToFloat64(drops) - before; got != 1 {
		t.Errorf("log_queue_full drops %v, want 1", got)
	}
	if p := lines.pending.Load(); p != 0 {
		t.Errorf("%d lines pending after a dropped one", p)
	}
}
