package e2e

import (
	"bufio"
	be "encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dnsdiag/dnsdiag/plugin/dnsdiagtest"
	"github.com/miekg/dns"
)

// TestOverload drives the real binary beyond saturation while its log
// output is not read, with a slow and a silent upstream, and checks that
// dnsdiag sheds instead of blocking or growing:
//
//   - every query to the internal zone sent on the TCP probe connections is
//     answered, with p99 latency under ovProbeP99, also while the log pipe
//     is not read at all (the query path never waits for dnsdiag's log);
//   - sessions the log writer had no room for are counted in
//     coredns_dnsdiag_dropped_total{reason="log_queue_full"};
//   - the process's VmRSS stays under ovRSSBound. What bounds it: at most
//     100,000 client sessions in flight process-wide (limits.go), a log
//     queue of 4096 sessions, 10,000 open background sessions per
//     instance and 64 legs per session;
//   - once the load stops, coredns_dnsdiag_inflight_sessions is back to 0
//     within forward's 5 s deadline plus ovSettleSlack;
//   - no session is lost unaccounted: once the log is read again, every
//     session line is valid JSON, lines read == log_lines_total, and
//     client + background sessions == lines + log_queue_full drops
//     (log all, rate 0: nothing is suppressed); a SampleLoss session
//     implies a leg_limit drop.
//
// The load lasts DNSDIAG_OVERLOAD_SECONDS (default 6, `make stress` sets
// 20); the UDP flood aims at DNSDIAG_OVERLOAD_QPS (default 60000), more
// than this binary serves with every session logged on a small machine.
func TestOverload(t *testing.T) {
	loadFor := time.Duration(ovEnvInt(t, "DNSDIAG_OVERLOAD_SECONDS", 6)) * time.Second
	floodQPS := ovEnvInt(t, "DNSDIAG_OVERLOAD_QPS", 60000)

	p := ovStart(t, `
.:{{DNS}} {
    dnsdiag {
        log all
        rate 0
    }
    prometheus 127.0.0.1:{{METRICS}}
    template IN A internal.test {
        answer "{{ .Name }} 60 IN A 192.0.2.7"
    }
    forward slow.test 127.0.0.1:{{SLOW}}
    forward silent.test 127.0.0.1:{{SILENT}}
}
slow.test:{{SLOW}} {
    erratic {
        delay 2 400ms
    }
}
silent.test:{{SILENT}} {
    erratic {
        drop 1
    }
}
`)
	dnsAddr, metricsAddr := p.addr("DNS"), p.addr("METRICS")
	base := ovScrape(t, metricsAddr)

	// RSS sampler.
	var rssPeak atomic.Int64
	stopRSS := make(chan struct{})
	rssDone := make(chan struct{})
	go func() {
		defer close(rssDone)
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			if kb := ovRSS(p.cmd.Process.Pid); kb > rssPeak.Load() {
				rssPeak.Store(kb)
			}
			select {
			case <-stopRSS:
				return
			case <-tk.C:
			}
		}
	}()
	rssStart := ovRSS(p.cmd.Process.Pid)

	// The log pipe: not read at all for the first 60% of the load, then
	// read slowly (about 256 KB/s, far less than the lines produced).
	p.out.setMode(ovStalled)
	start := time.Now()
	stallEnd := start.Add(loadFor * 6 / 10)
	end := start.Add(loadFor)
	go func() {
		time.Sleep(time.Until(stallEnd))
		p.out.setMode(ovSlow)
	}()

	var wg sync.WaitGroup
	stop := make(chan struct{})

	// Overdrive: open-loop UDP flood of the internal zone, beyond what
	// the server can answer.
	var floodSent, floodRecv atomic.Int64
	const floodConns = 4
	for i := range floodConns {
		c, err := net.Dial("udp", dnsAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wire := ovPack(t, fmt.Sprintf("flood%d.internal.test.", i), dns.TypeA)
		wg.Go(func() { // sender: floodQPS/floodConns per second, in 1 ms batches
			ovOpenLoop(c, wire, uint16(rand.UintN(65536)), float64(floodQPS)/floodConns, time.Millisecond, 1000, start, stop, &floodSent)
		})
		go func() { // reader: counts answers until the socket closes
			buf := make([]byte, 1500)
			for {
				if _, err := c.Read(buf); err != nil {
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						continue
					}
					return
				}
				floodRecv.Add(1)
			}
		}()
	}

	// Probes: closed-loop queries of the internal zone over TCP, which the
	// UDP flood cannot crowd out of a socket buffer. Every one must be
	// answered.
	type probe struct {
		at  time.Time
		lat time.Duration
		err error
	}
	const probeConns = 8
	probes := make([][]probe, probeConns)
	for i := range probeConns {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", dnsAddr, 2*time.Second)
			if err != nil {
				probes[i] = append(probes[i], probe{at: time.Now(), err: err})
				return
			}
			defer c.Close()
			dc := &dns.Conn{Conn: c}
			ovClosedLoop(stop, fmt.Sprintf("p%d-%%d.internal.test.", i), func(m *dns.Msg) bool {
				t0 := time.Now()
				_ = c.SetDeadline(t0.Add(ovProbeTimeout))
				err := dc.WriteMsg(m)
				var r *dns.Msg
				if err == nil {
					r, err = dc.ReadMsg()
				}
				if err == nil && (r.Id != m.Id || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1) {
					err = fmt.Errorf("bad answer to %s: %v", m.Question[0].Name, r)
				}
				probes[i] = append(probes[i], probe{at: t0, lat: time.Since(t0), err: err})
				if err != nil {
					return false // the connection is unusable; the error fails the test
				}
				time.Sleep(2 * time.Millisecond)
				return true
			})
		})
	}

	// Slow upstream: closed-loop UDP, half the answers 400 ms late.
	var slowSent, slowRecv atomic.Int64
	for range 32 {
		wg.Go(func() {
			c := &dns.Client{Net: "udp", Timeout: 3 * time.Second}
			ovClosedLoop(stop, "s%d.slow.test.", func(m *dns.Msg) bool {
				slowSent.Add(1)
				if r, _, err := c.Exchange(m, dnsAddr); err == nil && r.Rcode == dns.RcodeSuccess {
					slowRecv.Add(1)
				}
				return true
			})
		})
	}

	// Silent upstream: open-loop UDP; forward gives up after 5 s, so these
	// sessions pile up in flight.
	var silentSent atomic.Int64
	silentQPS := 400
	{
		c, err := net.Dial("udp", dnsAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wire := ovPack(t, "x.silent.test.", dns.TypeA)
		wg.Go(func() {
			ovOpenLoop(c, wire, 0, float64(silentQPS), 10*time.Millisecond, 100, start, stop, &silentSent)
		})
		go func() { _, _ = io.Copy(io.Discard, c) }()
	}

	// Mid-load: sample the drop counter and in-flight gauge.
	var midInflight float64
	time.Sleep(time.Until(stallEnd) - 200*time.Millisecond)
	mid := ovScrape(t, metricsAddr)
	midInflight = mid.get("coredns_dnsdiag_inflight_sessions", "")
	midLogDrops := mid.get("coredns_dnsdiag_dropped_total", `reason="log_queue_full"`) - base.get("coredns_dnsdiag_dropped_total", `reason="log_queue_full"`)

	time.Sleep(time.Until(end))
	close(stop)
	loadEnd := time.Now()
	elapsed := loadEnd.Sub(start)
	wg.Wait() // the slow zone's clients finish their last exchange

	// In flight back to 0, with the log still read slowly.
	var settled time.Duration
	for {
		m := ovScrape(t, metricsAddr)
		if m.get("coredns_dnsdiag_inflight_sessions", "") == 0 {
			settled = time.Since(loadEnd)
			break
		}
		if time.Since(loadEnd) > ovForwardTimeout+ovSettleSlack {
			t.Fatalf("coredns_dnsdiag_inflight_sessions still %v %s after the load stopped (bound: forward's %s + %s)",
				m.get("coredns_dnsdiag_inflight_sessions", ""), time.Since(loadEnd).Round(time.Millisecond), ovForwardTimeout, ovSettleSlack)
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stopRSS)
	<-rssDone

	// Read the log at full speed again and wait until every session is
	// accounted for: written or dropped.
	p.out.setMode(ovFull)
	var m ovMetrics
	deadline := time.Now().Add(20 * time.Second)
	for {
		m = ovScrape(t, metricsAddr).minus(base)
		sessions := m.sum("coredns_dnsdiag_sessions_total") + m.sum("coredns_dnsdiag_background_sessions_total")
		written := m.sum("coredns_dnsdiag_log_lines_total")
		logDrops := m.get("coredns_dnsdiag_dropped_total", `reason="log_queue_full"`)
		if written+logDrops == sessions && float64(p.out.sessionLines.Load()) == written {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessions not accounted for: %v sessions, %v lines written, %v read from the pipe, %v log_queue_full drops",
				sessions, written, p.out.sessionLines.Load(), logDrops)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Figures.
	var lats, stalledLats []time.Duration
	var probeErrs []string
	for _, ps := range probes {
		for _, pr := range ps {
			if pr.err != nil {
				probeErrs = append(probeErrs, pr.err.Error())
				continue
			}
			lats = append(lats, pr.lat)
			if pr.at.Before(stallEnd) {
				stalledLats = append(stalledLats, pr.lat)
			}
		}
	}
	slices.Sort(lats)
	slices.Sort(stalledLats)
	secs := elapsed.Seconds()
	sessions := m.sum("coredns_dnsdiag_sessions_total")
	drops := m.byLabel("coredns_dnsdiag_dropped_total", "reason")
	statuses := m.byLabel("coredns_dnsdiag_sessions_total", "status")
	peakMB := float64(rssPeak.Load()) / 1024
	t.Logf("load %s (log pipe unread for the first %s, then read at most %d B every %s); %d KB of output read by the end",
		elapsed.Round(time.Millisecond), stallEnd.Sub(start).Round(time.Millisecond), ovSlowChunk, ovSlowPause, p.out.bytes.Load()/1024)
	t.Logf("UDP flood: sent %.0f q/s, answered %.0f q/s; slow zone: %.0f q/s sent, %.0f answered; silent zone: %.0f q/s sent",
		float64(floodSent.Load())/secs, float64(floodRecv.Load())/secs, float64(slowSent.Load())/secs, float64(slowRecv.Load())/secs, float64(silentSent.Load())/secs)
	t.Logf("client sessions counted: %.0f (%.0f/s held by the server), by status %v; background %v",
		sessions, sessions/secs, statuses, m.sum("coredns_dnsdiag_background_sessions_total"))
	t.Logf("TCP probes: %d answered, %d failed; latency p50 %s p99 %s max %s; while the log was unread: %d, p99 %s",
		len(lats), len(probeErrs), ovPct(lats, 50), ovPct(lats, 99), ovPct(lats, 100), len(stalledLats), ovPct(stalledLats, 99))
	t.Logf("dropped_total by reason %v; log lines written %.0f (%.0f read); log_queue_full drops by mid-load %.0f", drops,
		m.sum("coredns_dnsdiag_log_lines_total"), float64(p.out.sessionLines.Load()), midLogDrops)
	t.Logf("in flight at mid-load %.0f; back to 0 %s after the load stopped", midInflight, settled.Round(time.Millisecond))
	t.Logf("VmRSS: %.1f MB at start, peak %.1f MB (bound %d MB)", float64(rssStart)/1024, peakMB, ovRSSBound)

	// Assertions.
	if len(probeErrs) > 0 {
		t.Errorf("%d internal-zone probes not answered; first: %s", len(probeErrs), probeErrs[0])
	}
	if len(stalledLats) == 0 {
		t.Errorf("no probe answered while the log pipe was unread: the query path blocks on the log")
	}
	if p99 := ovPct(lats, 99); p99 > ovProbeP99 {
		t.Errorf("internal-zone probe p99 %s, want under %s", p99, ovProbeP99)
	}
	if midLogDrops <= 0 || drops["log_queue_full"] <= 0 {
		t.Errorf("no log_queue_full drops (mid-load %v, total %v): the log did not back up, or drops are not counted", midLogDrops, drops["log_queue_full"])
	}
	if peakMB > ovRSSBound {
		t.Errorf("VmRSS peaked at %.1f MB, bound %d MB", peakMB, ovRSSBound)
	}
	if statuses["SampleLoss"] > drops["leg_limit"] {
		t.Errorf("%v SampleLoss sessions but %v leg_limit drops", statuses["SampleLoss"], drops["leg_limit"])
	}
	// The flood overflows the socket the silent zone's queries share, so
	// the kernel drops them in the flood's proportion: CoreDNS holds what
	// it read of them for forward's timeout. Half of that must be in
	// flight (a bound of silentQPS alone failed whenever the machine
	// answered under a quarter of the flood, whatever the binary).
	readShare := float64(floodRecv.Load()) / float64(max(floodSent.Load(), 1))
	if want := float64(silentQPS) * readShare * ovForwardTimeout.Seconds() / 2; midInflight < want || midInflight == 0 {
		t.Errorf("only %v sessions in flight at mid-load, want at least %.0f (%d silent q/s, %.0f%% of datagrams read, held %s): the silent upstream did not hold sessions",
			midInflight, want, silentQPS, 100*readShare, ovForwardTimeout)
	}
	if sessions/secs < 1000 {
		t.Errorf("server held only %.0f sessions/s", sessions/secs)
	}
	if bad := p.out.invalid.Load(); bad > 0 {
		t.Errorf("%d dnsdiag lines are not valid JSON; first: %s", bad, p.out.firstInvalid())
	}
}

const (
	ovProbeTimeout = 2 * time.Second
	// ovProbeP99 is generous: a query path that waited for the log would
	// stall for as long as the pipe is unread (seconds) and time probes
	// out, while a CPU-saturated 2-core machine shared with other builds
	// has shown probe p99s of 20-420 ms.
	ovProbeP99       = time.Second
	ovRSSBound       = 300 // MB
	ovForwardTimeout = 5 * time.Second
	ovSettleSlack    = 3 * time.Second
)

func ovEnvInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// ovOpenLoop sends wire on c at rate queries/s from start until stop is
// closed, each with the next DNS id after id, counting the writes that
// succeed in sent. It wakes every tick and catches up on ticks the
// scheduler skipped, at most batch queries at a time.
func ovOpenLoop(c net.Conn, wire []byte, id uint16, rate float64, tick time.Duration, batch int, start time.Time, stop <-chan struct{}, sent *atomic.Int64) {
	tk := time.NewTicker(tick)
	defer tk.Stop()
	for n := 0; ; {
		select {
		case <-stop:
			return
		case <-tk.C:
		}
		due := int(time.Since(start).Seconds()*rate) - n
		for range min(due, batch) {
			n++
			id++
			be.BigEndian.PutUint16(wire, id)
			if _, err := c.Write(wire); err == nil {
				sent.Add(1)
			}
		}
	}
}

// ovClosedLoop calls exchange with an A query for fmt.Sprintf(name, n),
// n = 0, 1, ..., until stop is closed or exchange returns false.
func ovClosedLoop(stop <-chan struct{}, name string, exchange func(*dns.Msg) bool) {
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		m := new(dns.Msg)
		m.SetQuestion(fmt.Sprintf(name, n), dns.TypeA)
		if !exchange(m) {
			return
		}
	}
}

func ovPack(t *testing.T, name string, qtype uint16) []byte {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ovPct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := (len(d)*p + 99) / 100
	return d[min(max(i-1, 0), len(d)-1)].Round(10 * time.Microsecond)
}

// ovRSS is VmRSS of pid in kB, 0 if unreadable.
func ovRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// ---------------------------------------------------------------------------
// A coredns process whose output is read at a pace the test sets.

type ovProc struct {
	cmd   *exec.Cmd
	ports map[string]int
	out   *ovOutput
}

func (p *ovProc) addr(name string) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.ports[name]))
}

