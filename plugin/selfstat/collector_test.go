package selfstat

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// errorSeries is the selfstat_errors_total exposition with every file at
// zero but those in nonzero.
func errorSeries(nonzero map[string]int) string {
	var b strings.Builder
	b.WriteString("# HELP coredns_dnsdiag_selfstat_errors_total Reads of a /proc or cgroup file that exists but could not be read or parsed, by file.\n")
	b.WriteString("# TYPE coredns_dnsdiag_selfstat_errors_total counter\n")
	for _, f := range files {
		fmt.Fprintf(&b, "coredns_dnsdiag_selfstat_errors_total{file=%q} %d\n", f, nonzero[f])
	}
	return b.String()
}

func gomaxprocsSeries() string {
	return fmt.Sprintf(`# HELP coredns_dnsdiag_gomaxprocs The Go runtime's GOMAXPROCS, to set beside the CPU quota.
# TYPE coredns_dnsdiag_gomaxprocs gauge
coredns_dnsdiag_gomaxprocs %d
`, runtime.GOMAXPROCS(0))
}

func TestCollector(t *testing.T) {
	c := NewCollector(NewReader(fixture(t, "v1", fixtureFDs)))
	want := `# HELP coredns_dnsdiag_cpu_periods_total CPU quota enforcement periods elapsed in CoreDNS's cgroup.
# TYPE coredns_dnsdiag_cpu_periods_total counter
coredns_dnsdiag_cpu_periods_total 345
# HELP coredns_dnsdiag_cpu_quota_cores CPU limit of CoreDNS's cgroup in cores (quota/period); no series when unlimited.
# TYPE coredns_dnsdiag_cpu_quota_cores gauge
coredns_dnsdiag_cpu_quota_cores 0.5
# HELP coredns_dnsdiag_cpu_throttled_periods_total CPU quota enforcement periods in which CoreDNS's cgroup was throttled.
# TYPE coredns_dnsdiag_cpu_throttled_periods_total counter
coredns_dnsdiag_cpu_throttled_periods_total 21
# HELP coredns_dnsdiag_cpu_throttled_seconds_total Time CoreDNS's cgroup spent throttled by its CPU quota.
# TYPE coredns_dnsdiag_cpu_throttled_seconds_total counter
coredns_dnsdiag_cpu_throttled_seconds_total 1.23456789
# HELP coredns_dnsdiag_socket_drops_total Datagrams the kernel dropped on CoreDNS's own UDP sockets (receive buffer full), from /proc/net/udp{,6}.
# TYPE coredns_dnsdiag_socket_drops_total counter
coredns_dnsdiag_socket_drops_total 25
# HELP coredns_dnsdiag_udp_errors_total UDP errors of CoreDNS's network namespace, all processes in it, from /proc/net/snmp{,6}.
# TYPE coredns_dnsdiag_udp_errors_total counter
coredns_dnsdiag_udp_errors_total{counter="InErrors",family="udp"} 2004
coredns_dnsdiag_udp_errors_total{counter="InErrors",family="udp6"} 8
coredns_dnsdiag_udp_errors_total{counter="RcvbufErrors",family="udp"} 1991
coredns_dnsdiag_udp_errors_total{counter="RcvbufErrors",family="udp6"} 6
` + gomaxprocsSeries() + errorSeries(nil)
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	// The collector must pass the registry's consistency checks.
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) != 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

// TestCollectorAbsent: absent figures have no series, and a file that does
// not parse shows in selfstat_errors_total at every scrape.
func TestCollectorAbsent(t *testing.T) {
	root := fixture(t, "v2", nil) // no fd directory: no socket figures
	write(t, root, "proc/100/net/snmp", []byte("Udp: InErrors\nUdp: x\n"))
	write(t, root, "proc/100/net/snmp6", nil)
	write(t, root, "sys/fs/cgroup/cpu.max", []byte("max 100000\n"))
	write(t, root, "sys/fs/cgroup/cpu.stat", []byte("usage_usec 1\n"))
	c := NewCollector(NewReader(root))
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	for scrape := 1; scrape <= 2; scrape++ {
		want := gomaxprocsSeries() + errorSeries(map[string]int{FileSnmp: scrape})
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
			t.Errorf("scrape %d: %v", scrape, err)
		}
	}
}

// TestCollectorOtherProcess: GOMAXPROCS is the reading process's, so a
// Reader of another process has none.
func TestCollectorOtherProcess(t *testing.T) {
	c := NewCollector(NewReaderFor(fixture(t, "", nil), 100))
	if err := testutil.CollectAndCompare(c, strings.NewReader(errorSeries(nil))); err != nil {
		t.Error(err)
	}
}
