// Command mkrule writes dnsdiag-alerts.prometheusrule.yaml, the PrometheusRule
// manifest of dnsdiag-alerts.rules.yml (`make monitoring-rule`); a test in
// build/monitoring fails when the committed manifest differs from it.
package main

import (
	"fmt"
	"os"

	"github.com/dnsdiag/dnsdiag/build/monitoring"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: mkrule OUTPUT")
		os.Exit(2)
	}
	if err := os.WriteFile(os.Args[1], monitoring.PrometheusRule(monitoring.File(monitoring.RulesFile)), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "mkrule:", err)
		os.Exit(1)
	}
}
