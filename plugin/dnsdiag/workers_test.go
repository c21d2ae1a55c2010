package dnsdiag

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"unsafe"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
)

// TestWorkerPanicValue: the chain's panic reaches the query's goroutine with
// its own value, and the worker that ran it serves the next query.
func TestWorkerPanicValue(t *testing.T) {
	captureLog(t)
	bug := &struct{ s string }{"plugin bug"}
	calls := 0
	d := newTestDiag(t, "dnsdiag", plugin.HandlerFunc(func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
		calls++
		if calls == 1 {
			panic(bug)
		}
		return answer(dns.RcodeSuccess)(ctx, w, r)
	}))
	started := pool.started.Load()
	got := func() (v any) {
		defer func() { v = recover() }()
		d.ServeDNS(context.Background(), &test.ResponseWriter{}, query("example.org", dns.TypeA))
		return nil
	}()
	if got != any(bug) {
		t.Fatalf("recovered %v, want the chain's own panic value %v", got, bug)
	}
	w := &test.ResponseWriter{}
	if rcode, err := d.ServeDNS(context.Background(), w, query("example.org", dns.TypeA)); rcode != dns.RcodeSuccess || err != nil {
		t.Errorf("the query after the panic: rcode %d, err %v", rcode, err)
	}
	if now := pool.started.Load(); now > started+1 {
		t.Errorf("%d workers started for two sequential queries", now-started)
	}
}

// TestWorkerGoexit: a plugin calling runtime.Goexit ends the query's
// goroutine, as it did when the chain ran there, and its worker is no
// longer counted.
func TestWorkerGoexit(t *testing.T) {
	captureLog(t)
	d := newTestDiag(t, "dnsdiag", plugin.HandlerFunc(func(context.Context, dns.ResponseWriter, *dns.Msg) (int, error) {
		runtime.Goexit()
		return 0, nil
	}))
	// Make sure the query gets a worker of its own, not the inline path.
	wk := idleWorker()
	if wk == nil {
		t.Fatal("the worker pool is full")
	}
	pool.idle <- wk
	started := pool.started.Load()
	returned := make(chan bool, 1)
	go func() {
		defer func() { returned <- false }()
		d.ServeDNS(context.Background(), &test.ResponseWriter{}, query("example.org", dns.TypeA))
		returned <- true
	}()
	if <-returned {
		t.Fatal("ServeDNS returned after the chain called Goexit")
	}
	if now := pool.started.Load(); now != started-1 {
		t.Errorf("workers alive: %d, want %d (the exited one uncounted)", now, started-1)
	}
}

// TestWorkerStackStaysGrown: after its first query a worker runs an 8 KiB
// deep chain without the runtime moving its stack, also across GCs (the pad
// keeps it from shrinking); the same chain on new goroutines does move
// stacks, which shows the test would see it.
func TestWorkerStackStaysGrown(t *testing.T) {
	captureLog(t)
	moved := 0
	d := newTestDiag(t, "dnsdiag", plugin.HandlerFunc(func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
		var here byte
		before := uintptr(unsafe.Pointer(&here))
		deep(8)
		if uintptr(unsafe.Pointer(&here)) != before {
			moved++
		}
		return answer(dns.RcodeSuccess)(ctx, w, r)
	}))
	if without := stackMoves(false, 50); without == 0 {
		t.Fatal("no stack grew on new goroutines: the path is not deep enough to tell")
	}
	r := query("example.org", dns.TypeA)
	d.ServeDNS(context.Background(), &test.ResponseWriter{}, r) // the worker's first query may grow it
	moved = 0
	for i := range 50 {
		if i%10 == 0 {
			runtime.GC()
		}
		r.Id++
		d.ServeDNS(context.Background(), &test.ResponseWriter{}, r)
	}
	if moved > 0 {
		t.Errorf("a worker's stack moved in %d of 50 queries", moved)
	}
}

// TestWorkerPoolCap: more queries in flight at once than maxWorkers are all
// served, the ones beyond the cap on their own goroutines, and the pool
// never grows past its cap.
func TestWorkerPoolCap(t *testing.T) {
	captureLog(t)
	const n = maxWorkers + 20
	var arrived sync.WaitGroup
	arrived.Add(n)
	release := make(chan struct{})
	d := newTestDiag(t, "dnsdiag {\n log none\n}", plugin.HandlerFunc(func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
		arrived.Done()
		<-release
		return answer(dns.RcodeSuccess)(ctx, w, r)
	}))
	var served sync.WaitGroup
	served.Add(n)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			defer served.Done()
			r := query("example.org", dns.TypeA)
			r.Id = uint16(i)
			if _, err := d.ServeDNS(context.Background(), &test.ResponseWriter{}, r); err != nil {
				errs <- err
			}
		}()
	}
	arrived.Wait() // all n are in the chain at once
	if got := pool.started.Load(); got > maxWorkers {
		t.Errorf("%d workers started, cap %d", got, maxWorkers)
	}
	close(release)
	served.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
