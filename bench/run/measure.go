package main

import (
	"fmt"
	"time"
)

// The one start/warm/measure routine of every run: the rounds (runVariant),
// the memory runs and the CPU profiles differ only in what they do while
// dnsperf saturates CoreDNS.

// warmStart waits (at most IDLEWAIT) for the rest of the machine to be idle,
// starts v's CoreDNS with the Corefile conf and warms it up for WARMUP
// seconds. It returns how long it waited; the caller closes the instance.
func warmStart(cfg *config, v variant, upPID int, tag, conf string) (*instance, time.Duration, error) {
	foreign, waited := waitIdle(cfg.foreignMax, cfg.idleWait, upPID)
	if waited >= cfg.idleWait {
		logf("  machine still busy (%.2f cores foreign) after %s: running anyway", foreign, waited.Round(time.Second))
	}
	in, err := startInstance(cfg, v, tag, conf)
	if err != nil {
		return nil, waited, err
	}
	if cfg.warmup > 0 {
		if _, err := in.perf(cfg.warmup, 0); err != nil {
			in.close()
			return nil, waited, fmt.Errorf("warm-up: %w", err)
		}
	}
	return in, waited, nil
}

// saturate drives in at saturation for seconds, running meanwhile (if not
// nil) alongside, and returns dnsperf's figures and the CPU time CoreDNS
// used over the run.
func (in *instance) saturate(seconds float64, meanwhile func(done <-chan struct{})) (p perf, cpu time.Duration, err error) {
	cpu0 := procCPU(in.pid())
	alongside(func() { p, err = in.perf(seconds, 0) }, meanwhile)
	return p, procCPU(in.pid()) - cpu0, err
}

// alongside runs load in the background and meanwhile (if not nil) with a
// channel closed when load returns, and returns once both have.
func alongside(load func(), meanwhile func(done <-chan struct{})) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		load()
	}()
	if meanwhile != nil {
		meanwhile(done)
	}
	<-done
}

// sampleEvery calls sample with the time elapsed every interval until done
// closes, skipping ticks later than until (the run is ending then).
func sampleEvery(done <-chan struct{}, interval, until time.Duration, sample func(elapsed time.Duration)) {
	t0 := time.Now()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if e := time.Since(t0); e <= until {
				sample(e)
			}
		case <-done:
			return
		}
	}
}
