package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dnsdiag/dnsdiag/plugin/report"
	"github.com/miekg/dns"
)

// The report's tests: each drives the real binary onto one branch of the
// troubleshooting guide's tree (plugin/report/README.md) and checks the
// window's [WARNING] report line, its verdicts and its figures, against what
// the test sent and what the kernel shows, and the verdicts counted in
// coredns_dnsdiag_verdicts_total. The thresholds are the defaults; only the
// window is short (rpWindow), so that a test takes seconds.
//
// A report window's bounds are the plugin's, not the test's: the tests do not
// try to send inside one window, they record when each query completed
// (rpLedger) or sample the kernel's counter (rpSampler), and check each
// line's figures against what the window can hold.

// rpWindow is the report period of every Corefile here.
const rpWindow = 2 * time.Second

// rpReportPrefix starts a report line; its JSON's only member is "Report".
const rpReportPrefix = "[WARNING] plugin/dnsdiag: {\"Report\":"

// rpSlack is how far from the client's view of a query's end dnsdiag may
// count it: the plugin finishes a session after the answer is written, and
// the Tick that closes a window takes its clock reading and swaps its
// counters one after the other, on a machine whose other helpers keep both
// cores busy.
const rpSlack = 300 * time.Millisecond

// rpDiag is the dnsdiag block of every Corefile here.
var rpDiag = fmt.Sprintf("dnsdiag {\n        report %s\n    }", rpWindow)

// rpCorefile is the Corefile of every test here: one server block on
// 127.0.0.1 with dnsdiag reporting every rpWindow and prometheus, then
// plugins (each line indented by four spaces, after a newline).
func rpCorefile(plugins string) string {
	return `
.:{{DNS}} {
    bind 127.0.0.1
    ` + rpDiag + `
    prometheus 127.0.0.1:{{METRICS}}` + plugins + `
}
`
}

// rpTemplateA is a template block, for rpCorefile, that answers every A
// query under zone with addr.
func rpTemplateA(zone, addr string) string {
	return `
    template IN A ` + zone + ` {
        answer "{{ .Name }} 60 IN A ` + addr + `"
    }`
}

// rpLine is one report line.
type rpLine struct {
	report.Report
	Raw string
}

// codes are the line's verdict codes, in order.
func (l rpLine) codes() []string {
	var cs []string
	for _, v := range l.Verdicts {
		cs = append(cs, v.Code)
	}
	return cs
}

// text is the Text of the line's verdict code, "" if it has none.
func (l rpLine) text(code string) string {
	for _, v := range l.Verdicts {
		if v.Code == code {
			return v.Text
		}
	}
	return ""
}

// upstream is the line's figures for the upstream at addr.
func (l rpLine) upstream(addr string) (report.Upstream, bool) {
	for _, u := range l.Upstreams {
		if u.Address == addr {
			return u, true
		}
	}
	return report.Upstream{}, false
}

// rpReports is every report line s wrote so far. A line that does not decode
// into plugin/report's Report, member for member, fails the test; so do
// windows that overlap or run backwards.
func rpReports(t *testing.T, s *Server) []rpLine {
	t.Helper()
	var ls []rpLine
	for _, o := range s.Output() {
		i := strings.Index(o, rpReportPrefix)
		if i < 0 {
			continue
		}
		raw := o[i+len("[WARNING] plugin/dnsdiag: "):]
		var w struct{ Report *report.Report }
		dec := json.NewDecoder(strings.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&w); err != nil || w.Report == nil {
			t.Fatalf("report line does not decode as plugin/report's Report: %v\n%s", err, raw)
		}
		l := rpLine{Report: *w.Report, Raw: raw}
		if !l.End.After(l.Start) || math.Abs(l.Seconds-l.End.Sub(l.Start).Seconds()) > 0.001 {
			t.Errorf("report window %s to %s, Seconds %v: inconsistent\n%s", l.Start, l.End, l.Seconds, raw)
		}
		if n := len(ls); n > 0 && l.Start.Before(ls[n-1].End) {
			t.Errorf("report windows overlap: %s starts before the previous one's end %s", l.Start, ls[n-1].End)
		}
		if len(l.Verdicts) == 0 {
			t.Errorf("report line without a verdict (a healthy window writes nothing):\n%s", raw)
		}
		ls = append(ls, l)
	}
	return ls
}

// rpWaitReports waits, at most timeout, until cond holds for the report
// lines, and returns them.
func rpWaitReports(t *testing.T, s *Server, desc string, timeout time.Duration, cond func([]rpLine) bool) []rpLine {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		ls := rpReports(t, s)
		if cond(ls) {
			return ls
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for report lines: %s; got %d; output:\n%s", desc, len(ls), s.tail(40))
		}
	}
}

// rpSettle waits until every window that can hold an event at or before last
// has closed: the one holding it ends within a window, and a Tick may run
// late on a busy machine.
func rpSettle(last time.Time) {
	time.Sleep(time.Until(last.Add(2*rpWindow + rpSlack)))
}

// rpVerdicts is s's report lines, once the windows have settled: it fails
// the test at once if there is none (why, formatted with args, says what
// should have made one), logs each, and checks that each says exactly code.
// The caller checks each line's figures.
func rpVerdicts(t *testing.T, s *Server, code, why string, args ...any) []rpLine {
	t.Helper()
	ls := rpReports(t, s)
	if len(ls) == 0 {
		t.Fatalf("no report line %s; output:\n%s", fmt.Sprintf(why, args...), s.tail(40))
	}
	for _, l := range ls {
		t.Logf("report: %.600s", l.Raw)
		rpCheckCodes(t, l, code)
	}
	return ls
}

// rpCheckCodes fails the test unless l's verdicts are exactly want.
func rpCheckCodes(t *testing.T, l rpLine, want ...string) {
	t.Helper()
	if got := l.codes(); !slices.Equal(got, want) {
		t.Errorf("verdicts %v, want exactly %v\nline: %s", got, want, l.Raw)
	}
}

