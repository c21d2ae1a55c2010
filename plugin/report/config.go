package report

import "fmt"

// Config holds the thresholds that turn a window's figures into verdicts.
// The defaults are chosen for a one-minute window; README.md says why.
type Config struct {
	// Instance names this CoreDNS in the report (e.g. the pod's hostname):
	// a ticket to an upstream's operator needs it.
	Instance string

	// MinFailures is the fewest failed sessions that make a population
	// (internal or external names) failing; fewer are noise, not a pattern.
	MinFailures uint64
	// FailureShare is the share of a population's sessions that must fail,
	// besides MinFailures, for it to be failing.
	FailureShare float64
	// MinSessions is the fewest sessions in the window for search_path.
	MinSessions uint64
	// SearchShare is the share of sessions that are search-path NXDOMAIN
	// candidates from which search_path fires.
	SearchShare float64
	// MinAnswersLost is the fewest retransmissions of answered queries
	// (retransmit_after_answer plus parallel_a_aaaa) for answers_lost.
	MinAnswersLost uint64
	// MinDrops is the fewest datagrams dropped on CoreDNS's own sockets
	// for coredns_overloaded.
	MinDrops uint64
	// ThrottledShare is the share of CPU periods throttled from which
	// coredns_overloaded fires.
	ThrottledShare float64
}

// DefaultConfig returns the default thresholds.
func DefaultConfig() Config {
	return Config{
		MinFailures:    10,
		FailureShare:   0.05,
		MinSessions:    100,
		SearchShare:    0.5,
		MinAnswersLost: 10,
		MinDrops:       1,
		ThrottledShare: 0.01,
	}
}

// Validate reports the first threshold out of range: shares must lie in
// (0, 1] and counts be at least 1, or a verdict would fire on every window.
func (c Config) Validate() error {
	shares := []struct {
		name string
		v    float64
	}{{"failure share", c.FailureShare}, {"search share", c.SearchShare}, {"throttled share", c.ThrottledShare}}
	for _, s := range shares {
		if !(s.v > 0 && s.v <= 1) {
			return fmt.Errorf("%s must be in (0, 1], not %v", s.name, s.v)
		}
	}
	counts := []struct {
		name string
		v    uint64
	}{{"min failures", c.MinFailures}, {"min sessions", c.MinSessions}, {"min answers lost", c.MinAnswersLost}, {"min drops", c.MinDrops}}
	for _, n := range counts {
		if n.v < 1 {
			return fmt.Errorf("%s must be at least 1", n.name)
		}
	}
	return nil
}
