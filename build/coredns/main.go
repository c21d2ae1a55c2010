// Command coredns is CoreDNS v1.15.0 with every standard plugin plus dnsdiag,
// in the order given by the repository's plugin.cfg.
package main

import (
	"fmt"
	"os"

	"github.com/coredns/coredns/core/dnsserver"
	_ "github.com/coredns/coredns/core/plugin" // every standard CoreDNS plugin
	"github.com/coredns/coredns/coremain"

	dnsdiag "github.com/dnsdiag/dnsdiag"
	_ "github.com/dnsdiag/dnsdiag/plugin/dnsdiag"
)

func main() {
	order, err := directives(dnsdiag.PluginCfg)
	if err == nil {
		err = dnsserver.SetDirectives(order)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "plugin.cfg: %v\n", err)
		os.Exit(1)
	}
	coremain.Run()
}
