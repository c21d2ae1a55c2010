package dnsdiag

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain runs the tests, then fails the run if they left goroutines
// behind: a forward not shut down, a rate-limit reporter never stopped, a
// background session's timer still pending, an upstream server still
// serving. Written by hand (no goleak dependency).
//
// A goroutine counts as leaked when it did not exist before the tests ran,
// is still there leakWait after they ended, and runs none of the functions
// in permanent: goroutines that are process-wide by design.
func TestMain(m *testing.M) {
	flag.Parse()
	before := goroutineIDs(goroutineStacks())
	code := m.Run()
	if fuzzing() {
		// Fuzz workers run every input in one process, on purpose.
		os.Exit(code)
	}
	if leaked := leakedGoroutines(before, leakWait); len(leaked) > 0 {
		fmt.Fprintf(os.Stderr, "\n%d goroutine(s) leaked by the tests (still running %s after they ended):\n\n%s\n",
			len(leaked), leakWait, strings.Join(leaked, "\n\n"))
		os.Exit(1)
	}
	os.Exit(code)
}

// leakWait is how long goroutines get to end after the tests: forward's
// connection managers and upstream servers stop asynchronously.
const leakWait = 5 * time.Second

// permanent lists functions whose goroutines live for the whole process by
// design. A goroutine whose stack contains one of them is never a leak.
var permanent = []string{
	// dnsdiag's process-wide log writer, started on the first emit.
	"dnsdiag.(*lineWriter).run",
	// The runtime and the testing package.
	"testing.(*M).",
	"testing.tRunner",
	"testing.runTests",
	"testing.runFuzzTests",
	"testing.runFuzzing",
	"runtime.goexit0",
	"os/signal.signal_recv",
	"os/signal.loop",
	"runtime.ensureSigM",
	"runtime/trace.Start",
	// Package-level state of dependencies, started once by init or
	// first use and never stopped: caddy's signal and upgrade handling,
	// the opencensus/prometheus helpers some CoreDNS packages pull in,
	// and the interning/conn-tracking helpers of golang.org/x/net.
	"github.com/coredns/caddy.trapSignals",
	"github.com/coredns/caddy.trapSignalsPosix",
	"go.opencensus.io/stats/view.(*worker).start",
}

// goroutineStacks is the stack dump of every goroutine, one entry each.
func goroutineStacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if s := strings.TrimSpace(string(g)); s != "" {
			out = append(out, s)
		}
	}
	return out
}

var goroutineHeader = regexp.MustCompile(`^goroutine (\d+) `)

func goroutineID(stack string) string {
	if m := goroutineHeader.FindStringSubmatch(stack); m != nil {
		return m[1]
	}
	return ""
}

func goroutineIDs(stacks []string) map[string]bool {
	ids := map[string]bool{}
	for _, s := range stacks {
		ids[goroutineID(s)] = true
	}
	return ids
}

// isPermanent reports whether a goroutine is process-wide by design.
func isPermanent(stack string) bool {
	for _, f := range permanent {
		if strings.Contains(stack, f) {
			return true
		}
	}
	return false
}

// leakedGoroutines waits up to wait for the goroutines started since
// before to end and returns the stacks of those still running.
func leakedGoroutines(before map[string]bool, wait time.Duration) []string {
	deadline := time.Now().Add(wait)
	for {
		var leaked []string
		for _, s := range goroutineStacks() {
			id := goroutineID(s)
			if before[id] || isPermanent(s) || strings.Contains(s, "dnsdiag.leakedGoroutines") {
				continue
			}
			leaked = append(leaked, s)
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return leaked
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fuzzing reports whether this process fuzzes (-test.fuzz or a fuzz
// worker) rather than running the tests and the seed corpus.
func fuzzing() bool {
	for _, name := range []string{"test.fuzz", "test.fuzzworker"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" && f.Value.String() != "false" {
			return true
		}
	}
	return false
}