// rpIn fails the test unless lo <= got <= hi.
func rpIn(t *testing.T, l rpLine, what string, got, lo, hi uint64) {
	t.Helper()
	if got < lo || got > hi {
		t.Errorf("%s: %d, want within [%d, %d] for the window %s to %s\nline: %s",
			what, got, lo, hi, l.Start.Format(time.StampMilli), l.End.Format(time.StampMilli), l.Raw)
	}
}

// rpShare is plugin/report's share: n/of rounded to 4 decimals.
func rpShare(n, of uint64) float64 {
	if of == 0 {
		return 0
	}
	return math.Round(float64(n)/float64(of)*1e4) / 1e4
}

// rpCheckVerdictMetrics checks that coredns_dnsdiag_verdicts_total counts,
// for every code, the report lines that carry it. The scrape is taken when
// no line is written around it, so that both see the same windows.
func rpCheckVerdictMetrics(t *testing.T, s *Server, metrics string) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		before := rpReports(t, s)
		ss := promScrape(t, metrics)
		if len(rpReports(t, s)) != len(before) {
			if attempt == 5 {
				t.Fatalf("report lines keep coming: cannot compare them with the metrics")
			}
			continue
		}
		for _, code := range report.Codes {
			want := 0
			for _, l := range before {
				if slices.Contains(l.codes(), code) {
					want++
				}
			}
			if got := promSum(ss, "coredns_dnsdiag_verdicts_total", map[string]string{"code": code}); got != float64(want) {
				t.Errorf("coredns_dnsdiag_verdicts_total{code=%q} = %v, want %d (the report lines with it)", code, got, want)
			}
		}
		return
	}
}

// ---------------------------------------------------------------------------
// What the test sent, and when it completed.

// rpLedger records, by kind, when the client saw each of its queries end
// (an answer, or the client giving up).
type rpLedger struct {
	mu sync.Mutex
	at map[string][]time.Time
}

func newRPLedger() *rpLedger { return &rpLedger{at: map[string][]time.Time{}} }

func (l *rpLedger) add(kind string, at time.Time) {
	l.mu.Lock()
	l.at[kind] = append(l.at[kind], at)
	l.mu.Unlock()
}

func (l *rpLedger) total(kind string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.at[kind])
}

func (l *rpLedger) last() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var last time.Time
	for _, ts := range l.at {
		for _, at := range ts {
			if at.After(last) {
				last = at
			}
		}
	}
	return last
}

// count bounds how many queries of the kinds a report window holds: lo
// ended more than slack inside it, hi within slack of it.
func (l *rpLedger) count(w rpLine, slack time.Duration, kinds ...string) (lo, hi uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range kinds {
		for _, at := range l.at[k] {
			if !at.Before(w.Start.Add(slack)) && !at.After(w.End.Add(-slack)) {
				lo++
			}
			if !at.Before(w.Start.Add(-slack)) && !at.After(w.End.Add(slack)) {
				hi++
			}
		}
	}
	return lo, hi
}

// ---------------------------------------------------------------------------
// Kernel counters, sampled.

// rpSample is one reading of counters that only grow, taken between from
// and to.
type rpSample struct {
	from, to time.Time
	v        []uint64
}

// rpSampler reads counters every few milliseconds until stopped.
type rpSampler struct {
	mu      sync.Mutex
	samples []rpSample
	stop    chan struct{}
	done    chan struct{}
}

func newRPSampler(t *testing.T, every time.Duration, read func() ([]uint64, error)) *rpSampler {
	t.Helper()
	s := &rpSampler{stop: make(chan struct{}), done: make(chan struct{})}
	first := func() error {
		from := time.Now()
		v, err := read()
		if err == nil {
			s.mu.Lock()
			s.samples = append(s.samples, rpSample{from, time.Now(), v})
			s.mu.Unlock()
		}
		return err
	}
	if err := first(); err != nil {
		t.Fatalf("sampling: %v", err)
	}
	go func() {
		defer close(s.done)
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			select {
			case <-s.stop:
				_ = first()
				return
			case <-tk.C:
				_ = first()
			}
		}
	}()
	t.Cleanup(s.halt)
	return s
}

func (s *rpSampler) halt() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// last is the latest reading.
func (s *rpSampler) last() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples[len(s.samples)-1].v
}

// delta bounds the increase of counter i between two instants within slack
// of start and of end: the Tick that closes a window reads the kernel's
// files a little after it takes the time.
func (s *rpSampler) delta(i int, start, end time.Time, slack time.Duration) (lo, hi uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// before(x): the value of the last reading that finished by x, a
	// lower bound of the counter at x; after(x): the first reading that
	// started at or after x, an upper bound (the last one once the
	// counter has stopped moving).
	before := func(x time.Time) uint64 {
		v := uint64(0)
		for _, r := range s.samples {
			if r.to.After(x) {
				break
			}
			v = r.v[i]
		}
		return v
	}
	after := func(x time.Time) uint64 {
		for _, r := range s.samples {
			if !r.from.Before(x) {
				return r.v[i]
			}
		}
		return s.samples[len(s.samples)-1].v[i]
	}
	if a, b := before(end.Add(-slack)), after(start.Add(slack)); a > b {
		lo = a - b
	}
	hi = after(end.Add(slack)) - before(start.Add(-slack))
	return lo, hi
}

// rpUDPSockets are the inodes of pid's UDP sockets bound to port on
// 127.0.0.1, as /proc/<pid>/fd and /proc/<pid>/net/udp show them.
func rpUDPSockets(t *testing.T, pid, port int) map[string]bool {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]bool{}
	for _, fd := range fds {
		link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if ino, ok := strings.CutPrefix(link, "socket:["); ok {
			held[strings.TrimSuffix(ino, "]")] = true
		}
	}
	own := map[string]bool{}
	rpEachUDP(t, pid, func(local, inode string, _ uint64) {
		if held[inode] && local == fmt.Sprintf("0100007F:%04X", port) {
			own[inode] = true
		}
	})
	if len(own) == 0 {
		t.Fatalf("no UDP socket of coredns (pid %d) on 127.0.0.1:%d in /proc/%d/net/udp", pid, port, pid)
	}
	return own
}

// rpEachUDP calls fn with the local address (hex, as the kernel prints it),
// inode and drops column of every socket in /proc/<pid>/net/udp.
func rpEachUDP(t testing.TB, pid int, fn func(local, inode string, drops uint64)) {
	if err := rpReadUDP(pid, fn); err != nil {
		t.Fatal(err)
	}
}