// ovStart runs coredns on corefile ({{NAME}} placeholders become free
// ports) with stdout and stderr on a pipe read by an ovOutput, and waits
// for it to serve.
func ovStart(t *testing.T, corefile string) *ovProc {
	t.Helper()
	p := &ovProc{ports: map[string]int{}}
	conf := filepath.Join(t.TempDir(), "Corefile")
	text := writeCorefile(t, conf, corefile, p.ports)
	var r *os.File
	p.cmd, r = spawn(t, binary, filepath.Dir(conf), "-conf", conf)
	p.out = newOvOutput(r)
	exited := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		p.out.setMode(ovFull)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-exited
		}
		<-p.out.done
		if bad := p.out.crashed(); bad != "" {
			t.Errorf("coredns crashed: %s", bad)
		}
		if t.Failed() {
			t.Logf("Corefile:\n%s\nfirst output lines:\n%s", text, strings.Join(p.out.head(), "\n"))
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for !p.out.banner.Load() {
		select {
		case <-exited:
			t.Fatalf("coredns exited before serving:\n%s", strings.Join(p.out.head(), "\n"))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("coredns did not start:\n%s", strings.Join(p.out.head(), "\n"))
		}
	}
	return p
}

// Reading modes of ovOutput.
const (
	ovFull    int32 = iota // read as fast as the output comes
	ovStalled              // do not read at all: the pipe fills up
	ovSlow                 // read ovSlowChunk every ovSlowPause
)

