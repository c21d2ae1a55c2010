package dnsdiag

import (
	"errors"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/coredns/caddy"
	"github.com/dnsdiag/dnsdiag/plugin/hints"
)

// The analyser: dnsdiag for a CoreDNS whose image cannot be swapped. Stock
// CoreDNS streams `dnstap tcp://ANALYSER:6000 full` to it; it pairs the
// four message types back into sessions and hands each to the plugin's own
// conclude (classify, diagnose, metrics, log policy, line), so both ways
// of running dnsdiag report the same thing wherever the stream allows.
// build/analyser is the program around it; its README says where pairing
// from a stream is less exact than the plugin.

// AnalyserConfig configures an Analyser.
type AnalyserConfig struct {
	// Options are lines of a dnsdiag block ("log all", "rate 0", ...),
	// parsed and validated exactly as the plugin's Corefile block is.
	Options []string
	// Window is how long a session waits for its legs after its client
	// query arrived; then it ends with what it has.
	Window time.Duration
	// MaxSessions caps open sessions, all senders together. A client
	// query beyond it gets no session and is counted.
	MaxSessions int
	// Queue is the frames each connection may have waiting for pairing.
	// When it is full frames are shed and counted, and the sessions then
	// open on that connection end as SampleLoss: the sender never waits.
	Queue int
	// Idle closes a connection that sent nothing (not even the rest of a
	// frame) for that long: a stalled or vanished sender.
	Idle time.Duration
}

// DefaultAnalyserConfig is what build/analyser starts with.
func DefaultAnalyserConfig() AnalyserConfig {
	return AnalyserConfig{Window: 10 * time.Second, MaxSessions: 50_000, Queue: 10_000, Idle: 5 * time.Minute}
}

// Analyser receives dnstap Frame Streams and turns them into sessions.
type Analyser struct {
	d   *Dnsdiag
	cfg AnalyserConfig
	m   *analyserMetrics

	mu     sync.Mutex
	closed bool
	lns    []net.Listener
	conns  map[*tapConn]struct{}
	wg     sync.WaitGroup

	stop, stopped chan struct{}
}

// NewAnalyser builds an analyser and starts its periodic work (held
// sessions, rate-limit and report lines); Close ends it.
func NewAnalyser(cfg AnalyserConfig) (*Analyser, error) {
	a, err := newAnalyser(cfg)
	if err != nil {
		return nil, err
	}
	go func() {
		a.d.run(a.stop)
		close(a.stopped)
	}()
	return a, nil
}

// newAnalyser builds an analyser without starting anything.
func newAnalyser(cfg AnalyserConfig) (*Analyser, error) {
	if cfg.Window <= 0 || cfg.MaxSessions <= 0 || cfg.Queue <= 0 || cfg.Idle <= 0 {
		return nil, errors.New("analyser: window, session cap, queue and idle timeout must be positive")
	}
	block := "dnsdiag {\n" + strings.Join(cfg.Options, "\n") + "\n}"
	d, err := parse(caddy.NewTestController("dns", block))
	if err != nil {
		return nil, err
	}
	if d.diag, err = newDiagnosis(hints.Config{}); err != nil {
		return nil, err
	}
	d.metrics = newInstanceMetrics()
	if d.report != nil {
		registerSelfMetrics()
	}
	a := &Analyser{d: d, cfg: cfg, m: analyserStats(), conns: map[*tapConn]struct{}{},
		stop: make(chan struct{}), stopped: make(chan struct{})}
	return a, nil
}

// Serve accepts senders on ln until ln is closed; each connection is read
// and paired on its own goroutines.
func (a *Analyser) Serve(ln net.Listener) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return ln.Close()
	}
	a.lns = append(a.lns, ln)
	a.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		t := newTapConn(a, c)
		a.mu.Lock()
		if a.closed {
			a.mu.Unlock()
			c.Close()
			return nil
		}
		a.conns[t] = struct{}{}
		a.wg.Add(1)
		a.mu.Unlock()
		go func() {
			defer a.wg.Done()
			t.serve()
			a.mu.Lock()
			delete(a.conns, t)
			a.mu.Unlock()
		}()
	}
}

// Close stops accepting, ends every connection (their open sessions end
// as they are), releases held sessions and waits, at most flushTimeout,
// for the lines to be written.
func (a *Analyser) Close() {
	a.mu.Lock()
	a.closed = true
	for _, ln := range a.lns {
		ln.Close()
	}
	for t := range a.conns {
		t.conn.Close()
	}
	a.mu.Unlock()
	a.wg.Wait()
	close(a.stop)
	<-a.stopped
	lines.flush(flushTimeout)
}