func rpReadUDP(pid int, fn func(local, inode string, drops uint64)) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/udp", pid))
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Scan() // the header: sl local_address rem_address st ... inode ref pointer drops
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 13 {
			return fmt.Errorf("/proc/%d/net/udp: short line %q", pid, sc.Text())
		}
		drops, err := strconv.ParseUint(f[12], 10, 64)
		if err != nil {
			return fmt.Errorf("/proc/%d/net/udp: drops of %q: %v", pid, sc.Text(), err)
		}
		fn(f[1], f[9], drops)
	}
	return sc.Err()
}

// rpSocketDrops sums the drops column of the sockets inodes.
func rpSocketDrops(pid int, inodes map[string]bool) ([]uint64, error) {
	var sum uint64
	seen := 0
	err := rpReadUDP(pid, func(_, inode string, drops uint64) {
		if inodes[inode] {
			sum += drops
			seen++
		}
	})
	if err == nil && seen != len(inodes) {
		err = fmt.Errorf("%d of coredns's %d listening sockets left /proc/%d/net/udp", len(inodes)-seen, len(inodes), pid)
	}
	return []uint64{sum}, err
}

// ---------------------------------------------------------------------------
// Clients

// rpConn is one client socket, for queries that must come from one address
// and port.
type rpConn struct {
	t *testing.T
	c net.Conn
}

func newRPConn(t *testing.T, addr string) *rpConn {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rpConn{t: t, c: c}
}

// exchange sends wire and returns the answer to it, an error if none
// comes within qTimeout. It does not fail the test, so any goroutine may
// call it.
func (c *rpConn) exchange(wire []byte) (*dns.Msg, error) {
	if _, err := c.c.Write(wire); err != nil {
		return nil, err
	}
	buf := make([]byte, 65535)
	for {
		_ = c.c.SetReadDeadline(time.Now().Add(qTimeout))
		n, err := c.c.Read(buf)
		if err != nil {
			return nil, fmt.Errorf("no answer from %s: %w", c.c.RemoteAddr(), err)
		}
		m := new(dns.Msg)
		if err := m.Unpack(buf[:n]); err != nil {
			return nil, fmt.Errorf("answer does not unpack: %w", err)
		}
		if m.Id == uint16(wire[0])<<8|uint16(wire[1]) {
			return m, nil
		}
	}
}

// query asks name's A with a new DNS id and wants rcode.
func (c *rpConn) query(name string, rcode int) error {
	m, err := c.exchange(ovPack(c.t, dns.Fqdn(name), dns.TypeA))
	if err == nil && m.Rcode != rcode {
		err = fmt.Errorf("%s: rcode %s, want %s", name, dns.RcodeToString[m.Rcode], dns.RcodeToString[rcode])
	}
	return err
}

// rpPaced calls fn(i) every interval, each on its own goroutine, for the
// duration d, and waits for them all.
func rpPaced(interval, d time.Duration, fn func(i int)) int {
	var wg sync.WaitGroup
	n := 0
	for start := time.Now(); time.Since(start) < d; n++ {
		i := n
		wg.Go(func() { fn(i) })
		time.Sleep(time.Until(start.Add(time.Duration(n+1) * interval)))
	}
	wg.Wait()
	return n
}

// rpSilentUpstream is a UDP socket that reads queries and never answers,
// counting them.
func rpSilentUpstream(t *testing.T) (port int, received *atomic.Int64) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	received = new(atomic.Int64)
	go func() {
		buf := make([]byte, 65535)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			received.Add(1)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).Port, received
}