const (
	ovSlowChunk = 4096
	ovSlowPause = 16 * time.Millisecond
)

// ovOutput reads the process's output at the pace of its mode, checks
// every dnsdiag line is valid JSON and keeps only counts and the first
// lines, so that a flood of session lines costs the test no memory.
type ovOutput struct {
	mode         atomic.Int32
	bytes        atomic.Int64
	banner       atomic.Bool
	sessionLines atomic.Int64
	invalid      atomic.Int64
	done         chan struct{}

	mu      sync.Mutex
	first   []string
	bad     string
	crashes []string
}

func newOvOutput(r *os.File) *ovOutput {
	o := &ovOutput{done: make(chan struct{})}
	go func() {
		defer close(o.done)
		defer r.Close()
		eachLine(bufio.NewReaderSize(&ovPacedReader{r: r, o: o}, 1<<16), o.line)
	}()
	return o
}

func (o *ovOutput) setMode(m int32) { o.mode.Store(m) }

func (o *ovOutput) line(l string) {
	if strings.HasPrefix(l, "CoreDNS-") {
		o.banner.Store(true)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.first) < 40 {
		o.first = append(o.first, l)
	}
	if strings.HasPrefix(l, "panic:") || strings.HasPrefix(l, "fatal error:") || strings.Contains(l, "WARNING: DATA RACE") {
		o.crashes = append(o.crashes, l)
	}
	js, ok := dnsdiagtest.SessionJSON(l)
	if !ok {
		return
	}
	o.sessionLines.Add(1)
	if !json.Valid([]byte(js)) {
		if o.invalid.Add(1) == 1 {
			o.bad = js
		}
	}
}

