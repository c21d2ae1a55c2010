package main

import (
	"slices"
	"testing"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
)

// upstream is CoreDNS's own order, captured before anything changes it.
var upstream = slices.Clone(dnsserver.Directives)

// directives comes from plugin.cfg through zplugin.go (gen's test keeps
// the two in step), so these check plugin.cfg itself.
func TestPluginCfgMatchesUpstreamOrder(t *testing.T) {
	i := slices.Index(directives, "dnsdiag")
	if i < 0 || i+1 >= len(directives) || directives[i+1] != "dnstap" {
		t.Fatalf("dnsdiag must sit immediately before dnstap, order is %v", directives)
	}
	without := slices.Delete(slices.Clone(directives), i, i+1)
	if !slices.Equal(without, upstream) {
		t.Fatalf("plugin.cfg minus dnsdiag drifted from CoreDNS's order:\n got %v\nwant %v", without, upstream)
	}
}

// A directive whose package registers another name (plugin.cfg's name
// column disagreeing with the plugin) would be ignored by caddy silently.
func TestDirectivesAreCompiledIn(t *testing.T) {
	for _, name := range directives {
		if _, err := caddy.DirectiveAction("dns", name); err != nil {
			t.Errorf("plugin.cfg lists %q, which no compiled-in plugin registers", name)
		}
	}
}