// rpHostsFile is the hosts fixture the internal names are answered from.
func rpHostsFile(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("testdata/report/hosts")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// ---------------------------------------------------------------------------
// (a) upstream_failing

// TestReportUpstreamFailing: internal names answered by hosts and template,
// external ones forwarded to a healthy upstream and to one that reads every
// query and never answers. Every window with the silent upstream's failures
// must say upstream_failing (not everything_failing: internal names do not
// fail), name that upstream with its no-answer share, not the healthy one,
// and list the failing names for the ticket; its counts must be what the
// window can hold of what was sent.
func TestReportUpstreamFailing(t *testing.T) {
	t.Parallel()
	silentPort, received := rpSilentUpstream(t)
	s := Start(t, rpCorefile(rpTemplateA("tpl.internal.test", "192.0.2.20")+`
    hosts `+rpHostsFile(t)+` internal.test
    forward ok.test 127.0.0.1:{{UP}}
    forward silent.test 127.0.0.1:{{SILENT}} {
        max_connect_attempts 1
        read_timeout 300ms
        max_fails 0
    }`)+richUpstream, map[string]int{"SILENT": silentPort})
	dnsAddr, silent, good := s.Addr("DNS"), s.Addr("SILENT"), s.Addr("UP")
	const readTimeout = 300 * time.Millisecond

	// Every 100 ms for 4.5 s (more than two windows): an internal name,
	// a forwarded one that resolves and one of three that go unanswered.
	badNames := []string{"a.silent.test.", "b.silent.test.", "c.silent.test."}
	led := newRPLedger()
	rpPaced(100*time.Millisecond, 4500*time.Millisecond, func(i int) {
		internal := []string{"h1.internal.test", "h2.internal.test", fmt.Sprintf("q%d.tpl.internal.test", i)}[i%3]
		want := map[string]string{"h1.internal.test": "192.0.2.11", "h2.internal.test": "192.0.2.12"}[internal]
		if want == "" {
			want = "192.0.2.20"
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			r := Query(t, "udp", dnsAddr, internal, dns.TypeA, qTimeout)
			led.add("internal", time.Now())
			if r.Msg == nil || r.Msg.Rcode != dns.RcodeSuccess || len(r.Msg.Answer) != 1 || r.Msg.Answer[0].(*dns.A).A.String() != want {
				t.Errorf("%s: got %v %v, want %s", internal, r.Msg, r.Err, want)
			}
		})
		wg.Go(func() {
			r := Query(t, "udp", dnsAddr, fmt.Sprintf("q%d.ok.test", i), dns.TypeA, qTimeout)
			led.add("good", time.Now())
			if r.Msg == nil || r.Msg.Rcode != dns.RcodeSuccess {
				t.Errorf("q%d.ok.test: got %v %v, want NOERROR", i, r.Msg, r.Err)
			}
		})
		wg.Go(func() {
			r := Query(t, "udp", dnsAddr, badNames[i%3], dns.TypeA, qTimeout)
			led.add("bad", time.Now())
			if r.Msg == nil || r.Msg.Rcode != dns.RcodeServerFailure {
				t.Errorf("%s: got %v %v, want SERVFAIL once forward gives up", badNames[i%3], r.Msg, r.Err)
			}
		})
		wg.Wait()
	})
	rpSettle(led.last())
	if got, want := int(received.Load()), led.total("bad"); got != want {
		t.Fatalf("the silent upstream received %d queries for %d sent: forward's attempts are not one per query", got, want)
	}
	ls := rpVerdicts(t, s, report.CodeUpstreamFailing, "in %.1f s of %d failing forwarded queries", 4.5, led.total("bad"))

	var failedSum uint64
	for _, l := range ls {
		if l.Internal.Failed != 0 || l.Internal.FailureShare != 0 {
			t.Errorf("internal failures %d (share %v), want none\nline: %s", l.Internal.Failed, l.Internal.FailureShare, l.Raw)
		}
		lo, hi := led.count(l, rpSlack, "internal")
		rpIn(t, l, "Internal.Sessions", l.Internal.Sessions, lo, hi)
		lo, hi = led.count(l, rpSlack, "bad")
		rpIn(t, l, "External.Failed", l.External.Failed, lo, hi)
		lo, hi = led.count(l, rpSlack, "good")
		rpIn(t, l, "External sessions answered", l.External.Sessions-l.External.Failed, lo, hi)
		if l.External.Failed < 10 {
			t.Errorf("External.Failed %d: below the default MinFailures (10), there should be no verdict\nline: %s", l.External.Failed, l.Raw)
		}
		if want := rpShare(l.External.Failed, l.External.Sessions); l.External.FailureShare != want {
			t.Errorf("External.FailureShare %v, want %v (%d of %d)", l.External.FailureShare, want, l.External.Failed, l.External.Sessions)
		}
		if l.Sessions != l.Internal.Sessions+l.External.Sessions || l.Failed != l.External.Failed {
			t.Errorf("Sessions %d Failed %d: not the sum of Internal and External\nline: %s", l.Sessions, l.Failed, l.Raw)
		}
		failedSum += l.External.Failed

		// The silent upstream: one attempt per failed session, none answered.
		u, ok := l.upstream(silent)
		switch {
		case !ok:
			t.Errorf("no figures for the silent upstream %s\nline: %s", silent, l.Raw)
		case u.Attempts != l.External.Failed || u.NoAnswer != u.Attempts || u.NoAnswerShare != 1 || len(u.Rcodes) != 0:
			t.Errorf("silent upstream %+v: want %d attempts, all without answer (share 1), no rcode\nline: %s", u, l.External.Failed, l.Raw)
		case u.MaxMs < float64(readTimeout.Milliseconds()) || u.P99Ms < float64(readTimeout.Milliseconds()) || u.P99Ms > u.MaxMs:
			t.Errorf("silent upstream P99Ms %v MaxMs %v: each attempt waited forward's read_timeout %s", u.P99Ms, u.MaxMs, readTimeout)
		}
		// The healthy one: every attempt answered NOERROR.
		if g, ok := l.upstream(good); ok {
			if g.NoAnswer != 0 || g.Rcodes["NOERROR"] != g.Attempts || len(g.Rcodes) != 1 || g.Attempts != l.External.Sessions-l.External.Failed {
				t.Errorf("healthy upstream %+v: want %d attempts, all NOERROR\nline: %s", g, l.External.Sessions-l.External.Failed, l.Raw)
			}
		}
		text := l.text(report.CodeUpstreamFailing)
		for _, want := range []string{"Upstream " + silent + ":", "100% no answer", "only cluster-external domain names fail", "a.silent.test. A SERVFAIL", "via " + silent + ", last at"} {
			if !strings.Contains(text, want) {
				t.Errorf("upstream_failing text lacks %q: %s", want, text)
			}
		}
		if strings.Contains(text, "Upstream "+good) {
			t.Errorf("upstream_failing names the healthy upstream %s: %s", good, text)
		}
		// The names for the ticket: the three silent ones, SERVFAIL to the
		// client, sent to the silent upstream; together every failure.
		var named uint64
		for _, f := range l.FailedNames {
			named += f.Count
			if !slices.Contains(badNames, f.Name) || f.QType != "A" || f.Rcode == nil || *f.Rcode != "SERVFAIL" ||
				f.Upstream != silent || f.External != f.Count || f.Internal != 0 || f.Overcount != 0 ||
				f.Last.Before(l.Start.Add(-rpSlack)) || f.Last.After(l.End.Add(rpSlack)) {
				rc := "null"
				if f.Rcode != nil {
					rc = *f.Rcode
				}
				t.Errorf("FailedNames entry %s %s %s x%d (external %d, internal %d, overcount %d) via %q, last %s: want one of %v, A, SERVFAIL, all external, via %s, last failed in the window",
					f.Name, f.QType, rc, f.Count, f.External, f.Internal, f.Overcount, f.Upstream, f.Last.Format(time.StampMilli), badNames, silent)
			}
		}
		if named != l.External.Failed || len(l.FailedNames) > len(badNames) {
			t.Errorf("FailedNames count %d failures in %d entries, want all %d in at most %d", named, len(l.FailedNames), l.External.Failed, len(badNames))
		}
	}
	if failedSum > uint64(led.total("bad")) {
		t.Errorf("the reports count %d failed sessions, %d were sent", failedSum, led.total("bad"))
	}
	rpCheckVerdictMetrics(t, s, s.Addr("METRICS"))
}

// ---------------------------------------------------------------------------
// (b) coredns_overloaded: kernel drops

