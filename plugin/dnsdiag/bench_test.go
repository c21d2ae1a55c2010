package dnsdiag

// Microbenchmarks of the per-query hot path (issue 4). Each compares the
// same in-process plugin chain with and without dnsdiag in front of it:
//
//	go test -run '^$' -bench . -benchmem -cpu 1 ./plugin/dnsdiag/
//
// `make bench` runs them pinned to one core (CoreDNS under test runs with
// GOMAXPROCS=1 there too), so ns/op is close to CPU per query, and profiles
// the allocations of the dnsdiag variants (-memprofile, alloc_objects).
//
// The chains are built with the tests' builders (helpers_test.go).

import (
	"context"
	"io"
	golog "log"
	"net"
	"os"
	"runtime"
	"testing"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/cache"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
)

// Corefile blocks of the variants.
const (
	benchDefault = "dnsdiag"                         // logs non-Succeeded sessions, 20 lines/s
	benchLogAll  = "dnsdiag {\n log all\n rate 0\n}" // every session, no rate limit
)

// benchFixed answers every query with a copy of one prebuilt reply, the way
// an internal answer (hosts, a cache hit) does, without the cost of a real
// plugin, so that dnsdiag's share stands out. It returns success after
// writing, like CoreDNS's plugins.
type benchFixed struct{ rcode int }

func (h benchFixed) ServeDNS(_ context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	m := new(dns.Msg)
	m.SetRcode(r, h.rcode)
	if h.rcode == dns.RcodeSuccess {
		m.Answer = []dns.RR{benchA}
	}
	return dns.RcodeSuccess, w.WriteMsg(m)
}

func (benchFixed) Name() string { return "benchfixed" }

// benchUpstream answers like benchFixed{NOERROR}, as the upstream of the
// forward variants.
func benchUpstream(w dns.ResponseWriter, r *dns.Msg) {
	benchFixed{}.ServeDNS(context.Background(), w, r)
}

var benchA = &dns.A{Hdr: dns.RR_Header{Name: "n01.bench.test.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 3600}, A: net.IPv4(10, 0, 0, 1)}

// benchWriter is a test.ResponseWriter whose client address is one of a
// fixed set, made beforehand: the server's own writer returns the address
// it read the query from, without allocating, and so must the benchmark's.
type benchWriter struct {
	test.ResponseWriter
	clients []net.Addr
	client  int
}

func newBenchWriter() *benchWriter {
	w := &benchWriter{clients: make([]net.Addr, 256)}
	for i := range w.clients {
		w.clients[i] = &net.UDPAddr{IP: net.IPv4(10, 0, 1, byte(i)), Port: 40000 + i}
	}
	return w
}

func (w *benchWriter) RemoteAddr() net.Addr { return w.clients[w.client] }

// benchServe runs h b.N times on one query name. When lines may be logged it
// keeps the log writer's queue from overflowing, so every selected session
// is rendered and written rather than dropped, and waits for the last lines
// before the timer stops: ns/op and allocs/op then include the writer's work.
func benchServe(b *testing.B, h plugin.Handler, logs bool) {
	// The standard logger as CoreDNS sets it: no flags, so the sink
	// batches lines as it does in production.
	flags := golog.Flags()
	golog.SetOutput(io.Discard)
	golog.SetFlags(0)
	b.Cleanup(func() {
		lines.flush(flushTimeout) // rate-limited lines still queued
		golog.SetOutput(os.Stderr)
		golog.SetFlags(flags)
	})

	ctx := context.Background()
	w := newBenchWriter()
	q := new(dns.Msg)
	q.SetQuestion("n01.bench.test.", dns.TypeA)
	for range 100 { // warm pools, caches and upstream connections
		h.ServeDNS(ctx, w, q)
	}
	lines.flush(flushTimeout)

	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		// Distinct lookups, as from many clients: a new client address
		// and DNS ID each time, so that no query is a retransmission.
		w.client = i % len(w.clients)
		q.Id = uint16(i / len(w.clients))
		if rcode, err := h.ServeDNS(ctx, w, q); err != nil || !plugin.ClientWrite(rcode) {
			b.Fatalf("ServeDNS: rcode %d, err %v", rcode, err)
		}
		if logs {
			for lines.pending.Load() >= logQueueSize/2 {
				runtime.Gosched()
			}
		}
	}
	if logs {
		lines.flush(flushTimeout)
	}
}

// BenchmarkInternalAnswer: an answer from a plugin below dnsdiag with no
// forward in the chain (hosts, file, ...): BitMap 3.
func BenchmarkInternalAnswer(b *testing.B) {
	b.Run("plain", func(b *testing.B) { benchServe(b, benchFixed{}, false) })
	b.Run("dnsdiag", func(b *testing.B) { benchServe(b, newTestDiag(b, benchDefault, benchFixed{}), false) })
	b.Run("dnsdiag-logall", func(b *testing.B) { benchServe(b, newTestDiag(b, benchLogAll, benchFixed{}), true) })
}

// BenchmarkCacheHit: a real cache in front of a real forward, warmed, so
// every query is a cache hit: BitMap 3, but with a forward hooked below
// dnsdiag, so each query also carries its session id in its context.
func BenchmarkCacheHit(b *testing.B) {
	chain := func(b *testing.B) plugin.Handler {
		c := cache.New()
		c.Next = newForward(b, upstream(b, benchUpstream))
		return c
	}
	b.Run("plain", func(b *testing.B) { benchServe(b, chain(b), false) })
	b.Run("dnsdiag", func(b *testing.B) { benchServe(b, newTestDiag(b, benchDefault, chain(b)), false) })
	b.Run("dnsdiag-logall", func(b *testing.B) { benchServe(b, newTestDiag(b, benchLogAll, chain(b)), true) })
}

// BenchmarkForwarded: a real forward to an upstream on loopback (in this
// process, so its cost is in every variant alike): BitMap 15. With dnsdiag,
// forward also builds and packs the two tap messages of the exchange.
func BenchmarkForwarded(b *testing.B) {
	chain := func(b *testing.B) plugin.Handler { return newForward(b, upstream(b, benchUpstream)) }
	b.Run("plain", func(b *testing.B) { benchServe(b, chain(b), false) })
	b.Run("dnsdiag", func(b *testing.B) { benchServe(b, newTestDiag(b, benchDefault, chain(b)), false) })
	b.Run("dnsdiag-logall", func(b *testing.B) { benchServe(b, newTestDiag(b, benchLogAll, chain(b)), true) })
}

// BenchmarkLoggedFailure: the chain answers SERVFAIL (Failed, BitMap 3).
// The default policy selects it, then its 20 lines/s rate limit suppresses
// nearly all; `log all` with `rate 0` renders and writes every one (to
// io.Discard here, through CoreDNS's logger).
func BenchmarkLoggedFailure(b *testing.B) {
	fail := benchFixed{rcode: dns.RcodeServerFailure}
	b.Run("plain", func(b *testing.B) { benchServe(b, fail, false) })
	b.Run("dnsdiag-default-ratelimited", func(b *testing.B) { benchServe(b, newTestDiag(b, benchDefault, fail), false) })
	b.Run("dnsdiag-logall", func(b *testing.B) { benchServe(b, newTestDiag(b, benchLogAll, fail), true) })
}
