package dnsdiag

import (
	"sync/atomic"
	"time"
)

// policy decides which finished sessions are logged. Metrics count every
// session whatever it says.
//
// A session is selected when its Status and BitMap are both selected, or
// it is slower than slow, or it is the sample-th Succeeded session. Selected
// sessions then pass the rate limit.
type policy struct {
	statuses   [statusCount]bool
	bitmaps    uint16 // bit n set: BitMap n is selected
	slow       time.Duration
	sample     uint64
	headerOnly bool // Messages carry only each message's header and question
	limiter    limiter

	successes atomic.Uint64 // Succeeded sessions seen, for sampling
}

const (
	anyBitmap        = 0xffff
	defaultRate      = 20 // lines per second
	defaultRateBurst = 2  // seconds of rate
)

// setDefaults makes p the policy of a bare `dnsdiag`: every session that is
// not Succeeded, at most defaultRate lines per second, whole messages.
func (p *policy) setDefaults() {
	p.bitmaps = anyBitmap
	p.statuses[statusFailed] = true
	p.statuses[statusSampleLoss] = true
	p.limiter.setRate(defaultRate)
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
// before the rate limit.
func (p *policy) selects(s *session) bool {
	st := s.verdict.status
	if p.statuses[st] && p.bitmaps&(1<<(s.bits&15)) != 0 {
		return true
	}
	if p.slow > 0 && s.end.Sub(s.start) > p.slow {
		return true
	}
	return p.sample > 0 && st == statusSucceeded && p.successes.Add(1)%p.sample == 0
}

// fullMessages reports whether lines carry whole DNS messages.
func (p *policy) fullMessages() bool { return !p.headerOnly }
