package e2e

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

func TestBuildListsDnsdiag(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(binary, "-plugins").CombinedOutput()
	if err != nil {
		t.Fatalf("coredns -plugins: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`(?m)^\s*(dns\.)?dnsdiag\s*$`).Match(out) {
		t.Errorf("coredns -plugins does not list dnsdiag:\n%s", out)
	}
	// The standard plugins the e2e Corefiles rely on are compiled in too.
	for _, p := range []string{"forward", "cache", "template", "hosts", "erratic", "acl", "reload", "dnstap"} {
		if !regexp.MustCompile(`(?m)^\s*(dns\.)?` + p + `\s*$`).Match(out) {
			t.Errorf("coredns -plugins does not list %s", p)
		}
	}
}

func TestBuildVersion(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(binary, "-version").CombinedOutput()
	if err != nil {
		t.Fatalf("coredns -version: %v\n%s", err, out)
	}
	if first, _, _ := strings.Cut(string(out), "\n"); strings.TrimSpace(first) != "CoreDNS-1.15.0" {
		t.Errorf("coredns -version: first line %q, want CoreDNS-1.15.0\n%s", first, out)
	}
}