func (o *ovOutput) head() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.first...)
}

func (o *ovOutput) firstInvalid() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.bad
}

func (o *ovOutput) crashed() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return strings.Join(o.crashes, "\n")
}

type ovPacedReader struct {
	r *os.File
	o *ovOutput
}

func (p *ovPacedReader) Read(b []byte) (int, error) {
	for p.o.mode.Load() == ovStalled {
		time.Sleep(5 * time.Millisecond)
	}
	slow := p.o.mode.Load() == ovSlow
	if slow && len(b) > ovSlowChunk {
		b = b[:ovSlowChunk]
	}
	n, err := p.r.Read(b)
	p.o.bytes.Add(int64(n))
	if slow {
		time.Sleep(ovSlowPause)
	}
	return n, err
}

// ---------------------------------------------------------------------------
// Metrics

// ovMetrics is a scrape: series (name plus labels) to value.
type ovMetrics map[string]float64

// ovScrape is the coredns_dnsdiag_* series of a promScrape, keyed by
// promSample.key.
func ovScrape(t *testing.T, addr string) ovMetrics {
	t.Helper()
	m := ovMetrics{}
	for _, s := range promScrape(t, addr) {
		if strings.HasPrefix(s.Name, "coredns_dnsdiag_") {
			m[s.key()] = s.Value
		}
	}
	return m
}

// ovSeriesName is the metric name of a series key.
func ovSeriesName(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		return key[:i]
	}
	return key
}

// get is the sum of the series of name whose labels contain label.
func (m ovMetrics) get(name, label string) float64 {
	v := 0.0
	for k, x := range m {
		if ovSeriesName(k) == name && strings.Contains(k, label) {
			v += x
		}
	}
	return v
}

func (m ovMetrics) sum(name string) float64 { return m.get(name, "") }

// byLabel sums the series of name by the value of label.
func (m ovMetrics) byLabel(name, label string) map[string]float64 {
	out := map[string]float64{}
	for k, x := range m {
		if ovSeriesName(k) != name {
			continue
		}
		_, rest, ok := strings.Cut(k, label+`="`)
		if !ok {
			continue
		}
		v, _, _ := strings.Cut(rest, `"`)
		out[v] += x
	}
	return out
}

// minus is m with base's counters subtracted; gauges go along, which is
// harmless for the counters this test compares.
func (m ovMetrics) minus(base ovMetrics) ovMetrics {
	out := ovMetrics{}
	for k, v := range m {
		out[k] = v - base[k]
	}
	return out
}
