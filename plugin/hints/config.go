package hints

import (
	"errors"
	"strconv"
	"time"
)

// Config sizes the Detector. A zero field takes its default (README.md has
// the table); New refuses negative or oversized values.
type Config struct {
	// RetransmitWindow: how long after a copy arrived another copy of it
	// (same client address, DNS ID and question) counts as a retransmission.
	RetransmitWindow time.Duration
	// RetransmitEntries caps the sessions remembered for that.
	RetransmitEntries int
	// RateEntries caps the client address and question pairs whose
	// distinct lookups within RetransmitWindow are counted, so that an ID
	// repeated by chance is not taken for a retransmission.
	RateEntries int

	// PairGap: the most the arrivals of A and AAAA of one name from one
	// address and port may differ to count as glibc's parallel pair.
	PairGap time.Duration
	// PairEntries caps the A/AAAA arrivals remembered for that (each for
	// pairKeep).
	PairEntries int

	// SearchWindow: how long before an answer an NXDOMAIN or NODATA
	// candidate of the same client may have arrived to count in its walk.
	SearchWindow time.Duration
	// SearchEntries caps the candidates remembered.
	SearchEntries int

	// TCWindow: how long a client has to ask over TCP after a truncated
	// UDP answer before truncated_no_tcp_retry is reported.
	TCWindow time.Duration
	// HeldEntries caps the sessions held for a later verdict (truncated
	// answers waiting for TCP, fast retransmissions waiting for the other
	// half of their pair). When full, a session is not held and gets no
	// such verdict.
	HeldEntries int

	// UpstreamWindow: how recent an upstream's UDP answer must be for a
	// failed TCP attempt to it to count as upstream_tcp_failed.
	UpstreamWindow time.Duration
	// Upstreams caps the upstream addresses tracked; they are the
	// Corefile's forward targets, so they never expire.
	Upstreams int

	// Dropped, if set, is called with one of the Reason constants each time
	// a table sheds a live entry or refuses one. It runs on the goroutine
	// of Begin or Observe, with no lock held.
	Dropped func(reason string)
}

// Reasons passed to Config.Dropped; the plugin counts them in
// coredns_dnsdiag_dropped_total.
const (
	ReasonRetransmitEvicted = "hints_retransmit_evicted" // a session within RetransmitWindow was forgotten
	ReasonRateEvicted       = "hints_rate_evicted"       // a question's lookup count within RetransmitWindow was forgotten
	ReasonPairEvicted       = "hints_pair_evicted"       // an A/AAAA arrival within pairKeep was forgotten
	ReasonSearchEvicted     = "hints_search_evicted"     // a candidate within SearchWindow was forgotten
	ReasonHeldFull          = "hints_held_full"          // a session could not be held for its verdict
	ReasonUpstreamsFull     = "hints_upstreams_full"     // an upstream beyond Upstreams is not tracked
)

// Defaults.
const (
	DefaultRetransmitWindow  = 30 * time.Second
	DefaultRetransmitEntries = 1 << 15
	DefaultRateEntries       = 1 << 13
	DefaultPairGap           = 50 * time.Millisecond
	DefaultPairEntries       = 1 << 13
	DefaultSearchWindow      = 2 * time.Second
	DefaultSearchEntries     = 1 << 14
	DefaultTCWindow          = 3 * time.Second
	DefaultHeldEntries       = 1 << 10
	DefaultUpstreamWindow    = time.Minute
	DefaultUpstreams         = 64
)

// Limits on the values New accepts, so that a typo cannot reserve
// gigabytes or make a window meaningless.
const (
	maxEntries = 1 << 22
	maxWindow  = 10 * time.Minute
	maxPairGap = 500 * time.Millisecond
	// pairKeep is how long an A/AAAA arrival stays usable: longer than the
	// largest PairGap plus the delay of a held session's release.
	pairKeep = time.Second
)

// withDefaults fills zero fields and checks the others.
func (c Config) withDefaults() (Config, error) {
	durations := []struct {
		name     string
		v        *time.Duration
		def, max time.Duration
	}{
		{"retransmit window", &c.RetransmitWindow, DefaultRetransmitWindow, maxWindow},
		{"pair gap", &c.PairGap, DefaultPairGap, maxPairGap},
		{"search window", &c.SearchWindow, DefaultSearchWindow, maxWindow},
		{"TC window", &c.TCWindow, DefaultTCWindow, maxWindow},
		{"upstream window", &c.UpstreamWindow, DefaultUpstreamWindow, maxWindow},
	}
	for _, d := range durations {
		switch {
		case *d.v == 0:
			*d.v = d.def
		case *d.v < 0 || *d.v > d.max:
			return c, errors.New("hints: " + d.name + " " + d.v.String() + " out of range (0, " + d.max.String() + "]")
		}
	}
	counts := []struct {
		name     string
		v        *int
		def, max int
	}{
		{"retransmit entries", &c.RetransmitEntries, DefaultRetransmitEntries, maxEntries},
		{"rate entries", &c.RateEntries, DefaultRateEntries, maxEntries},
		{"pair entries", &c.PairEntries, DefaultPairEntries, maxEntries},
		{"search entries", &c.SearchEntries, DefaultSearchEntries, maxEntries},
		{"held entries", &c.HeldEntries, DefaultHeldEntries, maxEntries},
		{"upstreams", &c.Upstreams, DefaultUpstreams, maxUpstreams},
	}
	for _, n := range counts {
		switch {
		case *n.v == 0:
			*n.v = n.def
		case *n.v < 0 || *n.v > n.max:
			return c, errors.New("hints: " + n.name + " " + strconv.Itoa(*n.v) + " out of range (0, " + strconv.Itoa(n.max) + "]")
		}
	}
	return c, nil
}
