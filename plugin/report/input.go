package report

import (
	"math/bits"
	"net/netip"
	"time"
)

// Session is what the report needs of one finished client session. The
// caller fills it on the query goroutine and may reuse it once Observe
// returns: the Reporter keeps no reference to it or to its Attempts.
type Session struct {
	// External is set when the session was forwarded (it had upstream
	// attempts); otherwise it was answered inside CoreDNS: cache, hosts,
	// kubernetes, file, template, or nothing at all.
	External bool
	// Failed is set when the session's Status is Failed.
	Failed bool
	// Rcode is the rcode the client received, -1 if it received nothing.
	Rcode int
	// Name and Qtype are the question; Name only matters for a failed session.
	Name  string
	Qtype uint16
	// Attempts are the session's upstream attempts, in order.
	Attempts []Attempt
	// Hints are the hints the session carried.
	Hints Hints
	// SearchCandidates is the number of search-path NXDOMAIN candidates
	// that a search_expansion hint counted before this session.
	SearchCandidates int
}

// Attempt is one upstream exchange.
type Attempt struct {
	// Upstream is the address the attempt went to. It is an AddrPort, not a
	// string, so that the caller needs no allocation to fill it.
	Upstream netip.AddrPort
	// Answered is set when the upstream responded; Rcode is then its rcode.
	Answered bool
	Rcode    int
	Duration time.Duration
}

// Hints is a set of hint codes, one bit each.
type Hints uint32

// The hint codes the report counts.
const (
	// HintRetransmitAfterAnswer: the client resent a query CoreDNS had answered.
	HintRetransmitAfterAnswer Hints = 1 << iota
	// HintRetransmitUnanswered: the client resent a query CoreDNS had not yet answered.
	HintRetransmitUnanswered
	// HintParallelAAAA: A and AAAA from the same source port at once (the conntrack race).
	HintParallelAAAA
	// HintSearchExpansion: the name was reached by walking the search path.
	HintSearchExpansion
	// HintTruncatedNoTCPRetry: the answer was truncated and the client did not retry over TCP.
	HintTruncatedNoTCPRetry
	// HintUpstreamTCPFailed: forward's retry over TCP failed.
	HintUpstreamTCPFailed

	hintCount = iota
)

// hintCodes are the codes as the hints write them, in bit order.
var hintCodes = [hintCount]string{
	"retransmit_after_answer",
	"retransmit_unanswered",
	"parallel_a_aaaa",
	"search_expansion",
	"truncated_no_tcp_retry",
	"upstream_tcp_failed",
}

// code is the code of a single hint bit.
func (h Hints) code() string { return hintCodes[bits.TrailingZeros32(uint32(h))] }

// HintFromCode is the bit of a hint code, 0 if the report does not know it.
// A caller holding codes as strings resolves each once, not per session.
func HintFromCode(code string) Hints {
	for i, c := range hintCodes {
		if c == code {
			return 1 << i
		}
	}
	return 0
}

// System holds the figures the caller reads outside the query path, as
// deltas over the window that Tick closes. A group whose Present flag is
// false was not readable: it is left out of the report and no verdict is
// drawn from it.
type System struct {
	Sockets SocketFigures
	UDP     UDPFigures
	CPU     CPUFigures
	// PeakInFlight is the largest number of sessions in flight at once
	// during the window.
	PeakInFlight int
}

// SocketFigures are the kernel's drops on CoreDNS's own UDP sockets (the
// drops column of /proc/net/udp and udp6 for the sockets this process holds).
type SocketFigures struct {
	Present bool
	Drops   uint64
}

// UDPFigures are the network namespace's UDP errors (/proc/net/snmp).
type UDPFigures struct {
	Present      bool
	InErrors     uint64
	RcvbufErrors uint64
}

// CPUFigures are CoreDNS's cgroup CPU accounting (cpu.stat) and its limit.
type CPUFigures struct {
	Present          bool
	Periods          uint64
	ThrottledPeriods uint64
	Throttled        time.Duration
	// QuotaCores is the CPU limit in cores (quota / period), 0 for none.
	QuotaCores float64
	GOMAXPROCS int
}
