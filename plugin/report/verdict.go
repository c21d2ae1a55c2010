package report

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Verdict codes. They are stable: dashboards count them
// (coredns_dnsdiag_verdicts_total{code}) and README.md documents them.
const (
	CodeEverythingFailing = "everything_failing"
	CodeUpstreamFailing   = "upstream_failing"
	CodeInternalFailing   = "internal_failing"
	CodeOverloaded        = "coredns_overloaded"
	CodeAnswersLost       = "answers_lost"
	CodeSearchPath        = "search_path"
)

// Codes lists every verdict code, in the order verdicts appear in a report.
var Codes = []string{CodeEverythingFailing, CodeUpstreamFailing, CodeInternalFailing, CodeOverloaded, CodeAnswersLost, CodeSearchPath}

// verdicts runs the guide's tree over a window's figures.
func verdicts(c Config, r *Report) []Verdict {
	var v []Verdict
	// The guide's first split: which domain names fail. Internal failures
	// that repeat an upstream failure (the cache serving it) count as the
	// upstream's, or a failing upstream would look like a failing CoreDNS.
	intOwn := r.Internal.Failed - r.Internal.FailedCachedUpstream
	intFailing := c.failing(intOwn, r.Internal.Sessions)
	extFailing := c.failing(r.External.Failed, r.External.Sessions)
	switch {
	case intFailing && extFailing:
		v = append(v, Verdict{CodeEverythingFailing, everythingFailingText(r, intOwn)})
	case extFailing:
		v = append(v, Verdict{CodeUpstreamFailing, upstreamFailingText(c, r)})
	case intFailing:
		v = append(v, Verdict{CodeInternalFailing, internalFailingText(r, intOwn)})
	}
	if t := overloadedText(c, r); t != "" {
		v = append(v, Verdict{CodeOverloaded, t})
	}
	if lost := r.Hints[HintRetransmitAfterAnswer.code()] + r.Hints[HintParallelAAAA.code()]; lost >= c.MinAnswersLost {
		v = append(v, Verdict{CodeAnswersLost, answersLostText(r, lost)})
	}
	if r.Sessions >= c.MinSessions && r.SearchShare >= c.SearchShare {
		v = append(v, Verdict{CodeSearchPath, searchPathText(r)})
	}
	return v
}

// failing tells whether failed of sessions is a pattern rather than noise.
func (c Config) failing(failed, sessions uint64) bool {
	return failed >= c.MinFailures && float64(failed) >= c.FailureShare*float64(sessions)
}

func everythingFailingText(r *Report, intOwn uint64) string {
	return fmt.Sprintf("Both cluster-internal and external names fail: %d of %d sessions answered inside CoreDNS and %d of %d forwarded ones. "+
		"The guide's case \"both cluster-internal and cluster-external domain names fail\" points at CoreDNS itself or its configuration: "+
		"check the CoreDNS pods' status and restarts, their operational logs (API server or upstream connection errors, plugin errors after a Corefile change) and the Corefile; "+
		"if kernel drops or CPU throttling are reported too, see coredns_overloaded. Most failing:%s",
		intOwn, r.Internal.Sessions, r.External.Failed, r.External.Sessions, namesText(r, false))
}

func upstreamFailingText(c Config, r *Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "External names fail while internal ones do not: %d of %d forwarded sessions failed", r.External.Failed, r.External.Sessions)
	if r.Internal.Sessions > 0 {
		fmt.Fprintf(&b, ", %d of %d answered inside CoreDNS", r.Internal.Failed-r.Internal.FailedCachedUpstream, r.Internal.Sessions)
	}
	b.WriteString(". The guide's case \"only cluster-external domain names fail\": the upstream answers abnormally.")
	bad := failingUpstreams(c, r.Upstreams)
	for _, u := range bad {
		fmt.Fprintf(&b, " Upstream %s: %d attempts, %s, p99 %s.", u.Address, u.Attempts, upstreamPattern(u), msText(u.P99Ms))
	}
	if len(bad) == 0 {
		b.WriteString(" No upstream's failed attempts reach the failure share: the session lines' Cause tells how these sessions failed.")
	}
	b.WriteString(" A ticket to the upstream's operator needs the affected names, the rcode, the time to the second and this instance:")
	b.WriteString(namesText(r, true))
	fmt.Fprintf(&b, "; window %s to %s", r.Start.Format(time.RFC3339), r.End.Format(time.RFC3339))
	if r.Instance != "" {
		fmt.Fprintf(&b, "; instance %s", r.Instance)
	}
	b.WriteString(". If attempts go unanswered, test the path from CoreDNS's network namespace to the upstream (dig @upstream), its security groups and its load; " +
		"SERVFAIL or REFUSED points at the upstream's configuration for those zones (conditional forwarders, PrivateZone).")
	return b.String()
}

// failingUpstreams are the upstreams whose failed attempts reach the
// failure share, most failing first.
func failingUpstreams(c Config, us []Upstream) []Upstream {
	var bad []Upstream
	for _, u := range us {
		if f := attemptsFailed(u); f > 0 && float64(f) >= c.FailureShare*float64(u.Attempts) {
			bad = append(bad, u)
		}
	}
	slices.SortStableFunc(bad, func(a, b Upstream) int { return cmp.Compare(attemptsFailed(b), attemptsFailed(a)) })
	return bad
}

// failure is one way an upstream's attempts failed, with its count.
type failure struct {
	what string
	n    uint64
}

