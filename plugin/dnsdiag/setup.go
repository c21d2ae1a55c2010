package dnsdiag

import (
	"sync"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	clog "github.com/coredns/coredns/plugin/pkg/log"
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
	if d.policy.limiter.rate > 0 {
		stop := make(chan struct{})
		var once sync.Once
		c.OnStartup(func() error {
			go d.policy.limiter.run(stop)
			return nil
		})
		c.OnShutdown(func() error {
			once.Do(func() { close(stop) })
			return nil
		})
	}
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
// a chain; hooking the forwards below it waits for the chain to exist.
func newDnsdiag(c *caddy.Controller) (*Dnsdiag, error) {
	d, err := parse(c)
	if err != nil {
		return nil, err
	}
	if d.tap, err = newTap(&tapSink{d: d}); err != nil {
		return nil, err
	}
	d.metrics = newInstanceMetrics()
	return d, nil
}

// hookForwards hands d's tap to every forward below d.
func (d *Dnsdiag) hookForwards() {
	for _, f := range forwardsBelow(d.Next) {
		f.SetTapPlugin(d.tap)
		d.forwards.Add(1)
	}
}

// parse reads the dnsdiag directive and its block. Every error names the
// Corefile and line (caddy's Errf and ArgErr do).
func parse(c *caddy.Controller) (*Dnsdiag, error) {
	d := &Dnsdiag{limits: defaultLimits()}
	d.policy.setDefaults()
	for i := 0; c.Next(); i++ {
		if i > 0 {
			return nil, c.Err("dnsdiag can only be used once per server block")
		}
		if len(c.RemainingArgs()) > 0 {
			return nil, c.ArgErr()
		}
		seen := map[string]bool{}
		for c.NextBlock() {
			opt := c.Val()
			if seen[opt] {
				return nil, c.Errf("duplicate option %q", opt)
			}
			seen[opt] = true
			if err := d.policy.parseOption(c, opt); err != nil {
				return nil, err
			}
		}
		if err := d.policy.validate(c); err != nil {
			return nil, err
		}
	}
	return d, nil
}
