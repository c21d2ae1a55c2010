package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The analyser's throughput: how many sessions per second dnsdiag-analyser
// (build/analyser) assembles, classifies and counts on one core, and its
// memory at that rate. CoreDNS runs as a stock one would for it, without
// dnsdiag and with `dnstap tcp://… full` (the dnstap Corefiles, their
// stream going to the analyser instead of the sink); the analyser is pinned
// alone to CoreDNS-under-test's core with GOMAXPROCS 1, and CoreDNS, dnsperf
// and the upstream share the other. The load is dnsperf at saturation of
// that CoreDNS, so the analyser is driven as hard as a CoreDNS on one core
// can stream. That leaves its core partly idle, so its maximum is measured
// apart, with a replayed stream at rising rates (analyser_replay.go).

// analyserVariant is one analyser measurement: the traffic of a dnstap
// Corefile, or the replayed stream when Corefile is empty, and the
// analyser's log policy.
type analyserVariant struct {
	Name     string
	Corefile string
	Args     []string
	Title    string
}

var analyserVariants = []analyserVariant{
	{"cache", "cache-dnstap.Corefile", nil, "cache hit (2 frames a session), default policy"},
	{"forward", "forward-dnstap.Corefile", nil, "forwarded (4 frames a session), default policy"},
	{"cache/logall", "cache-dnstap.Corefile", []string{"-log", "all", "-rate", "0"}, "cache hit, `-log all -rate 0` → file"},
	{"replay", "", nil, "replayed cache hits, default policy"},
	{"replay/logall", "", []string{"-log", "all", "-rate", "0"}, "replayed cache hits, `-log all -rate 0` → file"},
}

// analyserResult is one analyser measurement.
type analyserResult struct {
	Variant string

	QPS                   float64 // dnsperf's, through CoreDNS
	Sent, Completed, Lost int64

	analyserCounters // over the saturation run
	SessionsPerSec   float64

	Cores         float64 // the analyser's CPU over the run, in cores
	CPUPerSession float64 // µs
	OneCore       float64 // sessions per second on a fully busy core: SessionsPerSec / Cores

	HWMKB, RSSKB int64 // VmHWM after the run, VmRSS at its end
	LogLines     int64
	Foreign      float64 // cores used by other processes during the run

	// The replayed stream: every rate offered, the last one not handled
	// cleanly; the figures above are those of the fastest clean one.
	Steps []analyserStep `json:",omitempty"`

	Error string
}

// analyserCounters are what the analyser's metrics counted over a run.
type analyserCounters struct {
	Sessions   float64 // coredns_dnsdiag_sessions_total
	SampleLoss float64 // of which Status SampleLoss
	Frames     float64 // coredns_dnsdiag_analyser_frames_total
	Shed       float64 // coredns_dnsdiag_analyser_frames_shed_total
	Dropped    float64 // coredns_dnsdiag_analyser_sessions_dropped_total
	Unpaired   float64 // coredns_dnsdiag_analyser_unpaired_total
}

// countersBetween is what the analyser counted between two scrapes.
func countersBetween(m0, m1 []byte) analyserCounters {
	d := func(name string, labels map[string]string) float64 {
		return promSum(m1, name, labels) - promSum(m0, name, labels)
	}
	return analyserCounters{
		Sessions:   d("coredns_dnsdiag_sessions_total", nil),
		SampleLoss: d("coredns_dnsdiag_sessions_total", map[string]string{"status": "SampleLoss"}),
		Frames:     d("coredns_dnsdiag_analyser_frames_total", nil),
		Shed:       d("coredns_dnsdiag_analyser_frames_shed_total", nil),
		Dropped:    d("coredns_dnsdiag_analyser_sessions_dropped_total", nil),
		Unpaired:   d("coredns_dnsdiag_analyser_unpaired_total", nil),
	}
}

// analyserSelected is the variants ANALYSER names: all for "1" (the
// default), none for "0", else a comma-separated list of names.
func analyserSelected(sel string) []analyserVariant {
	switch sel {
	case "0":
		return nil
	case "1", "":
		return analyserVariants
	}
	var vs []analyserVariant
	for _, v := range analyserVariants {
		for _, n := range strings.Split(sel, ",") {
			if v.Name == n {
				vs = append(vs, v)
			}
		}
	}
	return vs
}

// copyAnalyser copies the analyser binary into the work directory, as
// benchmain does CoreDNS, when any analyser variant runs.
func copyAnalyser(cfg *config) error {
	if len(cfg.analyserRuns) == 0 {
		return nil
	}
	bin := filepath.Join(cfg.work, "dnsdiag-analyser")
	if err := copyFile(cfg.analyser, bin); err != nil {
		return fmt.Errorf("copy the analyser binary: %w (run make build first, or ANALYSER=0)", err)
	}
	cfg.analyser = bin
	return nil
}