// TestReportSocketDrops floods CoreDNS, pinned to one CPU, beyond what it
// can read, so that the kernel drops datagrams on its listening socket. Every
// window with drops must say coredns_overloaded (and nothing else: every
// query that got in was answered), with drops that agree with the drops
// column of /proc/net/udp for that socket:
//
//   - per window, within what the column rose in the window, read every 10
//     ms by the test, give or take rpSlack at each end: the Tick reads the
//     kernel's files after taking its time, on a CPU the flood saturates;
//   - in all, exactly: once the flood stops the column stops moving, and
//     the listener is the only UDP socket this Corefile gives CoreDNS, so
//     the report (the sum of its windows) and the column count the same
//     datagrams;
//   - coredns_dnsdiag_socket_drops_total, read at rest, equals the column.
//
// Not parallel: the flood takes both cores for up to 1.5 s.
func TestReportSocketDrops(t *testing.T) {
	s := Start(t, rpCorefile(rpTemplateA("flood.test", "192.0.2.40")), nil)
	pid := s.cmd.Process.Pid
	rpPin(t, pid, "0")
	listeners := rpUDPSockets(t, pid, s.Port("DNS"))
	sampler := newRPSampler(t, 10*time.Millisecond, func() ([]uint64, error) { return rpSocketDrops(pid, listeners) })
	if d := sampler.last()[0]; d != 0 {
		t.Fatalf("the listener has dropped %d datagrams before the flood", d)
	}

	// At most 4 x 25000 queries in at most 1.5 s, not waiting for answers.
	const conns, perConn, floodFor = 4, 25000, 1500 * time.Millisecond
	var sent atomic.Int64
	var wg sync.WaitGroup
	for i := range conns {
		c, err := net.Dial("udp", s.Addr("DNS"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wire := ovPack(t, fmt.Sprintf("f%d.flood.test.", i), dns.TypeA)
		wg.Go(func() {
			deadline := time.Now().Add(floodFor)
			for id := range uint16(perConn) {
				if id%256 == 0 && time.Now().After(deadline) {
					return
				}
				wire[0], wire[1] = byte(id>>8), byte(id)
				if _, err := c.Write(wire); err == nil {
					sent.Add(1)
				}
			}
		})
	}
	wg.Wait()
	floodEnd := time.Now()
	rpSettle(floodEnd)
	sampler.halt()
	drops := sampler.last()[0]
	t.Logf("sent %d datagrams; the kernel dropped %d on coredns's socket", sent.Load(), drops)
	if drops == 0 {
		t.Fatalf("the flood of %d datagrams made the kernel drop none on coredns's socket: not beyond saturation", sent.Load())
	}
	rpCheckPinned(t, pid, "0")

	ls := rpVerdicts(t, s, report.CodeOverloaded, "though the kernel dropped %d datagrams on coredns's socket", drops)
	var sum uint64
	for _, l := range ls {
		if l.Sockets == nil {
			t.Errorf("no Sockets figure\nline: %s", l.Raw)
			continue
		}
		lo, hi := sampler.delta(0, l.Start, l.End, rpSlack)
		rpIn(t, l, "Sockets.Drops", l.Sockets.Drops, lo, hi)
		if want := fmt.Sprintf("the kernel dropped %d datagrams on CoreDNS's own UDP sockets", l.Sockets.Drops); !strings.Contains(l.text(report.CodeOverloaded), want) {
			t.Errorf("coredns_overloaded text lacks %q: %s", want, l.text(report.CodeOverloaded))
		}
		if l.UDP == nil {
			t.Errorf("no UDP (namespace) figures\nline: %s", l.Raw)
		}
		if l.Failed != 0 || l.Sessions == 0 {
			t.Errorf("Sessions %d Failed %d: want the flood's answered sessions, none failed", l.Sessions, l.Failed)
		}
		sum += l.Sockets.Drops
	}
	if sum != drops {
		t.Errorf("the report lines count %d drops in all; /proc/%d/net/udp shows %d on the listener", sum, pid, drops)
	}
	ss := promScrape(t, s.Addr("METRICS"))
	if got := promSum(ss, "coredns_dnsdiag_socket_drops_total", nil); got != float64(drops) {
		t.Errorf("coredns_dnsdiag_socket_drops_total = %v, /proc/%d/net/udp shows %d", got, pid, drops)
	}
	rpCheckVerdictMetrics(t, s, s.Addr("METRICS"))
}

// rpPin restricts every thread of pid to cpus, as `taskset -c` would have
// at its start: the harness starts coredns itself, and threads the Go
// runtime creates later inherit the mask of the thread that creates them.
func rpPin(t *testing.T, pid int, cpus string) {
	t.Helper()
	if out, err := exec.Command("taskset", "-a", "-p", "-c", cpus, strconv.Itoa(pid)).CombinedOutput(); err != nil {
		t.Fatalf("taskset: %v\n%s", err, out)
	}
	rpCheckPinned(t, pid, cpus)
}

// rpCheckPinned fails the test unless every thread of pid may run on cpus
// only.
func rpCheckPinned(t *testing.T, pid int, cpus string) {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of %d: %v", pid, err)
	}
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread has exited
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok && strings.TrimSpace(v) != cpus {
				t.Fatalf("%s: Cpus_allowed_list %s, want %s", p, strings.TrimSpace(v), cpus)
			}
		}
	}
}

// ---------------------------------------------------------------------------
// (c) coredns_overloaded: CPU throttling

// rpCgroupRoot is the cgroup v1 cpu controller's hierarchy on this machine.
const rpCgroupRoot = "/sys/fs/cgroup/cpu"

