package report

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"time"

	"github.com/miekg/dns"
)

// Report is one window's figures and verdicts. Its JSON form is documented
// in README.md; the field names are that form's member names.
type Report struct {
	Instance string `json:",omitempty"`
	Start    time.Time
	End      time.Time
	Seconds  float64

	Sessions     uint64
	Failed       uint64
	FailureShare float64
	Internal     Population
	External     Population

	Upstreams []Upstream `json:",omitempty"`
	// UpstreamsUntracked counts attempts to upstreams beyond the cap.
	UpstreamsUntracked uint64 `json:",omitempty"`

	FailedNames []FailedName `json:",omitempty"`
	// FailedNamesEvicted counts candidates the name table replaced.
	FailedNamesEvicted uint64 `json:",omitempty"`

	// Hints counts sessions by hint code; codes not seen are left out.
	Hints            map[string]uint64 `json:",omitempty"`
	SearchCandidates uint64
	SearchShare      float64

	Sockets      *SocketReport `json:",omitempty"`
	UDP          *UDPReport    `json:",omitempty"`
	CPU          *CPUReport    `json:",omitempty"`
	PeakInFlight int

	Verdicts []Verdict
}

// Population is the sessions answered inside CoreDNS (Internal) or
// forwarded (External).
type Population struct {
	Sessions uint64
	Failed   uint64
	// FailedCachedUpstream (Internal only) counts failures of names that had
	// failed upstream with the same rcode earlier in the window: answers
	// the cache stored from the upstream. Verdicts count them as the
	// upstream's.
	FailedCachedUpstream uint64 `json:",omitempty"`
	FailureShare         float64
}

// Upstream is one upstream's attempts in the window.
type Upstream struct {
	Address       string
	Attempts      uint64
	NoAnswer      uint64
	NoAnswerShare float64
	// Rcodes counts answered attempts by rcode name.
	Rcodes map[string]uint64 `json:",omitempty"`
	// P99Ms is the upper bound of the histogram bucket that holds the 99th
	// percentile attempt, capped at MaxMs.
	P99Ms float64
	MaxMs float64
}

// FailedName is a (name, type, rcode) that failed in the window.
type FailedName struct {
	Name  string
	QType string
	Rcode *string // nil (null): the client received nothing
	Count uint64
	// Overcount is how much Count may exceed the truth: what the entry
	// inherited when it replaced a less frequent one.
	Overcount uint64 `json:",omitempty"`
	External  uint64
	Internal  uint64
	Last      time.Time
	// Upstream is where the last forwarded failure was last sent.
	Upstream string `json:",omitempty"`
}

// SocketReport is SocketFigures in the report.
type SocketReport struct{ Drops uint64 }

// UDPReport is UDPFigures in the report.
type UDPReport struct{ InErrors, RcvbufErrors uint64 }

// CPUReport is CPUFigures in the report.
type CPUReport struct {
	Periods          uint64
	ThrottledPeriods uint64
	ThrottledShare   float64
	ThrottledMs      float64
	QuotaCores       float64 // 0: no limit
	GOMAXPROCS       int
}

// Verdict is one branch of the guide's tree the window is on.
type Verdict struct {
	Code string
	Text string
}

// AppendJSON appends r as one JSON object whose only member is "Report",
// so a report line can never be taken for a session line.
//
// It uses encoding/json, unlike the session lines: a report is rendered once
// per window on the Tick goroutine, never on the query path, and
// encoding/json already turns any bytes of a query name into valid JSON
// (control characters escaped, invalid UTF-8 as U+FFFD). The error is
// only possible for a hand-built Report holding a NaN or infinity.
func (r *Report) AppendJSON(b []byte) ([]byte, error) {
	buf := bytes.NewBuffer(b)
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(struct{ Report *Report }{r}); err != nil {
		return b, err
	}
	out := buf.Bytes()
	return out[:len(out)-1], nil // Encode ends with a newline
}