func analyserRun(cfg *config, v analyserVariant, upPID int) (res analyserResult) {
	res.Variant = v.Name
	foreign, waited := waitIdle(cfg.foreignMax, cfg.idleWait, upPID)
	if waited >= cfg.idleWait {
		logf("  machine still busy (%.2f cores foreign) after %s: running anyway", foreign, waited.Round(time.Second))
	}
	tag := strings.ReplaceAll(v.Name, "/", "-")
	alog := filepath.Join(cfg.work, "analyser-"+tag+".log")
	out, err := os.Create(alog)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer out.Close()
	metrics := "127.0.0.1:" + strconv.Itoa(cfg.port+5)
	args := append([]string{cfg.analyser, "-listen", "tcp://127.0.0.1:" + strconv.Itoa(cfg.port+2), "-metrics", metrics}, v.Args...)
	an, err := start(cfg.cpuCD, []string{"GOMAXPROCS=1"}, out, args...)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer func() {
		stop(an, 5*time.Second)
		res.LogLines = countLines(alog, "plugin/dnsdiag: {")
	}()
	if err := waitLog(alog, "analyser: listening on", 10*time.Second); err != nil {
		res.Error = err.Error()
		return res
	}
	if v.Corefile == "" {
		res.Steps, err = replayLadder(cfg, metrics, an.Process.Pid, upPID)
		if err != nil {
			res.Error = err.Error()
		}
		var best *analyserStep
		for i := range res.Steps {
			if st := &res.Steps[i]; st.Clean && (best == nil || st.PerSec > best.PerSec) {
				best = st
			}
		}
		if best != nil {
			res.analyserCounters, res.QPS, res.SessionsPerSec = best.analyserCounters, best.Offered, best.PerSec
			res.Cores, res.RSSKB, res.CPUPerSession, res.Foreign = best.Cores, best.RSSKB, best.CPU, best.Foreign
			res.OneCore = best.PerSec / max(min(best.Cores, 1), 1e-9)
		}
		res.HWMKB = procStatusKB(an.Process.Pid, "VmHWM")
		return res
	}

	cdlog, err := os.Create(filepath.Join(cfg.work, "analyser-"+tag+"-coredns.log"))
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer cdlog.Close()
	cd, err := start(cfg.cpuLoad, portEnv(cfg), cdlog, cfg.coredns, "-conf", corefile(cfg, v.Corefile))
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer stop(cd, 15*time.Second)
	if err := waitReady(cfg.port, 10*time.Second); err != nil {
		res.Error = fmt.Sprintf("coredns: %v\n%s", err, readTail(cdlog.Name()))
		return res
	}
	if err := waitLog(alog, "analyser: connection from", 10*time.Second); err != nil {
		res.Error = "coredns's dnstap: " + err.Error()
		return res
	}
	if cfg.warmup > 0 {
		if _, err := dnsperf(cfg, cfg.port, cfg.warmup, 0); err != nil {
			res.Error = "warm-up: " + err.Error()
			return res
		}
	}

	pid := an.Process.Pid
	m0, err := scrape(metrics)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	pids := []int{pid, cd.Process.Pid, upPID}
	mine0, c0, cpu0, t0 := sumCPU(pids), readCPUTimes(), procCPU(pid), time.Now()
	p, err := dnsperf(cfg, cfg.port, cfg.duration, 0)
	wall := time.Since(t0)
	cpu, c1, mine1 := procCPU(pid)-cpu0, readCPUTimes(), sumCPU(pids)
	res.RSSKB = procStatusKB(pid, "VmRSS")
	m1, serr := scrape(metrics)
	if err != nil {
		res.Error = "saturation: " + err.Error()
		return res
	}
	if serr != nil {
		res.Error = serr.Error()
		return res
	}
	res.HWMKB = procStatusKB(pid, "VmHWM")
	res.QPS, res.Sent, res.Completed, res.Lost = p.QPS, p.Sent, p.Completed, p.Lost
	res.Foreign = max0(float64((c1.busy-c0.busy)-(mine1-mine0)-p.CPU) / float64(wall))

	res.analyserCounters = countersBetween(m0, m1)
	res.SessionsPerSec = res.Sessions / wall.Seconds()
	res.Cores = float64(cpu) / float64(wall)
	res.CPUPerSession = perQuery(cpu, int64(res.Sessions))
	if res.Cores > 0 {
		res.OneCore = res.SessionsPerSec / min(res.Cores, 1)
	}
	return res
}

// waitLog waits until the file at path contains substr.
func waitLog(path, substr string, timeout time.Duration) error {
	for deadline := time.Now().Add(timeout); ; time.Sleep(10 * time.Millisecond) {
		b, _ := os.ReadFile(path)
		if bytes.Contains(b, []byte(substr)) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no %q in %s after %s:\n%s", substr, filepath.Base(path), timeout, tail(b, 1500))
		}
	}
}

// scrape reads a Prometheus text exposition from addr's /metrics.
func scrape(addr string) ([]byte, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("analyser metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("analyser metrics: %s", resp.Status)
	}
	return io.ReadAll(resp.Body)
}

var promLabel = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

