package selfstat

import (
	"github.com/coredns/coredns/plugin"
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports a Reader's figures as coredns_dnsdiag_* metrics, read
// at each scrape rather than polled, so that they cost nothing between
// scrapes. A figure that is absent has no series.
type Collector struct {
	r *Reader
}

// NewCollector returns a Collector of r's figures. A process registers one.
func NewCollector(r *Reader) *Collector { return &Collector{r: r} }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(plugin.Namespace, "dnsdiag", name), help, labels, nil)
}

var (
	socketDropsDesc = desc("socket_drops_total",
		"Datagrams the kernel dropped on CoreDNS's own UDP sockets (receive buffer full), from /proc/net/udp{,6}.")
	udpErrorsDesc = desc("udp_errors_total",
		"UDP errors of CoreDNS's network namespace, all processes in it, from /proc/net/snmp{,6}.", "family", "counter")
	cpuPeriodsDesc = desc("cpu_periods_total",
		"CPU quota enforcement periods elapsed in CoreDNS's cgroup.")
	cpuThrottledPeriodsDesc = desc("cpu_throttled_periods_total",
		"CPU quota enforcement periods in which CoreDNS's cgroup was throttled.")
	cpuThrottledSecondsDesc = desc("cpu_throttled_seconds_total",
		"Time CoreDNS's cgroup spent throttled by its CPU quota.")
	cpuQuotaDesc = desc("cpu_quota_cores",
		"CPU limit of CoreDNS's cgroup in cores (quota/period); no series when unlimited.")
	gomaxprocsDesc = desc("gomaxprocs",
		"The Go runtime's GOMAXPROCS, to set beside the CPU quota.")
	errorsDesc = desc("selfstat_errors_total",
		"Reads of a /proc or cgroup file that exists but could not be read or parsed, by file.", "file")
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{socketDropsDesc, udpErrorsDesc, cpuPeriodsDesc, cpuThrottledPeriodsDesc,
		cpuThrottledSecondsDesc, cpuQuotaDesc, gomaxprocsDesc, errorsDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.r.Read()
	counter := func(d *prometheus.Desc, v Count, labels ...string) {
		if v.OK {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v.N), labels...)
		}
	}
	counter(socketDropsDesc, s.SocketDrops)
	for _, u := range []struct {
		family string
		e      UDPErrors
	}{{"udp", s.UDP}, {"udp6", s.UDP6}} {
		counter(udpErrorsDesc, u.e.InErrors, u.family, "InErrors")
		counter(udpErrorsDesc, u.e.RcvbufErrors, u.family, "RcvbufErrors")
	}
	counter(cpuPeriodsDesc, s.CPU.Periods)
	counter(cpuThrottledPeriodsDesc, s.CPU.ThrottledPeriods)
	if t := s.CPU.ThrottledNanos; t.OK {
		ch <- prometheus.MustNewConstMetric(cpuThrottledSecondsDesc, prometheus.CounterValue, float64(t.N)/1e9)
	}
	if q := s.CPU.QuotaCores; q.OK {
		ch <- prometheus.MustNewConstMetric(cpuQuotaDesc, prometheus.GaugeValue, q.V)
	}
	if s.GOMAXPROCS > 0 {
		ch <- prometheus.MustNewConstMetric(gomaxprocsDesc, prometheus.GaugeValue, float64(s.GOMAXPROCS))
	}
	// Every file has a series from the start, so that the first error is an
	// increase, not a new series.
	for _, f := range files {
		ch <- prometheus.MustNewConstMetric(errorsDesc, prometheus.CounterValue, float64(c.r.errs[f].Load()), f)
	}
}
