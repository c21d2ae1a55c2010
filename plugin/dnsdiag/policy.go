package dnsdiag

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coredns/caddy"
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

	// The line of each option given, to refuse contradictions.
	set map[string]int
}

const (
	anyBitmap        = 0xffff
	defaultRate      = 20 // lines per second
	defaultRateBurst = 2  // seconds of rate
)

// setDefaults makes p the policy of a bare `dnsdiag`: every session that is
// not Succeeded, at most defaultRate lines per second, whole messages.
func (p *policy) setDefaults() {
	p.bitmaps, p.set = anyBitmap, map[string]int{}
	p.statuses[statusFailed] = true
	p.statuses[statusSampleLoss] = true
	p.limiter.setRate(defaultRate)
}

// parseOption parses one option line of the dnsdiag block.
func (p *policy) parseOption(c *caddy.Controller, opt string) error {
	args := c.RemainingArgs()
	if len(args) == 0 {
		return c.ArgErr()
	}
	switch opt {
	case "log":
		if len(args) != 1 {
			return c.ArgErr()
		}
		p.statuses = [statusCount]bool{}
		switch args[0] {
		case "all":
			p.statuses = [statusCount]bool{true, true, true}
		case "failed":
			p.statuses[statusFailed], p.statuses[statusSampleLoss] = true, true
		case "none":
		default:
			return c.Errf("log: want all, failed or none, got %q", args[0])
		}
	case "status":
		p.statuses = [statusCount]bool{}
		for _, a := range args {
			st, ok := parseStatus(a)
			if !ok {
				return c.Errf("status: want Succeeded, Failed or SampleLoss, got %q", a)
			}
			p.statuses[st] = true
		}
	case "bitmap":
		p.bitmaps = 0
		for _, a := range args {
			n, err := strconv.Atoi(a)
			if err != nil || n < 0 || n > 15 {
				return c.Errf("bitmap: want a BitMap from 0 to 15, got %q", a)
			}
			p.bitmaps |= 1 << n
		}
	case "slow":
		d, err := time.ParseDuration(args[0])
		if len(args) != 1 || err != nil || d <= 0 {
			return c.Errf("slow: want one positive duration such as 500ms, got %q", strings.Join(args, " "))
		}
		p.slow = d
	case "sample":
		n, err := strconv.ParseUint(args[0], 10, 32)
		if len(args) != 1 || err != nil || n == 0 {
			return c.Errf("sample: want N >= 1 to log 1 in N Succeeded sessions, got %q", strings.Join(args, " "))
		}
		p.sample = n
	case "rate":
		n, err := strconv.ParseUint(args[0], 10, 32)
		if len(args) != 1 || err != nil {
			return c.Errf("rate: want lines per second (0 for no limit), got %q", strings.Join(args, " "))
		}
		p.limiter.setRate(int64(n))
	case "messages":
		if len(args) != 1 || (args[0] != "full" && args[0] != "header") {
			return c.Errf("messages: want full or header, got %q", strings.Join(args, " "))
		}
		p.headerOnly = args[0] == "header"
	default:
		return c.Errf("unknown option %q", opt)
	}
	p.set[opt] = c.Line()
	return nil
}

// validate refuses option combinations that contradict each other, naming
// the line of the option that cannot stand.
func (p *policy) validate(c *caddy.Controller) error {
	errAt := func(opt, msg string) error {
		return fmt.Errorf("%s:%d - Error during parsing: %s", c.File(), p.set[opt], msg)
	}
	if p.set["log"] > 0 && p.set["status"] > 0 {
		return errAt("status", "use either 'log' or 'status', not both: 'status' is the finer form of 'log'")
	}
	if p.set["log"] > 0 && p.selectsNoStatus() {
		for _, opt := range []string{"bitmap", "slow", "sample", "rate", "messages"} {
			if p.set[opt] > 0 {
				return errAt(opt, fmt.Sprintf("'log none' logs nothing, so %q has no effect: remove it", opt))
			}
		}
	}
	return nil
}

func (p *policy) selectsNoStatus() bool { return p.statuses == [statusCount]bool{} }

func parseStatus(s string) (status, bool) {
	for st, name := range statusNames {
		if strings.EqualFold(s, name) {
			return status(st), true
		}
	}
	return 0, false
}

// suppression is the reason label of log_suppressed_total.
type suppression uint8

const (
	suppressedPolicy    suppression = iota // not selected by log/status/bitmap/slow/sample
	suppressedRateLimit                    // selected, but over the line rate
	suppressionCount
)

var suppressionNames = [suppressionCount]string{"policy", "rate_limit"}

// selects reports whether the policy selects the session, before the rate
// limit.
func (p *policy) selects(s *session, st status) bool {
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
