package dnsdiag

import (
	"github.com/coredns/caddy"
)

// policy decides which finished sessions are logged. Metrics count every
// session whatever it says.
type policy struct {
	mode       logMode
	headerOnly bool // Messages carry only each message's header and question
}

type logMode uint8

const (
	logFailed logMode = iota // every session whose Status is not Succeeded
	logAll
	logNone
)

func defaultPolicy() policy { return policy{mode: logFailed} }

// parseOption parses one option line of the dnsdiag block.
func (p *policy) parseOption(c *caddy.Controller, opt string) error {
	switch opt {
	case "log":
		args := c.RemainingArgs()
		if len(args) != 1 {
			return c.ArgErr()
		}
		switch args[0] {
		case "failed":
			p.mode = logFailed
		case "all":
			p.mode = logAll
		case "none":
			p.mode = logNone
		default:
			return c.Errf("log: want all, failed or none, got %q", args[0])
		}
	default:
		return c.Errf("unknown option %q", opt)
	}
	return nil
}

// wants reports whether the session is logged.
func (p *policy) wants(s *session, st status) bool {
	switch p.mode {
	case logAll:
		return true
	case logFailed:
		return st != statusSucceeded
	}
	return false
}

// fullMessages reports whether lines carry whole DNS messages.
func (p *policy) fullMessages() bool { return !p.headerOnly }