// TestReportThrottled moves CoreDNS into a cgroup of the v1 cpu controller
// limited to 0.1 cores (10 ms per 100 ms period), loads it, and checks that
// the windows say coredns_overloaded with throttling figures that agree with
// the cgroup's cpu.stat (read every 20 ms by the test, give or take rpSlack
// at each end of a window) and its quota; and that the coredns_dnsdiag_cpu_*
// metrics show the same cgroup. The cgroup is removed when the test ends.
func TestReportThrottled(t *testing.T) {
	t.Parallel()
	s := Start(t, rpCorefile(rpTemplateA("cpu.test", "192.0.2.50")), nil)
	dir := rpCgroup(t, s, 10000, 100000)
	sampler := newRPSampler(t, 20*time.Millisecond, func() ([]uint64, error) { return rpCPUStat(dir) })

	// 4000 queries/s for 3 s, open loop from 4 sockets: many times what
	// 10 ms of CPU per 100 ms can answer, however slowly the machine runs
	// the test's own goroutines.
	var sent atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	for i := range 4 {
		c, err := net.Dial("udp", s.Addr("DNS"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wire := ovPack(t, fmt.Sprintf("w%d.cpu.test.", i), dns.TypeA)
		wg.Go(func() { ovOpenLoop(c, wire, 0, 1000, 10*time.Millisecond, 100, start, stop, &sent) })
	}
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	loadEnd := time.Now()
	rpSettle(loadEnd)
	stat := sampler.last()
	t.Logf("%d queries sent; %s/cpu.stat: nr_periods %d nr_throttled %d throttled_time %d ns", sent.Load(), dir, stat[0], stat[1], stat[2])
	if stat[1] == 0 {
		t.Fatalf("the cgroup was never throttled: the load did not exceed 0.1 cores")
	}

	ls := rpVerdicts(t, s, report.CodeOverloaded, "though %s was throttled in %d periods", dir, stat[1])
	for _, l := range ls {
		c := l.CPU
		if c == nil {
			t.Errorf("no CPU figures\nline: %s", l.Raw)
			continue
		}
		if c.QuotaCores != 0.1 || c.ThrottledPeriods == 0 || c.ThrottledMs <= 0 || c.ThrottledShare < 0.01 || c.GOMAXPROCS < 1 {
			t.Errorf("CPU %+v: want quota 0.1 cores, throttled periods and time, a throttled share of at least the default 0.01\nline: %s", *c, l.Raw)
		}
		if want := rpShare(c.ThrottledPeriods, c.Periods); c.ThrottledShare != want {
			t.Errorf("ThrottledShare %v, want %v", c.ThrottledShare, want)
		}
		lo, hi := sampler.delta(0, l.Start, l.End, rpSlack)
		rpIn(t, l, "CPU.Periods", c.Periods, lo, hi)
		lo, hi = sampler.delta(1, l.Start, l.End, rpSlack)
		rpIn(t, l, "CPU.ThrottledPeriods", c.ThrottledPeriods, lo, hi)
		lo, hi = sampler.delta(2, l.Start, l.End, rpSlack)
		rpIn(t, l, "CPU.ThrottledMs (µs)", uint64(math.Round(c.ThrottledMs*1000)), lo/1000, hi/1000)
		text := l.text(report.CodeOverloaded)
		want := []string{fmt.Sprintf("its cgroup was throttled in %d of %d CPU periods", c.ThrottledPeriods, c.Periods), "under a limit of 0.1 cores", "raise or remove the CPU limit"}
		if c.GOMAXPROCS > 1 {
			want = append(want, fmt.Sprintf("with GOMAXPROCS %d", c.GOMAXPROCS))
		}
		for _, w := range want {
			if !strings.Contains(text, w) {
				t.Errorf("coredns_overloaded text lacks %q: %s", w, text)
			}
		}
		if l.Failed != 0 {
			t.Errorf("%d failed sessions: template answers every query, however late", l.Failed)
		}
	}

	// The metrics, scraped at rest: between two readings of cpu.stat.
	before, err := rpCPUStat(dir)
	if err != nil {
		t.Fatal(err)
	}
	ss := promScrape(t, s.Addr("METRICS"))
	after, err := rpCPUStat(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range []struct {
		name  string
		scale float64
	}{{"coredns_dnsdiag_cpu_periods_total", 1}, {"coredns_dnsdiag_cpu_throttled_periods_total", 1}, {"coredns_dnsdiag_cpu_throttled_seconds_total", 1e-9}} {
		got := promSum(ss, m.name, nil)
		if lo, hi := float64(before[i])*m.scale, float64(after[i])*m.scale; got < lo*(1-1e-9) || got > hi*(1+1e-9) || len(promSeries(ss, m.name)) != 1 {
			t.Errorf("%s = %v (%d series), want within [%v, %v] from %s/cpu.stat", m.name, got, len(promSeries(ss, m.name)), lo, hi, dir)
		}
	}
	if got := promSum(ss, "coredns_dnsdiag_cpu_quota_cores", nil); got != 0.1 {
		t.Errorf("coredns_dnsdiag_cpu_quota_cores = %v, want 0.1", got)
	}
	if got, last := promSum(ss, "coredns_dnsdiag_gomaxprocs", nil), ls[len(ls)-1].CPU; last != nil && got != float64(last.GOMAXPROCS) {
		t.Errorf("coredns_dnsdiag_gomaxprocs = %v, the last report says %d", got, last.GOMAXPROCS)
	}
	rpCheckVerdictMetrics(t, s, s.Addr("METRICS"))
}

// rpCgroup creates a child of the cpu controller with the quota and period
// (µs), moves s's process into it, and removes it when the test ends, after
// the process has been killed (a cgroup with a process in it cannot be
// removed).
func rpCgroup(t *testing.T, s *Server, quota, period int) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(rpCgroupRoot, "cpu.cfs_quota_us")); err != nil {
		t.Fatalf("this test needs the cgroup v1 cpu controller at %s: %v", rpCgroupRoot, err)
	}
	dir := filepath.Join(rpCgroupRoot, fmt.Sprintf("dnsdiag-e2e-%d-%d", os.Getpid(), s.cmd.Process.Pid))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.stopped = true
		s.kill()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			err := os.Remove(dir)
			if err == nil || os.IsNotExist(err) {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("removing cgroup %s: %v", dir, err)
				return
			}
		}
	})
	write := func(file string, v int) {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(strconv.Itoa(v)), 0o644); err != nil {
			t.Fatalf("%s/%s: %v", dir, file, err)
		}
	}
	write("cpu.cfs_period_us", period)
	write("cpu.cfs_quota_us", quota)
	// The most weight the controller allows: the quota must be what limits
	// coredns. At the default 1024 a cgroup competes as one task against
	// every task of the root group, so while the parallel e2e tests keep
	// both cores busy it gets under a tenth of a core, never reaches the
	// quota and is never throttled (CI saw 1 throttled period of 74).
	write("cpu.shares", 262144)
	write("cgroup.procs", s.cmd.Process.Pid)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", s.cmd.Process.Pid))
	if err != nil || !strings.Contains(string(b), ":cpu:/"+filepath.Base(dir)+"\n") {
		t.Fatalf("coredns is not in %s: /proc/%d/cgroup:\n%s%v", dir, s.cmd.Process.Pid, b, err)
	}
	return dir
}

