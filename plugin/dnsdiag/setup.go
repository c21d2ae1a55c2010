package dnsdiag

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	clog "github.com/coredns/coredns/plugin/pkg/log"
	"github.com/dnsdiag/dnsdiag/plugin/hints"
	"github.com/dnsdiag/dnsdiag/plugin/report"
)

var log = clog.NewWithPlugin("dnsdiag")

func init() { plugin.Register("dnsdiag", setup) }

func setup(c *caddy.Controller) error {
	d, err := newDnsdiag(c)
	if err != nil {
		return plugin.Error("dnsdiag", err)
	}

	// The chain is built before startup functions run, so every forward of
	// this server block is reachable from d.Next by then. A reload builds a
	// new chain with new forwards and runs this again on them: a forward is
	// hooked exactly once, by the instance of its own server block.
	c.OnStartup(func() error {
		d.hookForwards()
		return nil
	})
	stop, stopped := make(chan struct{}), make(chan struct{})
	var once sync.Once
	c.OnStartup(func() error {
		go func() {
			d.run(stop)
			close(stopped)
		}()
		return nil
	})
	c.OnShutdown(func() error {
		once.Do(func() {
			close(stop)
			<-stopped // held sessions are emitted before the final flush
		})
		return nil
	})
	c.OnFinalShutdown(func() error {
		lines.flush(flushTimeout)
		return nil
	})

	dnsserver.GetConfig(c).AddPlugin(func(next plugin.Handler) plugin.Handler {
		d.Next = next
		return d
	})
	return nil
}

// newDnsdiag builds an instance from its Corefile block, ready to be put in
// a chain; hooking the forwards below it waits for the chain to exist. It
// refuses a CoreDNS whose internals dnsdiag cannot rely on.
func newDnsdiag(c *caddy.Controller) (*Dnsdiag, error) {
	d, err := parse(c)
	if err != nil {
		return nil, err
	}
	if err := checkInternals(); err != nil {
		return nil, err
	}
	if d.tap, err = newTap(&tapSink{d: d}); err != nil {
		return nil, err
	}
	if d.diag, err = newDiagnosis(hints.Config{}); err != nil {
		return nil, err
	}
	d.metrics = newInstanceMetrics()
	registerSelfMetrics()
	return d, nil
}

// hookForwards hands d's tap to every forward below d.
func (d *Dnsdiag) hookForwards() {
	for _, f := range forwardsBelow(d.Next) {
		f.SetTapPlugin(d.tap)
		d.hasForwards.Store(true)
	}
}

// parse reads the dnsdiag directive and its block. Every error names the
// Corefile and line (caddy's Err, Errf and ArgErr do).
func parse(c *caddy.Controller) (*Dnsdiag, error) {
	d := &Dnsdiag{limits: defaultLimits()}
	d.policy.setDefaults()
	rep := reportOptions{every: defaultReportInterval, thresholds: report.DefaultConfig()}
	for i := 0; c.Next(); i++ {
		if i > 0 {
			return nil, c.Err(plugin.ErrOnce.Error())
		}
		if len(c.RemainingArgs()) > 0 {
			return nil, c.ArgErr()
		}
		set := map[string]int{} // option -> its line
		for c.NextBlock() {
			opt := c.Val()
			key, err := opt, error(nil)
			switch opt {
			case "report", "threshold":
				key, err = parseReportOption(c, &rep, opt)
			default:
				err = parseOption(c, &d.policy, opt)
			}
			if err != nil {
				return nil, err
			}
			if set[key] > 0 {
				return nil, c.Errf("duplicate option %q", key)
			}
			set[key] = c.Line()
		}
		if err := validate(c, &d.policy, set); err != nil {
			return nil, err
		}
	}
	if rep.every > 0 {
		d.report = newReporting(rep.thresholds, rep.every)
	}
	return d, nil
}

