package main

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// perf is what one dnsperf run reported.
type perf struct {
	Sent, Completed, Lost int64
	QPS                   float64
	AvgLatency            float64       // seconds
	CPU                   time.Duration // dnsperf's own CPU time
	Latencies             []float64     // seconds, -v runs only
	Timeouts              int64         // -v runs only
}

var (
	reSent      = regexp.MustCompile(`Queries sent:\s+(\d+)`)
	reCompleted = regexp.MustCompile(`Queries completed:\s+(\d+)`)
	reLost      = regexp.MustCompile(`Queries lost:\s+(\d+)`)
	reQPS       = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)
	reAvg       = regexp.MustCompile(`Average Latency \(s\):\s+([0-9.]+)`)
)

// dnsperf runs dnsperf against 127.0.0.1:port, pinned to cpus: at
// saturation when qps is 0, else at qps queries per second with -v, whose
// per-response latencies it collects.
func dnsperf(cfg *config, port int, seconds float64, qps int) (perf, error) {
	argv := []string{"dnsperf", "-s", "127.0.0.1", "-p", strconv.Itoa(port), "-d", cfg.queries,
		"-l", strconv.FormatFloat(seconds, 'f', -1, 64),
		"-c", strconv.Itoa(cfg.clients), "-q", strconv.Itoa(cfg.outstanding)}
	if qps > 0 {
		argv = append(argv, "-Q", strconv.Itoa(qps), "-v")
	}
	out, cpu, err := run(cfg.cpuLoad, argv...)
	p, perr := parseDnsperf(out, qps > 0)
	p.CPU = cpu
	if err != nil {
		return p, fmt.Errorf("%s: %v\n%s", strings.Join(argv, " "), err, tail(out, 800))
	}
	if perr != nil {
		return p, fmt.Errorf("%s: %v\n%s", strings.Join(argv, " "), perr, tail(out, 800))
	}
	return p, nil
}

func parseDnsperf(out []byte, verbose bool) (perf, error) {
	var p perf
	num := func(re *regexp.Regexp) (float64, bool) {
		m := re.FindSubmatch(out)
		if m == nil {
			return 0, false
		}
		f, err := strconv.ParseFloat(string(m[1]), 64)
		return f, err == nil
	}
	sent, ok1 := num(reSent)
	completed, ok2 := num(reCompleted)
	lost, ok3 := num(reLost)
	qps, ok4 := num(reQPS)
	p.AvgLatency, _ = num(reAvg)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return p, fmt.Errorf("no statistics in dnsperf output")
	}
	p.Sent, p.Completed, p.Lost, p.QPS = int64(sent), int64(completed), int64(lost), qps
	if !verbose {
		return p, nil
	}
	// -v: "> NOERROR n01.bench.test A 0.000123" per response, "> T …" per timeout.
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "> ") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		if f[1] == "T" {
			p.Timeouts++
			continue
		}
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			p.Latencies = append(p.Latencies, v)
		}
	}
	if len(p.Latencies) == 0 {
		return p, fmt.Errorf("no per-query latencies in dnsperf -v output")
	}
	slices.Sort(p.Latencies)
	return p, nil
}

// quantile of sorted values (nearest rank).
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