// rpCPUStat reads nr_periods, nr_throttled and throttled_time (ns) of the
// cgroup dir.
func rpCPUStat(dir string) ([]uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return nil, err
	}
	keys := []string{"nr_periods", "nr_throttled", "throttled_time"}
	v := make([]uint64, len(keys))
	found := 0
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		if i := slices.Index(keys, f[0]); i >= 0 {
			if v[i], err = strconv.ParseUint(f[1], 10, 64); err != nil {
				return nil, err
			}
			found++
		}
	}
	if found != len(keys) {
		return nil, fmt.Errorf("%s/cpu.stat lacks some of %v:\n%s", dir, keys, b)
	}
	return v, nil
}

// ---------------------------------------------------------------------------
// (d) answers_lost

// TestReportAnswersLost replays retransmissions of answered queries: for ten
// names, a query, its answer, then the same bytes from the same port three
// times, each answered. The 30 copies are retransmit_after_answer hints; the
// windows that hold at least the default 10 of them say answers_lost, with
// the count the window can hold. Every copy's session line carries the hint,
// same port, and the earlier answer's rcode.
func TestReportAnswersLost(t *testing.T) {
	t.Parallel()
	s := Start(t, rpCorefile(rpTemplateA("lost.test", "192.0.2.60")), nil)
	const names, resends = 10, 3
	c := newRPConn(t, s.Addr("DNS"))
	led := newRPLedger()
	for i := range names {
		wire := ovPack(t, fmt.Sprintf("n%d.lost.test.", i), dns.TypeA)
		for copy := range 1 + resends {
			if m, err := c.exchange(wire); err != nil || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
				t.Fatalf("n%d.lost.test copy %d: %v %v", i, copy, m, err)
			}
			if copy > 0 { // the first is the query; the others resend it
				led.add("copy", time.Now())
			}
		}
	}
	rpSettle(led.last())

	// A copy answered within 50 ms of its arrival waits that long for
	// the other half of an A/AAAA pair, and its session is released by a
	// 250 ms ticker: counted up to about 300 ms after its answer.
	const heldSlack = rpSlack + 300*time.Millisecond
	ls := rpVerdicts(t, s, report.CodeAnswersLost, "after %d retransmissions of answered queries", names*resends)
	var sum uint64
	for _, l := range ls {
		n := l.Hints["retransmit_after_answer"]
		lo, hi := led.count(l, heldSlack, "copy")
		rpIn(t, l, "Hints[retransmit_after_answer]", n, max(lo, 10), hi)
		// Each copy was sent after its answer was read: no other hint,
		// retransmit_unanswered least of all.
		for code, n := range l.Hints {
			if code != "retransmit_after_answer" {
				t.Errorf("Hints[%s] = %d, want only retransmit_after_answer: every copy was sent after the client read the answer\nline: %s", code, n, l.Raw)
			}
		}
		if l.Failed != 0 {
			t.Errorf("%d failed sessions, want none", l.Failed)
		}
		if want := fmt.Sprintf("Clients resent %d queries CoreDNS had already answered", n); !strings.Contains(l.text(report.CodeAnswersLost), want) {
			t.Errorf("answers_lost text lacks %q: %s", want, l.text(report.CodeAnswersLost))
		}
		sum += n
	}
	if sum > names*resends {
		t.Errorf("the reports count %d retransmissions, %d were sent", sum, names*resends)
	}
	ss := promScrape(t, s.Addr("METRICS"))
	if got := promSum(ss, "coredns_dnsdiag_hints_total", map[string]string{"code": "retransmit_after_answer"}); got != names*resends {
		t.Errorf("coredns_dnsdiag_hints_total{code=retransmit_after_answer} = %v, want %d", got, names*resends)
	}

	// The session lines of the copies.
	var copies int
	for _, l := range s.Lines() {
		h, ok := l.Hint("retransmit_after_answer")
		if !ok {
			continue
		}
		copies++
		if h.Details["SamePort"] != true || h.Details["EarlierRcode"] != "NOERROR" || l.Client != c.c.LocalAddr().String() || l.Status != "Succeeded" {
			t.Errorf("retransmit_after_answer on %s: want SamePort, EarlierRcode NOERROR, client %s, Succeeded\nline: %s", l.QName, c.c.LocalAddr(), l.Raw)
		}
	}
	if copies != names*resends {
		t.Errorf("%d session lines carry retransmit_after_answer, want %d", copies, names*resends)
	}
	rpCheckVerdictMetrics(t, s, s.Addr("METRICS"))
}

// ---------------------------------------------------------------------------
// (e) search_path

