package main

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestAlongsideWaitsForBoth(t *testing.T) {
	var loaded atomic.Bool
	sawDone := false
	alongside(func() {
		time.Sleep(30 * time.Millisecond)
		loaded.Store(true)
	}, func(done <-chan struct{}) {
		<-done
		sawDone = loaded.Load()
	})
	if !sawDone {
		t.Error("done closed before load returned")
	}

	// A meanwhile that returns first (the profile fetch) still waits for
	// the load; a nil one is allowed (the rounds' saturation run).
	for _, meanwhile := range []func(<-chan struct{}){func(<-chan struct{}) {}, nil} {
		loaded.Store(false)
		alongside(func() {
			time.Sleep(30 * time.Millisecond)
			loaded.Store(true)
		}, meanwhile)
		if !loaded.Load() {
			t.Error("alongside returned before load did")
		}
	}
}

func TestSampleEvery(t *testing.T) {
	done := make(chan struct{})
	time.AfterFunc(200*time.Millisecond, func() { close(done) })
	var got []time.Duration
	sampleEvery(done, 20*time.Millisecond, 110*time.Millisecond, func(e time.Duration) { got = append(got, e) })
	// Ticks at ~20, 40, ... 200 ms; those after 110 ms are skipped.
	if len(got) < 2 || len(got) > 5 {
		t.Fatalf("got %d samples %v, want 2 to 5 (every 20 ms up to 110 ms)", len(got), got)
	}
	for i, e := range got {
		if e > 110*time.Millisecond || (i > 0 && e <= got[i-1]) {
			t.Errorf("samples %v: want increasing and none after 110 ms", got)
		}
	}
}

func TestPerQuery(t *testing.T) {
	if got := perQuery(3*time.Millisecond, 1000); got != 3 {
		t.Errorf("perQuery(3ms, 1000) = %v µs, want 3", got)
	}
	if got := perQuery(time.Second, 0); got != 0 {
		t.Errorf("perQuery with no completed query = %v, want 0", got)
	}
}