// report turns the window's counts into figures.
func (w *windowCounts) report(instance string) *Report {
	r := &Report{
		Instance:           instance,
		Start:              w.start.UTC(),
		End:                w.end.UTC(),
		Seconds:            round(w.end.Sub(w.start).Seconds()),
		Sessions:           w.intSessions + w.extSessions,
		Failed:             w.intFailed + w.extFailed,
		Internal:           Population{Sessions: w.intSessions, Failed: w.intFailed, FailedCachedUpstream: min(w.cachedUpstream, w.intFailed)},
		External:           Population{Sessions: w.extSessions, Failed: w.extFailed},
		UpstreamsUntracked: w.untracked,
		FailedNamesEvicted: w.namesEvicted,
		SearchCandidates:   w.searchCandidates,
		PeakInFlight:       w.sys.PeakInFlight,
	}
	r.FailureShare = share(r.Failed, r.Sessions)
	r.Internal.FailureShare = share(r.Internal.Failed, r.Internal.Sessions)
	r.External.FailureShare = share(r.External.Failed, r.External.Sessions)
	// A search_expansion hint may count candidates from the window before,
	// so the share is capped at all of the window's sessions.
	r.SearchShare = min(share(r.SearchCandidates, r.Sessions), 1)

	for i := range w.upstreams {
		r.Upstreams = append(r.Upstreams, w.upstreams[i].report())
	}
	for _, e := range w.names {
		r.FailedNames = append(r.FailedNames, e.report())
	}
	for i, n := range w.hints {
		if n > 0 {
			if r.Hints == nil {
				r.Hints = make(map[string]uint64, hintCount)
			}
			r.Hints[hintCodes[i]] = n
		}
	}
	if s := w.sys.Sockets; s.Present {
		r.Sockets = &SocketReport{Drops: s.Drops}
	}
	if u := w.sys.UDP; u.Present {
		r.UDP = &UDPReport{InErrors: u.InErrors, RcvbufErrors: u.RcvbufErrors}
	}
	if c := w.sys.CPU; c.Present {
		quota := c.QuotaCores
		if math.IsNaN(quota) || math.IsInf(quota, 0) || quota < 0 {
			quota = 0
		}
		r.CPU = &CPUReport{
			Periods: c.Periods, ThrottledPeriods: c.ThrottledPeriods,
			ThrottledShare: share(c.ThrottledPeriods, c.Periods), ThrottledMs: ms(c.Throttled),
			QuotaCores: round(quota), GOMAXPROCS: c.GOMAXPROCS,
		}
	}
	return r
}

func (w *upstreamWindow) report() Upstream {
	u := Upstream{
		Address: w.addr.String(), Attempts: w.attempts, NoAnswer: w.noAnswer,
		NoAnswerShare: share(w.noAnswer, w.attempts), P99Ms: ms(w.p99()), MaxMs: ms(w.max),
	}
	for rc, n := range w.rcodes {
		if n == 0 {
			continue
		}
		if u.Rcodes == nil {
			u.Rcodes = map[string]uint64{}
		}
		name := "other"
		if rc < rcodeOther {
			name = rcodeName(rc)
		}
		u.Rcodes[name] = n
	}
	return u
}

func (e nameEntry) report() FailedName {
	f := FailedName{
		Name: e.key.name, QType: dns.Type(e.key.qtype).String(),
		Count: e.count, Overcount: e.over, External: e.external, Internal: e.internal, Last: e.last.UTC(),
	}
	if e.upstream.IsValid() {
		f.Upstream = e.upstream.String()
	}
	if e.key.rcode >= 0 {
		rc := rcodeName(e.key.rcode)
		f.Rcode = &rc
	}
	return f
}

func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return "RCODE" + strconv.Itoa(rc)
}

// share is n/of rounded to 4 decimals, 0 when of is 0.
func share(n, of uint64) float64 {
	if of == 0 {
		return 0
	}
	return round(float64(n) / float64(of))
}

func round(x float64) float64 { return math.Round(x*1e4) / 1e4 }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