// TestReportSearchPath: one client walks a Kubernetes search list for every
// name, NXDOMAIN for name.default.svc.cluster.local, name.svc.cluster.local
// and name.cluster.local, then NOERROR for name., new ids, for 5 s (more
// than the default 100 sessions per window). Three of every four sessions
// are search candidates: the windows say search_path, with the walks'
// candidates (all three of each walk) and share.
func TestReportSearchPath(t *testing.T) {
	t.Parallel()
	s := Start(t, rpCorefile(`
    template IN ANY cluster.local {
        rcode NXDOMAIN
        authority "cluster.local. 60 IN SOA ns.cluster.local. host.cluster.local. 1 60 60 60 60"
    }`+rpTemplateA("walk.test", "192.0.2.70")), nil)
	// Four sockets of the one client address walk at once, each a walk
	// every 40 ms at most, for 5 s: enough sessions per window even when
	// the machine serves each query slowly.
	suffixes := []string{"default.svc.cluster.local.", "svc.cluster.local.", "cluster.local."}
	led := newRPLedger()
	var walks atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		c := newRPConn(t, s.Addr("DNS"))
		wg.Go(func() {
			for start, n := time.Now(), 0; time.Since(start) < 5*time.Second; n++ {
				name := fmt.Sprintf("w%d-%d.walk.test.", w, n)
				for _, sfx := range suffixes {
					if err := c.query(name+sfx, dns.RcodeNameError); err != nil {
						t.Error(err)
						return
					}
					led.add("candidate", time.Now())
				}
				if err := c.query(name, dns.RcodeSuccess); err != nil {
					t.Error(err)
					return
				}
				led.add("final", time.Now())
				walks.Add(1)
				time.Sleep(time.Until(start.Add(time.Duration(n+1) * 40 * time.Millisecond)))
			}
		})
	}
	wg.Wait()
	rpSettle(led.last())
	for _, l := range rpVerdicts(t, s, report.CodeSearchPath, "after %d search walks", walks.Load()) {
		lo, hi := led.count(l, rpSlack, "candidate", "final")
		rpIn(t, l, "Sessions", l.Sessions, max(lo, 100), hi)
		// A walk's candidates are counted with its final query.
		lo, hi = led.count(l, rpSlack, "final")
		rpIn(t, l, "Hints[search_expansion]", l.Hints["search_expansion"], lo, hi)
		if l.SearchCandidates != 3*l.Hints["search_expansion"] {
			t.Errorf("SearchCandidates %d, want 3 per search_expansion (%d)\nline: %s", l.SearchCandidates, l.Hints["search_expansion"], l.Raw)
		}
		if want := min(rpShare(l.SearchCandidates, l.Sessions), 1); l.SearchShare != want || l.SearchShare < 0.5 {
			t.Errorf("SearchShare %v, want %v (%d of %d), at least the default 0.5", l.SearchShare, want, l.SearchCandidates, l.Sessions)
		}
		if l.Failed != 0 {
			t.Errorf("%d failed sessions: NXDOMAIN is an answer", l.Failed)
		}
		if want := fmt.Sprintf("%d of %d queries", l.SearchCandidates, l.Sessions); !strings.Contains(l.text(report.CodeSearchPath), want) {
			t.Errorf("search_path text lacks %q: %s", want, l.text(report.CodeSearchPath))
		}
	}
	ss := promScrape(t, s.Addr("METRICS"))
	if got := promSum(ss, "coredns_dnsdiag_hints_total", map[string]string{"code": "search_expansion"}); got != float64(walks.Load()) {
		t.Errorf("coredns_dnsdiag_hints_total{code=search_expansion} = %v, want one per walk: %d", got, walks.Load())
	}
	rpCheckVerdictMetrics(t, s, s.Addr("METRICS"))
}

// ---------------------------------------------------------------------------
// (f) a healthy window

// TestReportHealthy: distinct queries that all succeed, internal and
// forwarded, for 5 s (more than two windows), write no report line. Then,
// so that the silence means something, 30 internal SERVFAILs make a window
// say internal_failing.
func TestReportHealthy(t *testing.T) {
	t.Parallel()
	s := Start(t, rpCorefile(rpTemplateA("tpl.internal.test", "192.0.2.20")+`
    template IN A fail.internal.test {
        rcode SERVFAIL
    }
    hosts `+rpHostsFile(t)+` internal.test
    forward ok.test 127.0.0.1:{{UP}}`)+richUpstream, nil)
	dnsAddr := s.Addr("DNS")
	names := func(i int) string {
		return []string{"h1.internal.test", fmt.Sprintf("q%d.tpl.internal.test", i), fmt.Sprintf("q%d.ok.test", i)}[i%3]
	}
	start := time.Now()
	n := rpPaced(20*time.Millisecond, 5*time.Second, func(i int) {
		if r := Query(t, "udp", dnsAddr, names(i), dns.TypeA, qTimeout); r.Msg == nil || r.Msg.Rcode != dns.RcodeSuccess {
			t.Errorf("%s: %v %v", names(i), r.Msg, r.Err)
		}
	})
	rpSettle(time.Now())
	if ls := rpReports(t, s); len(ls) != 0 {
		t.Fatalf("%d report line(s) for %s of healthy traffic, want none:\n%s", len(ls), time.Since(start).Round(time.Second), ls[0].Raw)
	}
	ss := promScrape(t, s.Addr("METRICS"))
	if got := promSum(ss, "coredns_dnsdiag_sessions_total", map[string]string{"status": "Succeeded"}); got != float64(n) {
		t.Errorf("coredns_dnsdiag_sessions_total{status=Succeeded} = %v, want the %d queries sent", got, n)
	}
	for _, code := range report.Codes {
		if got := promSum(ss, "coredns_dnsdiag_verdicts_total", map[string]string{"code": code}); got != 0 {
			t.Errorf("coredns_dnsdiag_verdicts_total{code=%q} = %v after healthy windows, want 0", code, got)
		}
	}

	led := newRPLedger()
	Concurrently(30, 4, func(i int) Result {
		r := Query(t, "udp", dnsAddr, fmt.Sprintf("x%d.fail.internal.test", i), dns.TypeA, qTimeout)
		led.add("fail", time.Now())
		if r.Msg == nil || r.Msg.Rcode != dns.RcodeServerFailure {
			t.Errorf("x%d.fail.internal.test: %v %v, want SERVFAIL", i, r.Msg, r.Err)
		}
		return r
	})
	rpWaitReports(t, s, "internal_failing after 30 internal SERVFAILs", 3*rpWindow, func(ls []rpLine) bool { return len(ls) > 0 })
	rpSettle(led.last())
	for _, l := range rpVerdicts(t, s, report.CodeInternalFailing, "after 30 internal SERVFAILs") {
		lo, hi := led.count(l, rpSlack, "fail")
		rpIn(t, l, "Internal.Failed", l.Internal.Failed, max(lo, 10), hi)
		if l.External.Failed != 0 || l.Internal.FailedCachedUpstream != 0 {
			t.Errorf("External.Failed %d, FailedCachedUpstream %d: want 0\nline: %s", l.External.Failed, l.Internal.FailedCachedUpstream, l.Raw)
		}
	}
	rpCheckVerdictMetrics(t, s, s.Addr("METRICS"))
}
