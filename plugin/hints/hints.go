// Package hints names DNS failures that look like success from inside the
// server: a client that sent the same query again, glibc's parallel A/AAAA
// pair resent after the conntrack race, a search-path walk, a truncated
// answer never retried over TCP, an upstream that does not take TCP.
//
// Each finding needs several sessions, so the package remembers recent ones
// in fixed-size tables (a time window and an entry cap each; see README.md)
// and is fed one session at a time: Begin when its query arrives, Observe
// when it ends, Due to release sessions whose verdict needed a later event.
// It knows nothing of the plugin that feeds it, so that anything seeing a
// server's queries and answers (dnsdiag, a dnstap reader) can use it.
package hints

import (
	"net/netip"
	"time"
)

// Code names a finding. The values are stable: they are the code label of
// coredns_dnsdiag_hints_total and what operators grep for.
type Code string

// The codes, documented in README.md.
const (
	RetransmitAfterAnswer Code = "retransmit_after_answer"
	RetransmitUnanswered  Code = "retransmit_unanswered"
	ParallelAAAAA         Code = "parallel_a_aaaa"
	SearchExpansion       Code = "search_expansion"
	TruncatedNoTCPRetry   Code = "truncated_no_tcp_retry"
	UpstreamTCPFailed     Code = "upstream_tcp_failed"
)

// Codes lists every code, for callers that create one metric per code.
var Codes = [...]Code{RetransmitAfterAnswer, RetransmitUnanswered, ParallelAAAAA, SearchExpansion, TruncatedNoTCPRetry, UpstreamTCPFailed}

// Values of Hint.Lost.
const (
	LostQuery  = "query"  // CoreDNS never saw the first copy of the other half
	LostAnswer = "answer" // CoreDNS answered both first copies
	LostNone   = "none"   // CoreDNS saw both first copies and left one unanswered
)

// Values of Hint.Waiting.
const (
	WaitingUpstream = "upstream" // the earlier copy had been forwarded
	WaitingPlugin   = "plugin"   // it was never forwarded: a plugin held or dropped it
)

// Values of Hint.Evidence.
const (
	EvidenceUDPAnswered = "udp_answered" // the same upstream answered over UDP within the window
	EvidenceClientTCP   = "client_tcp"   // the client asked over TCP and forward followed it
)

// Session is what the detectors need of one client query and its outcome.
// Begin reads the fields up to Start; Observe reads them all. The Detector
// keeps nothing that points into a Session except the Name string of a
// negative answer (strings are immutable), so the caller may reuse it.
type Session struct {
	ID     uint64         // the caller's id, handed back by Due and in hint details
	Client netip.AddrPort // the client's address and source port
	TCP    bool           // the query came over TCP
	DNSID  uint16
	Name   string // the question name as sent, compared case-insensitively
	Qtype  uint16
	Qclass uint16
	Start  time.Time // the query arrived

	End       time.Time // the session ended
	Answered  bool      // the client was sent a response
	Rcode     int       // the response's rcode, when Answered
	Answers   int       // answer records in it: 0 with NOERROR is NODATA
	Truncated bool      // it had the TC bit
	Attempts  []Attempt // forward's upstream attempts, in order

	// k are the keys Begin derived for session keyed, which Observe and
	// HoldTruncated use instead of hashing the name again. keyed is ID,
	// not a flag, so that a Session reused for another query without
	// being cleared cannot hand its keys on.
	k     keys
	keyed uint64
}

// Attempt is one upstream exchange of a session.
type Attempt struct {
	Upstream netip.AddrPort
	TCP      bool // over TCP (or DoT)
	Answered bool // a response came back, whatever its rcode
}

// Hint is one finding about a session. Code and Text are always set; the
// other fields are details of some codes only, listed with each.
type Hint struct {
	Code Code
	Text string

	// retransmit_after_answer, retransmit_unanswered: the earlier copy.
	Earlier      uint64        // its session id
	SamePort     bool          // this copy came from the same source port (glibc, musl; dig uses a new one)
	EarlierRcode int           // after_answer: the rcode it was answered with
	Ago          time.Duration // after_answer: from that answer to this copy's arrival
	InFlight     bool          // unanswered: it was still running when this copy arrived
	Running      time.Duration // unanswered: how long it had run then (or ran, if it had ended unanswered)
	Waiting      string        // unanswered: WaitingUpstream, WaitingPlugin, or "" if it had not ended yet
	Attempts     int           // unanswered: its upstream attempts

	// retransmit_unanswered (the earlier copy's last attempt), upstream_tcp_failed.
	Upstream netip.AddrPort

	// parallel_a_aaaa
	Lost  string // LostQuery, LostAnswer or LostNone
	Other uint64 // the session of the other half, resent with this one

	// search_expansion
	Count    int      // NXDOMAIN or NODATA candidates before this answer
	Suffixes []string // the search suffixes they carried, in order, without duplicates

	// truncated_no_tcp_retry
	Window time.Duration // how long the client had to retry over TCP

	// upstream_tcp_failed
	Evidence string        // EvidenceUDPAnswered or EvidenceClientTCP
	UDPAgo   time.Duration // udp_answered: how long ago the upstream answered over UDP
}

// Texts: constants, so that a hint costs no allocation for its words.
const (
	textAfterAnswer = "the client sent this query again (same address, DNS ID and question) after CoreDNS had answered it: " +
		"the answer was lost on the way back (UDP loss on the client's node, conntrack, IPVS) or came after the client's timeout"
	textUnanswered = "the client sent this query again (same address, DNS ID and question) before CoreDNS had answered it: " +
		"resolution took longer than the client's timeout (see Waiting), or CoreDNS dropped the earlier copy"
	pairRemedies = " Remedies: NodeLocal DNSCache; options single-request-reopen in the pod's dnsConfig; " +
		"glibc >= 2.33; options timeout/attempts (e.g. timeout:2 attempts:3) to recover sooner"
	textPairQuery = "glibc resent its parallel A and AAAA queries from one socket, and CoreDNS never saw the first copy of the other half: " +
		"it was lost before CoreDNS, the conntrack race of parallel A/AAAA on the client's node." + pairRemedies
	textPairAnswer = "glibc resent its parallel A and AAAA queries from one socket although CoreDNS had answered both: " +
		"an answer was lost on the way back (conntrack, UDP loss on the client's node)." + pairRemedies
	textPairNone = "glibc resent its parallel A and AAAA queries from one socket because CoreDNS had not answered one of them " +
		"(see its line: acl, an upstream timeout); nothing was lost on the network." + pairRemedies
	textSearch = "the client's search path (ndots) sent Count queries for this name with a search suffix, answered NXDOMAIN or NODATA, " +
		"before this one: use a fully qualified name (trailing dot) or a lower ndots in the pod's dnsConfig"
	textTruncated = "the answer was truncated (TC) over UDP and the client did not ask again over TCP within Window: " +
		"it has no complete answer; make the client use TCP (options use-vc) or shrink the answer"
	textUpstreamTCP = "an upstream attempt over TCP got no answer; the upstream may not take TCP (e.g. PrivateZone): " +
		"forward prefer_udp sends UDP even for TCP clients"
)