// promSum sums the samples of the metric name in a Prometheus text
// exposition whose labels include want (every sample when want is nil).
func promSum(text []byte, name string, want map[string]string) float64 {
	sum := 0.0
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (!strings.HasPrefix(rest, "{") && !strings.HasPrefix(rest, " ")) {
			continue
		}
		labels := map[string]string{}
		if strings.HasPrefix(rest, "{") {
			end := strings.LastIndex(rest, "}")
			if end < 0 {
				continue
			}
			for _, m := range promLabel.FindAllStringSubmatch(rest[:end], -1) {
				labels[m[1]] = m[2]
			}
			rest = rest[end+1:]
		}
		match := true
		for k, v := range want {
			match = match && labels[k] == v
		}
		f := strings.Fields(rest) // value, then an optional timestamp
		if !match || len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// analyserReport is the report's section on the analyser.
func analyserReport(b *strings.Builder, rep *report) {
	if len(rep.Analyser) == 0 {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	st := rep.Settings
	p("## dnsdiag-analyser: sessions per second on one core\n\n")
	p("`./dnsdiag-analyser` (build/analyser) pinned alone to cpu%s with GOMAXPROCS=1, fed by `./coredns` with no dnsdiag and ", st.CPUCD)
	p("`dnstap tcp://… full` (the dnstap Corefiles, streaming to the analyser instead of the sink), CoreDNS, dnsperf and the upstream on the other core; ")
	p("`dnsperf -l %g -c %d -q %d` at saturation of that CoreDNS after %gs of warm-up. ", st.Duration, st.Clients, st.Outstanding, st.Warmup)
	p("Sessions, frames, shed and dropped are the analyser's own counters (`coredns_dnsdiag_sessions_total`, `coredns_dnsdiag_analyser_*`) over the run; ")
	p("CPU is its utime+stime over the run. When CoreDNS cannot stream fast enough to keep the analyser's core busy, ")
	p("\"on a busy core\" is sessions/s divided by the share of the core it used: an extrapolation, not a measured maximum. ")
	p("The replayed rows measure it: the runner itself, on the other core, streams what CoreDNS streams for cache hits ")
	p("(CLIENT_QUERY and CLIENT_RESPONSE of the bench's names, dnsperf's 4 client ports, sequential ids) at rising rates, %gs each, ", replayStep.Seconds())
	p("until a rate is not handled cleanly (a frame shed, a session dropped or SampleLoss, or under 99%% of the sessions sent ended); ")
	p("their row is the fastest clean rate, the ladder below the table. ")
	p("RSS: VmHWM after the run, VmRSS at its end.\n\n")
	p("| traffic, policy | CoreDNS QPS | analyser sessions/s | of which SampleLoss | analyser CPU (cores) | µs CPU/session | sessions/s on a busy core | frames / session | frames shed | sessions dropped | unpaired | peak RSS MiB (end) | lines | notes |\n")
	p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rep.Analyser {
		title := r.Variant
		for _, v := range analyserVariants {
			if v.Name == r.Variant {
				title = v.Title
			}
		}
		if r.Error != "" {
			p("| %s | error: %s |\n", title, strings.ReplaceAll(firstLineStr(r.Error), "|", "/"))
			continue
		}
		perSession := 0.0
		if r.Sessions > 0 {
			perSession = r.Frames / r.Sessions
		}
		var notes []string
		if r.Lost > 0 {
			notes = append(notes, fmt.Sprintf("dnsperf lost %d of %d", r.Lost, r.Sent))
		}
		if r.Foreign > 0.05 {
			notes = append(notes, fmt.Sprintf("foreign CPU %.2f cores", r.Foreign))
		}
		qps := fmt.Sprintf("%.0f", r.QPS)
		if len(r.Steps) > 0 {
			qps = fmt.Sprintf("replay, %.0f offered", r.QPS)
		}
		p("| %s | %s | %.0f | %.0f | %.2f | %.1f | %.0f | %.2f | %.0f | %.0f | %.0f | %.1f (%.1f) | %d | %s |\n",
			title, qps, r.SessionsPerSec, r.SampleLoss, r.Cores, r.CPUPerSession, r.OneCore, perSession,
			r.Shed, r.Dropped, r.Unpaired, float64(r.HWMKB)/1024, float64(r.RSSKB)/1024, r.LogLines, strings.Join(notes, "; "))
	}
	p("\n")
	for _, r := range rep.Analyser {
		if len(r.Steps) == 0 {
			continue
		}
		p("- %s, offered sessions/s → ended/s (analyser cores, µs CPU/session, shed frames, SampleLoss, foreign cores):", r.Variant)
		for _, st := range r.Steps {
			mark := ""
			if !st.Clean {
				mark = " **not clean**"
			}
			p(" %.0f → %.0f (%.2f, %.1f, %.0f, %.0f, %.2f)%s;", st.Offered, st.PerSec, st.Cores, st.CPU, st.Shed, st.SampleLoss, st.Foreign, mark)
		}
		p("\n")
	}
	p("\n")
}
