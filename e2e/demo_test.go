package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestDemo runs corefile-examples/demo.Corefile (what `make run` serves, its
// ports rewritten) and asks each name of the README's demo table in the
// table's order: what the client gets and the session line must be what the
// README's row says, and the README must still say it.
func TestDemo(t *testing.T) {
	t.Parallel()
	readme := readFile(t, filepath.Join("..", "README.md"))
	e := startK8sExample(t, "demo.Corefile")
	addr := e.Addr("P1053")

	const noAnswer = -1
	rows := []struct {
		readme          string // how the README's row names the query
		name            string
		rcode           int // what the client gets
		bitmap          int
		status          string
		serverGenerated bool
	}{
		{"`dig @127.0.0.1 -p 1053 hosts.demo`", "hosts.demo", dns.RcodeSuccess, 3, "Succeeded", false},
		{"`dig @127.0.0.1 -p 1053 www.demo`", "www.demo", dns.RcodeSuccess, 15, "Succeeded", false},
		{"again `www.demo`", "www.demo", dns.RcodeSuccess, 3, "Succeeded", false},
		{"`dig @127.0.0.1 -p 1053 nx.demo`", "nx.demo", dns.RcodeNameError, 15, "Succeeded", false},
		{"`dig @127.0.0.1 -p 1053 fail.demo`", "fail.demo", dns.RcodeServerFailure, 15, "Failed", false},
		{"`dig @127.0.0.1 -p 1053 silent.demo`", "silent.demo", dns.RcodeServerFailure, 5, "Failed", true},
		{"`dig @127.0.0.1 -p 1053 drop.demo`", "drop.demo", noAnswer, 1, "Failed", false},
	}
	for _, row := range rows {
		want := fmt.Sprintf("BitMap %d, %s", row.bitmap, row.status)
		if !readmeRowSays(readme, row.readme, want) {
			t.Errorf("README has no demo row %s saying %q", row.readme, want)
		}

		timeout := 8 * time.Second // silent.demo: forward gives up after ~4 s
		if row.rcode == noAnswer {
			timeout = 2 * time.Second
		}
		r := Query(t, "udp", addr, row.name, dns.TypeA, timeout)
		switch {
		case row.rcode == noAnswer && r.Msg != nil:
			t.Errorf("%s: got an answer, want none: %v", row.readme, r.Msg)
		case row.rcode != noAnswer:
			r.MustAnswer(t, row.rcode)
		}
		l := e.WaitClient(r)
		t.Logf("%s: %s", row.readme, l.Summary())
		if l.BitMap != row.bitmap || l.Status != row.status || l.ServerGenerated != row.serverGenerated {
			t.Errorf("%s: session BitMap %d %s ServerGenerated=%v, want BitMap %d %s ServerGenerated=%v",
				row.readme, l.BitMap, l.Status, l.ServerGenerated, row.bitmap, row.status, row.serverGenerated)
		}
	}
}

// readmeRowSays reports whether a table row of the README names the query
// as query and says want.
func readmeRowSays(readme, query, want string) bool {
	for _, line := range strings.Split(readme, "\n") {
		if strings.HasPrefix(line, "| "+query+" ") && strings.Contains(line, want) {
			return true
		}
	}
	return false
}
