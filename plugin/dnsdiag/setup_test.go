package dnsdiag

import (
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin"
)

func TestParseOptions(t *testing.T) {
	for _, tc := range []struct {
		corefile string
		check    func(p *policy) bool
	}{
		{"dnsdiag", func(p *policy) bool {
			return !p.statuses[statusSucceeded] && p.statuses[statusFailed] && p.statuses[statusSampleLoss] &&
				p.limiter.rate == defaultRate && p.fullMessages() && p.bitmaps == anyBitmap
		}},
		{"dnsdiag {\n log all\n}", func(p *policy) bool { return p.statuses == [statusCount]bool{true, true, true} }},
		{"dnsdiag {\n log none\n}", func(p *policy) bool { return p.selectsNoStatus() && p.slow == 0 && p.sample == 0 }},
		{"dnsdiag {\n log failed\n}", func(p *policy) bool { return !p.statuses[statusSucceeded] && p.statuses[statusFailed] }},
		{"dnsdiag {\n status Failed\n bitmap 5 1\n}", func(p *policy) bool {
			return p.statuses == [statusCount]bool{false, true, false} && p.bitmaps == 1<<5|1<<1
		}},
		{"dnsdiag {\n slow 250ms\n sample 100\n rate 0\n messages header\n}", func(p *policy) bool {
			return p.slow == 250*time.Millisecond && p.sample == 100 && p.limiter.rate == 0 && !p.fullMessages()
		}},
	} {
		d, err := parse(caddy.NewTestController("dns", tc.corefile))
		if err != nil {
			t.Errorf("%q: %v", tc.corefile, err)
			continue
		}
		if !tc.check(&d.policy) {
			t.Errorf("%q: unexpected policy %+v", tc.corefile, &d.policy)
		}
	}
}

func TestParseErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct{ corefile, want string }{
		{"dnsdiag extra", "Testfile:1"},
		{"dnsdiag {\n bogus 1\n}", `Testfile:2 - Error during parsing: unknown option "bogus"`},
		{"dnsdiag {\n log\n}", "Testfile:2 - Error during parsing: Wrong argument count"},
		{"dnsdiag {\n log sometimes\n}", `Testfile:2 - Error during parsing: log: want all, failed or none, got "sometimes"`},
		{"dnsdiag {\n log all\n log failed\n}", `Testfile:3 - Error during parsing: duplicate option "log"`},
		{"dnsdiag {\n status Broken\n}", "Testfile:2"},
		{"dnsdiag {\n bitmap 16\n}", "bitmap: want a BitMap from 0 to 15"},
		{"dnsdiag {\n slow fast\n}", "slow: want one positive duration"},
		{"dnsdiag {\n slow -1s\n}", "slow: want one positive duration"},
		{"dnsdiag {\n sample 0\n}", "sample: want N >= 1"},
		{"dnsdiag {\n rate many\n}", "rate: want lines per second"},
		{"dnsdiag {\n messages some\n}", "messages: want full or header"},
		{"dnsdiag {\n log all\n status Failed\n}", "Testfile:3 - Error during parsing: use either 'log' or 'status'"},
		{"dnsdiag {\n log none\n slow 1s\n}", `Testfile:3 - Error during parsing: 'log none' logs nothing, so "slow" has no effect`},
		{"dnsdiag\ndnsdiag", "Testfile:2 - Error during parsing: " + plugin.ErrOnce.Error()},
	} {
		_, err := parse(caddy.NewTestController("dns", tc.corefile))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got error %v, want it to contain %q", tc.corefile, err, tc.want)
		}
	}
}

func TestSetupRegistersHandler(t *testing.T) {
	c := caddy.NewTestController("dns", "dnsdiag")
	if err := setup(c); err != nil {
		t.Fatal(err)
	}
	if err := setup(caddy.NewTestController("dns", "dnsdiag {\n nope\n}")); err == nil || !strings.HasPrefix(err.Error(), "plugin/dnsdiag:") {
		t.Errorf("setup error %v, want it prefixed plugin/dnsdiag:", err)
	}
}