// failures are an upstream's failed attempts by kind (no answer, or an
// rcode other than NOERROR and NXDOMAIN), most frequent first.
func failures(u Upstream) []failure {
	var f []failure
	if u.NoAnswer > 0 {
		f = append(f, failure{"no answer", u.NoAnswer})
	}
	for rc, n := range u.Rcodes {
		if rc != "NOERROR" && rc != "NXDOMAIN" {
			f = append(f, failure{rc, n})
		}
	}
	slices.SortFunc(f, func(a, b failure) int {
		if c := cmp.Compare(b.n, a.n); c != 0 {
			return c
		}
		return strings.Compare(a.what, b.what)
	})
	return f
}

func attemptsFailed(u Upstream) uint64 {
	var n uint64
	for _, f := range failures(u) {
		n += f.n
	}
	return n
}

// upstreamPattern names how an upstream fails, as shares of its attempts:
// "90% no answer, 5% SERVFAIL".
func upstreamPattern(u Upstream) string {
	var out []string
	for _, f := range failures(u) {
		out = append(out, percent(f.n, u.Attempts)+" "+f.what)
	}
	return strings.Join(out, ", ")
}

func internalFailingText(r *Report, intOwn uint64) string {
	return fmt.Sprintf("Names answered inside CoreDNS fail while forwarded ones do not: %d of %d internal sessions failed. "+
		"kubernetes, file, hosts or template answered SERVFAIL (or nothing), or the cache served failures it had stored: "+
		"check the kubernetes plugin's connection to the API server and its logs, the zones' files, and the Corefile's answering plugins "+
		"(failures that repeat an upstream's are counted as the upstream's: %d). Most failing:%s",
		intOwn, r.Internal.Sessions, r.Internal.FailedCachedUpstream, namesText(r, false))
}

func overloadedText(c Config, r *Report) string {
	var why []string
	if r.Sockets != nil && r.Sockets.Drops >= c.MinDrops {
		s := fmt.Sprintf("the kernel dropped %d datagrams on CoreDNS's own UDP sockets (receive buffer full", r.Sockets.Drops)
		if r.UDP != nil {
			s += fmt.Sprintf("; the namespace counted %d RcvbufErrors, %d InErrors", r.UDP.RcvbufErrors, r.UDP.InErrors)
		}
		why = append(why, s+")")
	}
	if p := r.CPU; p != nil && p.ThrottledPeriods > 0 && p.ThrottledShare >= c.ThrottledShare {
		s := fmt.Sprintf("its cgroup was throttled in %d of %d CPU periods (%s, %s in all)", p.ThrottledPeriods, p.Periods, percent(p.ThrottledPeriods, p.Periods), msText(p.ThrottledMs))
		if p.QuotaCores > 0 {
			s += fmt.Sprintf(" under a limit of %g cores", p.QuotaCores)
			if float64(p.GOMAXPROCS) > math.Ceil(p.QuotaCores) {
				s += fmt.Sprintf(" with GOMAXPROCS %d, more threads than the limit can run", p.GOMAXPROCS)
			}
		}
		why = append(why, s)
	}
	if len(why) == 0 {
		return ""
	}
	return "CoreDNS is overloaded: " + strings.Join(why, ", and ") + fmt.Sprintf(" (peak %d sessions in flight). ", r.PeakInFlight) +
		"The guide's cases \"high CoreDNS pod load\" and \"sudden traffic spikes\": raise or remove the CPU limit (a dedicated node pool without limits), " +
		"enable CPU Burst where the limit stays, add replicas spread over different nodes, and deploy NodeLocal DNSCache to take load off CoreDNS."
}

func answersLostText(r *Report, lost uint64) string {
	return fmt.Sprintf("Clients resent %d queries CoreDNS had already answered (%s %d, %s %d): the answers are lost on the way back to the clients. "+
		"The guide's cases \"full conntrack table\" (dmesg shows \"conntrack full\" on the client nodes: raise nf_conntrack_max), "+
		"\"concurrent A and AAAA record resolution\" (the conntrack race: options single-request-reopen, glibc 2.33 or later, or NodeLocal DNSCache), "+
		"\"client-side load\" (the client nodes' CPU and NIC retransmissions) and IPVS (UDP sessions kept to a gone CoreDNS pod: lower the IPVS UDP timeout).",
		lost, HintRetransmitAfterAnswer.code(), r.Hints[HintRetransmitAfterAnswer.code()], HintParallelAAAA.code(), r.Hints[HintParallelAAAA.code()])
}

func searchPathText(r *Report) string {
	return fmt.Sprintf("%d of %d queries (%s) were search-path NXDOMAIN candidates: clients walk their search list (ndots:5 by default) before the name they meant. "+
		"Lower ndots in the pods' dnsConfig, write external names as FQDNs with a trailing dot, "+
		"or answer the walk in one query with autopath @kubernetes (the guide warns of autopath defects: drop it if external names then resolve wrongly).",
		r.SearchCandidates, r.Sessions, percent(r.SearchCandidates, r.Sessions))
}

// namesText lists the most failing names for a verdict's text; external
// selects forwarded failures, with their upstream and when each last failed.
func namesText(r *Report, external bool) string {
	var parts []string
	for _, f := range r.FailedNames {
		if external && f.External == 0 {
			continue
		}
		rc := "no answer"
		if f.Rcode != nil {
			rc = *f.Rcode
		}
		s := fmt.Sprintf(" %s %s %s x%d", f.Name, f.QType, rc, f.Count)
		if external {
			s += fmt.Sprintf(" via %s, last at %s", f.Upstream, f.Last.Format(time.RFC3339))
		}
		parts = append(parts, s)
		if len(parts) == 3 {
			break
		}
	}
	return strings.Join(parts, ";") + " (see FailedNames)"
}

func percent(n, of uint64) string {
	if of == 0 {
		return "0%"
	}
	return fmt.Sprintf("%.3g%%", 100*float64(n)/float64(of))
}

func msText(v float64) string {
	return (time.Duration(v * float64(time.Millisecond))).Round(time.Microsecond).String()
}
