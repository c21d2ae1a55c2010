package dnsdiag

import (
	"sync/atomic"
	"time"

	"github.com/dnsdiag/dnsdiag/plugin/hints"
)

// policy decides which finished sessions are logged. Metrics count every
// session whatever it says.
//
// A session is selected when its Status and BitMap are both selected, or
// it is slower than slow, or it is the sample-th Succeeded session, or it
// carries a hint whose code is selected. Selected sessions then pass the
// rate limit; those selected only for their hints pass a bucket of their
// own, so that they never crowd Failed lines out.
type policy struct {
	statuses    [statusCount]bool
	bitmaps     uint16 // bit n set: BitMap n is selected
	slow        time.Duration
	sample      uint64
	hintCodes   uint8 // bit i set: sessions with a hint of code hints.Codes[i] are selected
	headerOnly  bool  // Messages carry only each message's header and question
	maxLine     int   // the most bytes of a line: 0 for defaultMaxLine, -1 for no bound
	limiter     limiter
	hintLimiter limiter

	successes atomic.Uint64 // Succeeded sessions seen, for sampling
}

const (
	anyBitmap        = 0xffff
	defaultRate      = 20 // lines per second
	defaultRateBurst = 2  // seconds of rate
)

// defaultHintCodes are the hints logged by default: all but
// search_expansion, which nearly every external lookup of a pod with
// ndots:5 carries; it is counted, and summed up by the report.
var defaultHintCodes = allHintCodes &^ hintBit(hints.SearchExpansion)

const allHintCodes = 1<<len(hints.Codes) - 1

func hintBit(code hints.Code) uint8 { return 1 << codeIndex(code) }

// setDefaults makes p the policy of a bare `dnsdiag`: every session that is
// not Succeeded or carries a hint other than search_expansion, at most
// defaultRate lines per second (and as many for hinted Succeeded ones),
// whole messages.
func (p *policy) setDefaults() {
	p.bitmaps = anyBitmap
	p.statuses[statusFailed] = true
	p.statuses[statusSampleLoss] = true
	p.hintCodes = defaultHintCodes
	p.setRate(defaultRate)
}

// setRate sets both buckets to n lines per second.
func (p *policy) setRate(n int64) {
	p.limiter.setRate(n)
	p.hintLimiter.setRate(n)
	p.hintLimiter.hinted = true
}

func (p *policy) selectsNoStatus() bool { return p.statuses == [statusCount]bool{} }

// suppression is the reason label of log_suppressed_total.
type suppression uint8

const (
	suppressedPolicy    suppression = iota // not selected by log/status/bitmap/slow/sample
	suppressedRateLimit                    // selected, but over the line rate
	suppressionCount
)

var suppressionNames = [suppressionCount]string{"policy", "rate_limit"}

// selects reports whether the policy selects the classified session,
// before the rate limit, and the bucket of the rate limit it must pass.
func (p *policy) selects(s *session) (bool, *limiter) {
	st := s.verdict.status
	if p.statuses[st] && p.bitmaps&(1<<(s.bits&15)) != 0 {
		return true, &p.limiter
	}
	if p.slow > 0 && s.end.Sub(s.start) > p.slow {
		return true, &p.limiter
	}
	for i := range s.verdict.hints {
		if c := codeIndex(s.verdict.hints[i].Code); c >= 0 && p.hintCodes&(1<<c) != 0 {
			return true, &p.hintLimiter
		}
	}
	return p.sample > 0 && st == statusSucceeded && p.successes.Add(1)%p.sample == 0, &p.limiter
}

// fullMessages reports whether lines carry whole DNS messages.
func (p *policy) fullMessages() bool { return !p.headerOnly }
