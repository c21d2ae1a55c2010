package dnsdiag

import "time"

// limits bound what dnsdiag holds, so that its memory cannot grow with load.
type limits struct {
	// inflight caps client sessions in flight, process-wide. A query
	// beyond it is served untouched, without a session, and counted.
	inflight int64
	// background caps open background sessions per instance.
	background int
}

func defaultLimits() limits { return limits{inflight: 100_000, background: 10_000} }

const (
	// logQueueSize bounds sessions waiting for the log writer. When it is
	// full a logged session is dropped and counted; the query path never
	// waits for the log.
	logQueueSize = 4096
	// flushTimeout bounds how long shutdown waits for pending log lines.
	flushTimeout = 5 * time.Second
)
