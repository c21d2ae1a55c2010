package e2e

import (
	"fmt"
	"strings"
)

// richUpstream is the upstream most tests forward to: a server block on
// {{UP}}, appended to the test's Corefile or run as a process of its own. A
// test that needs other answers (a silent or slow upstream, an address of
// its own) writes its own block.
//
//	*.ok.test A     192.0.2.1, TTL 60
//	*.nx.test       NXDOMAIN, with an SOA so caches keep it
//	*.fail.test     SERVFAIL
//	*.big.test TXT  ten 200-byte TXT records (about 2 KB: truncated over UDP)
//	*.short.test A  192.0.2.5, TTL 5
var richUpstream = `
.:{{UP}} {
    bind 127.0.0.1
    template IN A ok.test {
        answer "{{ .Name }} 60 IN A 192.0.2.1"
    }
    template IN ANY nx.test {
        rcode NXDOMAIN
        authority "nx.test. 60 IN SOA ns.nx.test. host.nx.test. 1 60 60 60 60"
    }
    template IN ANY fail.test {
        rcode SERVFAIL
    }
    template IN A short.test {
        answer "{{ .Name }} 5 IN A 192.0.2.5"
    }
    template IN TXT big.test {
` + bigTXT + `
    }
}
`

var bigTXT = func() string {
	var b strings.Builder
	for i := range 10 {
		fmt.Fprintf(&b, "        answer \"{{ .Name }} 60 IN TXT %d%s\"\n", i, strings.Repeat("x", 200))
	}
	return b.String()
}()
