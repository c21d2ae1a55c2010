package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/coredns/coredns/core/dnsserver"

	dnsdiag "github.com/dnsdiag/dnsdiag"
)

// upstream is CoreDNS's own order, captured before anything changes it.
var upstream = slices.Clone(dnsserver.Directives)

func TestPluginCfgMatchesUpstreamOrder(t *testing.T) {
	order, err := directives(dnsdiag.PluginCfg)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.Index(order, "dnsdiag")
	if i < 0 || i+1 >= len(order) || order[i+1] != "dnstap" {
		t.Fatalf("dnsdiag must sit immediately before dnstap, order is %v", order)
	}
	without := slices.Delete(slices.Clone(order), i, i+1)
	if !slices.Equal(without, upstream) {
		t.Fatalf("plugin.cfg minus dnsdiag drifted from CoreDNS's order:\n got %v\nwant %v", without, upstream)
	}
}

func TestDirectivesRefusesMissingPlugin(t *testing.T) {
	_, err := directives("log:log\nnosuchplugin:example.com/nosuch\n")
	if err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "nosuchplugin") {
		t.Fatalf("want an error naming line 2 and the plugin, got %v", err)
	}
}

func TestDirectivesRefusesDuplicatesAndGarbage(t *testing.T) {
	for cfg, want := range map[string]string{
		"log:log\nlog:log\n": "already listed on line 1",
		"# c\n\nlog\n":       "line 3",
	} {
		if _, err := directives(cfg); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("directives(%q) = %v, want error containing %q", cfg, err, want)
		}
	}
}