// parseOption parses one option line of the dnsdiag block into p.
func parseOption(c *caddy.Controller, p *policy, opt string) error {
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
		p.setRate(int64(n))
	case "hints":
		codes, err := parseHintCodes(args)
		if err != nil {
			return c.Errf("hints: %v", err)
		}
		p.hintCodes = codes
	case "messages":
		if len(args) != 1 || (args[0] != "full" && args[0] != "header") {
			return c.Errf("messages: want full or header, got %q", strings.Join(args, " "))
		}
		p.headerOnly = args[0] == "header"
	case "max_line":
		n, err := parseMaxLine(args)
		if err != nil {
			return c.Errf("max_line: %v", err)
		}
		p.maxLine = n
	default:
		return c.Errf("unknown option %q", opt)
	}
	return nil
}

// validate refuses option combinations in p that contradict each other,
// naming the line of the option that cannot stand; set holds the line of
// each option given.
func validate(c *caddy.Controller, p *policy, set map[string]int) error {
	errAt := func(opt, msg string) error {
		return fmt.Errorf("%s:%d - Error during parsing: %s", c.File(), set[opt], msg)
	}
	if set["log"] > 0 && set["status"] > 0 {
		return errAt("status", "use either 'log' or 'status', not both: 'status' is the finer form of 'log'")
	}
	if set["log"] > 0 && p.selectsNoStatus() {
		for _, opt := range []string{"bitmap", "slow", "sample", "rate", "messages", "hints", "max_line"} {
			if set[opt] > 0 {
				return errAt(opt, fmt.Sprintf("'log none' logs nothing, so %q has no effect: remove it", opt))
			}
		}
		p.hintCodes = 0
	}
	return nil
}

// reportOptions are the report's options, parsed before the report exists.
type reportOptions struct {
	every      time.Duration // 0: report off
	thresholds report.Config
}

// parseReportOption parses `report DURATION|off` and `threshold NAME VALUE`
// into o. key is what a repetition is recognised by: each threshold may be
// given once.
func parseReportOption(c *caddy.Controller, o *reportOptions, opt string) (key string, err error) {
	args := c.RemainingArgs()
	switch {
	case opt == "report" && len(args) == 1 && args[0] == "off":
		o.every = 0
		return opt, nil
	case opt == "report":
		d, err := time.ParseDuration(strings.Join(args, " "))
		if len(args) != 1 || err != nil || d < time.Second {
			return "", c.Errf("report: want a window of at least 1s such as 1m, or off, got %q", strings.Join(args, " "))
		}
		o.every = d
		return opt, nil
	}
	if len(args) != 2 {
		return "", c.Errf("threshold: want NAME VALUE, NAME one of %s", strings.Join(thresholdNames(), ", "))
	}
	t := thresholdByName(args[0])
	if t == nil {
		return "", c.Errf("threshold: unknown %q, want one of %s", args[0], strings.Join(thresholdNames(), ", "))
	}
	if err := t.set(&o.thresholds, args[1]); err != nil {
		return "", c.Errf("threshold %s: %v", args[0], err)
	}
	if err := o.thresholds.Validate(); err != nil {
		return "", c.Errf("threshold %s: %v", args[0], err)
	}
	return opt + " " + args[0], nil
}

// parseHintCodes reads the arguments of `hints`: all, none, or codes.
func parseHintCodes(args []string) (uint8, error) {
	if len(args) == 1 && (args[0] == "all" || args[0] == "none") {
		if args[0] == "all" {
			return allHintCodes, nil
		}
		return 0, nil
	}
	var codes uint8
	for _, a := range args {
		c := codeIndex(hints.Code(a))
		if c < 0 {
			return 0, fmt.Errorf("want all, none or hint codes (%s), got %q", strings.Join(hintCodeNames(), ", "), a)
		}
		codes |= 1 << c
	}
	return codes, nil
}

func hintCodeNames() []string {
	names := make([]string, len(hints.Codes))
	for i, c := range hints.Codes {
		names[i] = string(c)
	}
	return names
}

func parseStatus(s string) (status, bool) {
	for st, name := range statusNames {
		if strings.EqualFold(s, name) {
			return status(st), true
		}
	}
	return 0, false
}
