package report

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Observe of a Succeeded session allocates nothing, internal or forwarded,
// with hints or without, once its upstream is known.
func TestObserveSucceededAllocatesNothing(t *testing.T) {
	r := New(DefaultConfig())
	cases := map[string]Session{
		"internal":  internal("svc.ns.svc.cluster.local.", dns.RcodeSuccess),
		"nxdomain":  internal("nx.ns.svc.cluster.local.", dns.RcodeNameError),
		"forwarded": external("www.example.", up1, dns.RcodeSuccess, 3*time.Millisecond),
		"hinted": {Name: "www.example.", Rcode: dns.RcodeSuccess, Hints: HintSearchExpansion | HintRetransmitAfterAnswer, SearchCandidates: 3,
			External: true, Attempts: []Attempt{{Upstream: up1, Duration: 2 * time.Second}, {Upstream: up2, Answered: true, Duration: time.Millisecond}}},
	}
	for name, s := range cases {
		r.Observe(&s) // a new upstream is the rare path: it may allocate once
		if n := testing.AllocsPerRun(1000, func() { r.Observe(&s) }); n != 0 {
			t.Errorf("%s: %v allocations per Observe", name, n)
		}
	}
	rep := r.close(time.Now(), System{})
	if rep.Sessions != 4*1001+4 {
		t.Errorf("counted %d sessions, want %d", rep.Sessions, 4*1001+4)
	}
}

// Observe and Tick run concurrently (go test -race), and no session is
// lost or counted twice across the windows; each session lands whole in
// one window, so a window's figures agree with each other (a silent
// upstream's no-answer share is never above 1).
func TestConcurrentObserveAndTick(t *testing.T) {
	r := New(DefaultConfig())
	const workers, perWorker = 4, 3000
	var wg sync.WaitGroup
	var done atomic.Bool
	var sessions, failed, attempts uint64
	tickerDone := make(chan struct{})
	go func() {
		defer close(tickerDone)
		for now := time.Now(); ; now = now.Add(time.Second) {
			last := done.Load()
			rep := r.close(now, System{})
			sessions += rep.Sessions
			failed += rep.Failed
			var silent, good uint64
			for _, u := range rep.Upstreams {
				attempts += u.Attempts
				switch u.Address {
				case up1.String():
					silent = u.Attempts
					if u.NoAnswer != u.Attempts || len(u.Rcodes) != 0 {
						t.Errorf("window at %v: silent upstream %+v: every attempt, and only they, must be unanswered", now, u)
					}
				case up2.String():
					good = u.Attempts
				}
			}
			if silent != rep.Failed || good != rep.External.Sessions-rep.External.Failed {
				t.Errorf("window at %v: %d failed and %d answered forwarded sessions, but %d and %d attempts: a session was split across windows",
					now, rep.Failed, rep.External.Sessions-rep.External.Failed, silent, good)
			}
			if _, err := rep.AppendJSON(nil); err != nil {
				t.Error(err)
			}
			if last {
				return
			}
			time.Sleep(50 * time.Microsecond)
		}
	}()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				var s Session
				switch i % 3 {
				case 0:
					s = internal("svc.cluster.local.", dns.RcodeSuccess)
				case 1:
					s = external(fmt.Sprintf("w%d-%d.example.", w, i%400), up1, -1, time.Second)
				default:
					s = external("www.example.", up2, dns.RcodeSuccess, time.Millisecond)
				}
				r.Observe(&s)
			}
		}()
	}
	wg.Wait()
	done.Store(true)
	<-tickerDone
	if want := uint64(workers * perWorker); sessions != want {
		t.Errorf("windows counted %d sessions, want %d", sessions, want)
	}
	if want := uint64(workers * perWorker / 3); failed != want || attempts != 2*want {
		t.Errorf("windows counted %d failed and %d attempts, want %d and %d", failed, attempts, want, 2*want)
	}
}

func BenchmarkObserve(b *testing.B) {
	for name, s := range map[string]Session{
		"internal":  internal("svc.ns.svc.cluster.local.", dns.RcodeSuccess),
		"forwarded": external("www.example.", up1, dns.RcodeSuccess, 3*time.Millisecond),
		"failed":    external("www.example.", up1, dns.RcodeServerFailure, 3*time.Millisecond),
	} {
		b.Run(name, func(b *testing.B) {
			r := New(DefaultConfig())
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				s := s
				for pb.Next() {
					r.Observe(&s)
				}
			})
		})
	}
}

func BenchmarkTick(b *testing.B) {
	r := New(DefaultConfig())
	b.ReportAllocs()
	for b.Loop() {
		for i := range 300 {
			s := external(fmt.Sprintf("n%d.example.", i), up1, -1, time.Second)
			r.Observe(&s)
		}
		rep, _ := r.Tick(time.Now(), System{})
		if _, err := rep.AppendJSON(nil); err != nil {
			b.Fatal(err)
		}
	}
}
