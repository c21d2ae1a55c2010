package dnsdiag

import (
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain runs the tests, then fails the run if they left goroutines
// behind: a forward not shut down, a rate-limit reporter never stopped, a
// background session's timer still pending, an upstream server still
// serving. Goroutines that ran before the tests, dnsdiag's process-wide
// log writer (started on the first emit) and its workers (workers.go),
// are not leaks.
func TestMain(m *testing.M) {
	flag.Parse()
	ignore := []goleak.Option{
		goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/dnsdiag/dnsdiag/plugin/dnsdiag.(*lineWriter).run"),
		goleak.IgnoreAnyFunction("github.com/dnsdiag/dnsdiag/plugin/dnsdiag.(*worker).loop"),
	}
	code := m.Run()
	if fuzzing() {
		// Fuzz workers run every input in one process, on purpose.
		os.Exit(code)
	}
	// goleak retries for well under a second; forward's connection
	// managers and the upstream servers stop asynchronously, so give
	// them leakWait.
	err := goleak.Find(ignore...)
	for deadline := time.Now().Add(leakWait); err != nil && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		err = goleak.Find(ignore...)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "\ngoroutines leaked by the tests (still running %s after they ended): %v\n", leakWait, err)
		os.Exit(1)
	}
	os.Exit(code)
}

// leakWait is how long goroutines get to end after the tests.
const leakWait = 5 * time.Second

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
