package dnsdiag

import (
	"context"
	"runtime"
	"sync/atomic"

	"github.com/miekg/dns"
)

// The server runs every query on a new goroutine, and a forwarded query
// needs more stack than a new goroutine starts with (see stack.go): plain
// CoreDNS spends some 8% of its CPU on forwarded traffic growing stacks,
// copying a dozen frames each time. dnsdiag runs the plugins below it on a
// pool of long-lived goroutines instead, whose stacks were grown once, and
// the query's goroutine waits for the one that took its query, as it would
// wait for the call. Handing a query over costs two goroutine switches,
// far less than a stack copy. When every worker is busy and the pool is at
// its cap, the query runs on its own goroutine as before, after
// reserveStack.

// maxWorkers caps the pool, process-wide: stacks are a process's resource,
// and instances come and go with reloads while the goroutines stay. On the
// kube-system chain a worker's stack is 16 KiB (workerPad keeps it from
// shrinking), so the pool holds 4 MiB; a chain deeper than 16 KiB grows
// them to 32 KiB. Queries beyond maxWorkers in flight at once run on their
// own goroutines.
const maxWorkers = 256

// workerPad is the frame at the bottom of a worker's stack. A GC halves a
// goroutine's stack when less than a quarter of it is in use, and an idle
// worker would use next to none: the pad keeps 5 KiB in use, so the stack
// stays at 16 KiB, which the path below dnsdiag (5.9 KiB deep on the
// kube-system chain) fits in with the pad.
const workerPad = 5 << 10

// pool is the process's workers: idle holds those waiting for a query,
// started counts those alive.
var pool = struct {
	idle    chan *worker
	started atomic.Int32
}{idle: make(chan *worker, maxWorkers)}

// worker is a goroutine running the chain below dnsdiag for one query at a
// time. Its fields are the query it was handed and the chain's result; the
// channels order who owns them.
type worker struct {
	start chan struct{} // a query is set: run it
	done  chan struct{} // the chain returned, panicked or exited

	d   *Dnsdiag
	ctx context.Context
	w   dns.ResponseWriter
	r   *dns.Msg

	rcode  int
	err    error
	ended  ending
	panicV any
}

// ending is how the chain's call ended on a worker.
type ending uint8

const (
	endReturned ending = iota
	endPanicked
	endExited // runtime.Goexit: the worker goroutine is gone
)

// serveOnWorker runs d.serve on an idle worker, or on a new one while
// the pool is below its cap, or else here. The chain's panic is raised
// again here, on the query's goroutine, where the server recovers it; a
// Goexit is repeated here.
func (d *Dnsdiag) serveOnWorker(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	wk := idleWorker()
	if wk == nil {
		reserveStack()
		return d.serve(ctx, w, r)
	}
	wk.d, wk.ctx, wk.w, wk.r = d, ctx, w, r
	wk.start <- struct{}{}
	<-wk.done
	rcode, err, ended, pv := wk.rcode, wk.err, wk.ended, wk.panicV
	*wk = worker{start: wk.start, done: wk.done} // drop the query's references
	switch ended {
	case endPanicked:
		pool.idle <- wk
		panic(pv)
	case endExited:
		pool.started.Add(-1)
		runtime.Goexit()
	}
	pool.idle <- wk // never blocks: idle holds every worker there is
	return rcode, err
}

// idleWorker takes an idle worker, starts one if there is none and the
// pool is below its cap, or returns nil.
func idleWorker() *worker {
	select {
	case wk := <-pool.idle:
		return wk
	default:
	}
	if pool.started.Add(1) > maxWorkers {
		pool.started.Add(-1)
		return nil
	}
	wk := &worker{start: make(chan struct{}), done: make(chan struct{})}
	go wk.loop()
	return wk
}

// loop runs the queries handed to the worker, for ever.
func (wk *worker) loop() {
	var pad [workerPad]byte
	keepPad(&pad)
	for range wk.start {
		wk.run()
		wk.done <- struct{}{}
	}
}

// run calls the chain, noting how the call ended; on a Goexit it tells the
// waiting query goroutine before the worker goroutine ends.
func (wk *worker) run() {
	wk.ended = endExited
	defer func() {
		if wk.ended == endExited {
			if v := recover(); v != nil {
				wk.ended, wk.panicV = endPanicked, v
			} else {
				wk.done <- struct{}{} // Goexit: loop will not get to say it
			}
		}
	}()
	wk.rcode, wk.err = wk.d.serve(wk.ctx, wk.w, wk.r)
	wk.ended = endReturned
}

// keepPad is apart so that the compiler keeps loop's pad.
//
//go:noinline
func keepPad(pad *[workerPad]byte) { pad[0] = 1 }
