// Command coredns is CoreDNS v1.15.0 with every standard plugin plus dnsdiag,
// in the order given by the repository's plugin.cfg. The imports and that
// order are in zplugin.go, which gen writes from plugin.cfg.
package main

//go:generate go run ./gen -cfg ../../plugin.cfg -o zplugin.go

import (
	"fmt"
	"os"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
)

func main() {
	if err := dnsserver.SetDirectives(directives); err != nil {
		fmt.Fprintf(os.Stderr, "plugin.cfg: %v\n", err)
		os.Exit(1)
	}
	coremain.Run()
}
