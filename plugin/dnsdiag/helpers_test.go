package dnsdiag

import (
	"context"
	"encoding/json"
	golog "log"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dnsdiag/dnsdiag/plugin/dnsdiagtest"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/forward"
	"github.com/coredns/coredns/plugin/pkg/proxy"
	"github.com/coredns/coredns/plugin/pkg/transport"
	"github.com/miekg/dns"
)

// The builders of test chains, shared by the tests and the benchmarks:
// upstream (a DNS server on loopback), newForward (a real forward to it) and
// newTestDiag (an instance in front of a chain, hooked as OnStartup does).

// answer is a next plugin that writes a reply with rcode and, like
// CoreDNS's own plugins after writing, returns success.
func answer(rcode int) plugin.HandlerFunc {
	return func(_ context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
		m := new(dns.Msg)
		m.SetRcode(r, rcode)
		if rcode == dns.RcodeSuccess {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30}, A: net.IPv4(192, 0, 2, 1)})
		}
		return dns.RcodeSuccess, w.WriteMsg(m)
	}
}

// newTestDiag builds an instance from a Corefile block the way setup does,
// puts it in front of next and hooks the forwards below it, as OnStartup
// does.
func newTestDiag(t testing.TB, corefile string, next plugin.Handler) *Dnsdiag {
	t.Helper()
	d, err := newDnsdiag(caddy.NewTestController("dns", corefile))
	if err != nil {
		t.Fatalf("newDnsdiag(%q): %v", corefile, err)
	}
	d.Next = next
	d.hookForwards()
	return d
}

// logCapture collects what CoreDNS's logger writes.
type logCapture struct{ dnsdiagtest.SyncBuffer }

func captureLog(t testing.TB) *logCapture {
	c := &logCapture{}
	golog.SetOutput(c)
	t.Cleanup(func() {
		// A line still queued would land in the next test's capture; one
		// the writer is still writing when the flush gives up (a loaded
		// machine) goes to the standard logger's default output.
		lines.flush(5 * time.Second)
		golog.SetOutput(os.Stderr)
	})
	return c
}

// line is the parsed form of a session line, the one schema the e2e tests
// read too.
type line = dnsdiagtest.Line

// sessionLines waits for pending lines and parses every session line.
func (c *logCapture) sessionLines(t testing.TB) []line {
	t.Helper()
	lines.flush(5 * time.Second)
	return parseSessionLines(t, c.String())
}

// parseSessionLines parses every session line in log text, failing on any
// that is not valid JSON of the session line's shape.
func parseSessionLines(t testing.TB, text string) []line {
	t.Helper()
	var out []line
	for _, s := range strings.Split(text, "\n") {
		if js, ok := dnsdiagtest.SessionJSON(s); ok && !json.Valid([]byte(js)) {
			t.Fatalf("session line is not valid JSON:\n%s", js)
		}
		l, ok, err := dnsdiagtest.Parse(s)
		if err != nil {
			t.Fatalf("session line does not have the session line's shape: %v", err)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// oneLine asserts exactly one session line was written and returns it.
func (c *logCapture) oneLine(t testing.TB) line {
	t.Helper()
	ls := c.sessionLines(t)
	if len(ls) != 1 {
		t.Fatalf("want 1 session line, got %d:\n%s", len(ls), c.String())
	}
	return ls[0]
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	return m
}

// upstream serves h on a UDP socket on 127.0.0.1, on its own dns.Server
// (not dnstest's, which registers on the process-wide mux).
func upstream(t testing.TB, h dns.HandlerFunc) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: func() { close(started) }}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// newForward is a real forward plugin sending to addrs in order.
func newForward(t testing.TB, addrs ...string) *forward.Forward {
	t.Helper()
	f := forward.New()
	for _, a := range addrs {
		f.SetProxy(proxy.NewProxy("forward", a, transport.DNS))
	}
	if err := f.OnStartup(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.OnShutdown() })
	return f
}

func rcodeOf(l line) string {
	if l.Rcode == nil {
		return "<nil>"
	}
	return *l.Rcode
}

func types(l line) string { return strings.Join(l.Types(), " ") }

// legTime is when dnsdiag saw the leg.
func legTime(t testing.TB, m dnsdiagtest.Message) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, m.Time)
	if err != nil {
		t.Fatalf("leg %s: Time %q: %v", m.Type, m.Time, err)
	}
	return at
}
