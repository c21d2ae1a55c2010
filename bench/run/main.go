// Command run is `make bench`: it measures dnsdiag's cost against the same
// CoreDNS binary without it, and against dnstap streaming, side by side.
//
// For cache-hit and forwarded traffic it runs four Corefiles (bench/corefiles):
// plain, dnsdiag (default policy), dnsdiag `log all` + `rate 0` to a file, and
// `dnstap tcp://… full` to bench/dnstap-sink. CoreDNS under test is pinned to
// one core; dnsperf, the upstream (a second CoreDNS answering from hosts) and
// the dnstap sink share the other. Variants are interleaved round by round,
// in a shuffled order per round, so machine drift cancels out of the
// per-round ratios to plain. Each run: a saturation run (throughput, CPU per
// query, lost queries), then a fixed-rate run for latency, then peak RSS.
// A 60 s saturation run per traffic kind checks that dnsdiag's memory stays
// flat; dnsdiag-analyser's sessions per second on one core, fed by a
// CoreDNS streaming dnstap, are measured (analyser.go); and the Go
// microbenchmarks of the per-query path run last.
//
// Knobs are environment variables (see config); results go to
// bench/results/latest.md and latest.json.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dnsdiag/dnsdiag/plugin/dnsdiagtest"
	"github.com/miekg/dns"
)

type config struct {
	coredns      string
	rounds       int
	duration     float64 // saturation run, seconds
	warmup       float64
	latDuration  float64
	latQPS       int
	memDuration  float64
	memSample    float64
	profSeconds  float64 // CPU profile per variant, 0 for none
	clients      int
	outstanding  int
	port         int // CoreDNS under test; upstream port+1, dnstap sink or analyser port+2, pprof port+3, prometheus port+4, analyser metrics port+5
	order        string
	only         []string // variant names to run, all when empty
	micro        bool
	analyser     string            // the dnsdiag-analyser binary, beside COREDNS
	analyserRuns []analyserVariant // ANALYSER: 1 all, 0 none, or names
	microTime    string
	microCount   int
	foreignMax   float64 // cores of foreign CPU above which a run is repeated
	retries      int
	idleWait     time.Duration
	results      string
	cpuCD        string // CoreDNS under test
	cpuLoad      string // dnsperf, upstream, sink
	queries      string
	work         string
	repo         string
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envFloat(name string, def float64) float64 {
	f, err := strconv.ParseFloat(env(name, ""), 64)
	if err != nil {
		return def
	}
	return f
}

func envInt(name string, def int) int { return int(envFloat(name, float64(def))) }

func loadConfig() *config {
	c := &config{
		coredns:      env("COREDNS", "./coredns"),
		analyser:     filepath.Join(filepath.Dir(env("COREDNS", "./coredns")), "dnsdiag-analyser"),
		analyserRuns: analyserSelected(env("ANALYSER", "1")),
		rounds:       envInt("ROUNDS", 3),
		duration:     envFloat("DURATION", 10),
		warmup:       envFloat("WARMUP", 1),
		latDuration:  envFloat("LATDURATION", 5),
		latQPS:       envInt("LATQPS", 5000),
		memDuration:  envFloat("MEMDURATION", 60),
		memSample:    envFloat("MEMSAMPLE", 5),
		profSeconds:  envFloat("PROFSECONDS", 5),
		clients:      envInt("CLIENTS", 4),
		outstanding:  envInt("OUTSTANDING", 100),
		port:         envInt("BENCH_PORT", 15300),
		order:        env("ORDER", "shuffle"),
		micro:        env("MICRO", "1") != "0",
		microTime:    env("MICROTIME", "1s"),
		microCount:   envInt("MICROCOUNT", 3),
		foreignMax:   envFloat("FOREIGN_MAX", 0.10),
		retries:      envInt("RETRIES", 1),
		idleWait:     seconds(envFloat("IDLEWAIT", 20)),
		results:      env("RESULTS", "bench/results"),
		cpuCD:        "0",
		cpuLoad:      "1",
	}
	if v := env("VARIANTS", ""); v != "" {
		c.only = strings.Split(v, ",")
	}
	if runtime.NumCPU() < 2 {
		c.cpuCD, c.cpuLoad = "", "" // nothing to pin apart
	}
	return c
}

// variant is one Corefile under test.
type variant struct {
	Name     string // traffic/kind
	Traffic  string // cache, forward
	Kind     string // plain, dnsdiag, logall, dnstap
	Corefile string
}

var kinds = []string{"plain", "dnsdiag", "logall", "dnstap"}

// kubeKinds are compared on the kube-system chain: the dnstap streaming and
// the log plugin that `log all` competes with too.
var kubeKinds = []string{"plain", "dnsdiag", "logall", "dnstap", "logplugin"}

var kindTitle = map[string]string{
	"plain":     "plain",
	"dnsdiag":   "dnsdiag (default policy)",
	"logall":    "dnsdiag `log all` + `rate 0` → file",
	"dnstap":    "`dnstap tcp://… full` → sink",
	"logplugin": "CoreDNS's `log` plugin → file",
}

var trafficTitle = map[string]string{"cache": "cache hit", "forward": "forwarded", "kube": "cache hit, kube-system chain",
	"kubefwd": "forwarded, kube-system chain without cache"}

// traffics are the traffic kinds in report order. "kube" is cache-hit
// traffic through the query-path plugins of the stock kube-system Corefile:
// what an operator runs, where the plain chain is already deep; "kubefwd"
// is the same chain without cache, every query forwarded.
var traffics = []string{"cache", "forward", "kube", "kubefwd"}

func kindsOf(traffic string) []string {
	if traffic == "kube" || traffic == "kubefwd" {
		return kubeKinds
	}
	return kinds
}

func allVariants() []variant {
	var vs []variant
	for _, t := range traffics {
		for _, k := range kindsOf(t) {
			vs = append(vs, variant{Name: t + "/" + k, Traffic: t, Kind: k, Corefile: t + "-" + k + ".Corefile"})
		}
	}
	return vs
}

// result is one run of one variant.
type result struct {
	Variant  string
	Round    int
	Position int // place in the round's order
	Attempts int

	QPS         float64
	Sent        int64
	Completed   int64
	Lost        int64
	CPUPerQuery float64 // µs of CoreDNS CPU per completed query at saturation
	Foreign     float64 // cores of CPU used by other processes during the saturation run
	Steal       float64 // cores of steal time during the saturation run
	IdleWait    float64 // seconds waited for an idle machine

	P50, P99, P999 float64 // ms, at LATQPS
	LatQPS         float64
	LatLost        int64
	LatSamples     int

	HWMKB     int64
	Sessions  int64 // queries sent to this instance overall (probes, warm-up, saturation, latency)
	LogLines  int64 // dnsdiag session lines in CoreDNS's output
	TapFrames int64 // frames the dnstap sink counted
	Error     string
}

type memSample struct {
	T     float64 // seconds since the run started
	RSSKB int64
	HWMKB int64
}

type memRun struct {
	Variant string
	QPS     float64
	Lost    int64
	Samples []memSample
	Error   string
}

type report struct {
	Started  time.Time
	Elapsed  time.Duration
	Machine  machine
	Config   map[string]string
	Settings settings
	Results  []result
	Mem      []memRun
	Profiles []cpuProfile
	Micro    *microResult
	Analyser []analyserResult
	Warnings []string
}

func main() {
	runtime.LockOSThread()                             // children's Pdeathsig follows the thread that started them
	if spec := os.Getenv("BENCH_REPLAY"); spec != "" { // the analyser's sender (analyser_replay.go)
		if err := replayMain(spec); err != nil {
			fmt.Fprintln(os.Stderr, "bench replay:", err)
			os.Exit(1)
		}
		return
	}
	cfg := loadConfig()
	if from := env("REPORT_FROM", ""); from != "" { // render a saved latest.json again
		var rep report
		b, err := os.ReadFile(from)
		if err == nil {
			err = json.Unmarshal(b, &rep)
		}
		if err == nil {
			err = writeReport(cfg, &rep)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	code := 0
	if err := benchmain(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		code = 1
	}
	killAll()
	if cfg.work != "" && env("KEEP", "") == "" {
		os.RemoveAll(cfg.work)
	}
	os.Exit(code)
}

func benchmain(cfg *config) error {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "bench: %v: stopping everything this run started\n", s)
		killAll()
		if cfg.work != "" && env("KEEP", "") == "" {
			os.RemoveAll(cfg.work)
		}
		os.Exit(130)
	}()

	rep := &report{Started: time.Now()}
	var err error
	if cfg.repo, err = os.Getwd(); err != nil {
		return err
	}
	for _, tool := range []string{"dnsperf", "taskset", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (make bench installs dnsperf: apt-get install -y dnsperf)", tool)
		}
	}
	if cfg.work, err = os.MkdirTemp("", "dnsdiag-bench-"); err != nil {
		return err
	}
	logf("work directory %s", cfg.work)

	// A private copy of the binary: other builds of ./coredns during the
	// run cannot change what is measured.
	bin := filepath.Join(cfg.work, "coredns")
	if err := copyFile(cfg.coredns, bin); err != nil {
		return fmt.Errorf("copy CoreDNS binary: %w (run make build first)", err)
	}
	cfg.coredns = bin
	if err := copyAnalyser(cfg); err != nil {
		return err
	}
	sink := filepath.Join(cfg.work, "dnstap-sink")
	if out, err := exec.Command("go", "build", "-o", sink, "./bench/dnstap-sink").CombinedOutput(); err != nil {
		return fmt.Errorf("build dnstap sink: %v\n%s", err, out)
	}
	cfg.queries = filepath.Join(cfg.repo, "bench", "queries.txt")
	rep.Machine = describe(cfg)
	rep.Settings = settingsOf(cfg)
	rep.Config = map[string]string{
		"ROUNDS": strconv.Itoa(cfg.rounds), "DURATION": fmt.Sprint(cfg.duration), "WARMUP": fmt.Sprint(cfg.warmup),
		"LATDURATION": fmt.Sprint(cfg.latDuration), "LATQPS": strconv.Itoa(cfg.latQPS),
		"MEMDURATION": fmt.Sprint(cfg.memDuration), "PROFSECONDS": fmt.Sprint(cfg.profSeconds), "CLIENTS": strconv.Itoa(cfg.clients),
		"OUTSTANDING": strconv.Itoa(cfg.outstanding), "ORDER": cfg.order, "FOREIGN_MAX": fmt.Sprint(cfg.foreignMax),
		"RETRIES": strconv.Itoa(cfg.retries), "MICRO": fmt.Sprint(cfg.micro), "MICROTIME": cfg.microTime,
		"MICROCOUNT": strconv.Itoa(cfg.microCount), "ANALYSER": env("ANALYSER", "1"),
	}

	variants := allVariants()
	if len(cfg.only) > 0 {
		var vs []variant
		for _, v := range variants {
			for _, o := range cfg.only {
				if v.Name == o || v.Traffic == o || v.Kind == o {
					vs = append(vs, v)
					break
				}
			}
		}
		variants = vs
	}

	// The upstream lives for the whole run, on the load generator's core.
	upLog, err := os.Create(filepath.Join(cfg.work, "upstream.log"))
	if err != nil {
		return err
	}
	defer upLog.Close()
	up, err := start(cfg.cpuLoad, portEnv(cfg), upLog, cfg.coredns, "-conf", corefile(cfg, "upstream.Corefile"))
	if err != nil {
		return err
	}
	defer stop(up, 5*time.Second)
	if err := waitReady(cfg.port+1, 10*time.Second); err != nil {
		return fmt.Errorf("upstream: %w\n%s", err, readTail(upLog.Name()))
	}

	total := len(variants) * cfg.rounds
	n := 0
	for r := 1; r <= cfg.rounds; r++ {
		order := append([]variant(nil), variants...)
		if cfg.order == "shuffle" {
			rng := rand.New(rand.NewPCG(uint64(r), 4))
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		for pos, v := range order {
			n++
			// Keep the attempt least disturbed by other processes.
			var res result
			for attempt := 1; attempt <= 1+cfg.retries; attempt++ {
				a := runVariant(cfg, v, up.Process.Pid, fmt.Sprintf("r%d-a%d", r, attempt))
				if attempt == 1 || (a.Error == "" && (res.Error != "" || a.Foreign < res.Foreign)) {
					res = a
				}
				res.Round, res.Position, res.Attempts = r, pos+1, attempt
				if a.Error != "" || a.Foreign <= cfg.foreignMax {
					break
				}
				logf("  %.2f cores of foreign CPU during the run: repeating it", a.Foreign)
			}
			logf("[%d/%d] round %d %-16s %8.0f qps  %5.1f µs/q  p50 %.3f p99 %.3f ms  lost %d/%d  foreign %.2f  %s",
				n, total, r, v.Name, res.QPS, res.CPUPerQuery, res.P50, res.P99, res.Lost, res.LatLost, res.Foreign, res.Error)
			rep.Results = append(rep.Results, res)
		}
	}

	if cfg.memDuration > 0 {
		for _, v := range variants {
			if v.Kind != "dnsdiag" || v.Traffic == "kube" || v.Traffic == "kubefwd" {
				continue
			}
			m := memoryRun(cfg, v, up.Process.Pid)
			if len(m.Samples) > 0 {
				f, l := m.Samples[0], m.Samples[len(m.Samples)-1]
				logf("memory %s: %.0f qps, RSS %d kB at %.0fs, %d kB at %.0fs %s", v.Name, m.QPS, f.RSSKB, f.T, l.RSSKB, l.T, m.Error)
			}
			rep.Mem = append(rep.Mem, m)
		}
	}

	if cfg.profSeconds > 0 {
		for _, v := range variants {
			pr := profileRun(cfg, v, up.Process.Pid)
			logf("profile %s: %.1f µs/q, newstack %.1f%%, mallocgc %.1f%% %s", v.Name, pr.CPUPerQuery, pr.Cum["newstack"], pr.Cum["mallocgc"], pr.Error)
			rep.Profiles = append(rep.Profiles, pr)
		}
	}

	for _, v := range cfg.analyserRuns {
		a := analyserRun(cfg, v, up.Process.Pid)
		logf("analyser %s: %.0f sessions/s (%.0f qps), %.2f cores, %.1f µs/session, %.0f/s on a busy core, shed %.0f, HWM %d kB %s",
			v.Name, a.SessionsPerSec, a.QPS, a.Cores, a.CPUPerSession, a.OneCore, a.Shed, a.HWMKB, a.Error)
		rep.Analyser = append(rep.Analyser, a)
	}

	if cfg.micro {
		logf("microbenchmarks (go test -bench, pinned to cpu%s, -cpu 1)", cfg.cpuCD)
		m, err := microbench(cfg)
		if err != nil {
			rep.Warnings = append(rep.Warnings, "microbenchmarks: "+err.Error())
			logf("microbenchmarks: %v", err)
		}
		rep.Micro = m
	}

	rep.Elapsed = time.Since(rep.Started)
	return writeReport(cfg, rep)
}

func portEnv(cfg *config) []string {
	return []string{
		"BENCH_PORT=" + strconv.Itoa(cfg.port),
		"BENCH_UPSTREAM_PORT=" + strconv.Itoa(cfg.port+1),
		"BENCH_DNSTAP_PORT=" + strconv.Itoa(cfg.port+2),
		"BENCH_PPROF_PORT=" + strconv.Itoa(cfg.port+3),
		"BENCH_METRICS_PORT=" + strconv.Itoa(cfg.port+4),
	}
}

func corefile(cfg *config, name string) string {
	return filepath.Join(cfg.repo, "bench", "corefiles", name)
}

// instance is a CoreDNS under test, with its dnstap sink if it has one.
type instance struct {
	cmd, sink *exec.Cmd
	log       string
	sinkOut   *dnsdiagtest.SyncBuffer
	sessions  int64
	cfg       *config
	v         variant
}

func startInstance(cfg *config, v variant, tag, conf string) (*instance, error) {
	in := &instance{cfg: cfg, v: v, log: filepath.Join(cfg.work, strings.ReplaceAll(v.Name, "/", "-")+"-"+tag+".log")}
	if v.Kind == "dnstap" {
		in.sinkOut = &dnsdiagtest.SyncBuffer{}
		var err error
		in.sink, err = start(cfg.cpuLoad, nil, in.sinkOut, filepath.Join(cfg.work, "dnstap-sink"), "-addr", "127.0.0.1:"+strconv.Itoa(cfg.port+2))
		if err != nil {
			return nil, err
		}
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(in.sinkOut.String(), "listening") {
			if time.Now().After(deadline) {
				in.close()
				return nil, fmt.Errorf("dnstap sink did not start: %s", in.sinkOut.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	out, err := os.Create(in.log)
	if err != nil {
		in.close()
		return nil, err
	}
	defer out.Close() // the child has its own descriptor
	if in.cmd, err = start(cfg.cpuCD, portEnv(cfg), out, cfg.coredns, "-conf", conf); err != nil {
		in.close()
		return nil, err
	}
	if err := waitReady(cfg.port, 10*time.Second); err != nil {
		in.close()
		return nil, fmt.Errorf("%s: %w\n%s", v.Name, err, readTail(in.log))
	}
	in.sessions += 1 // the readiness probe that answered (earlier probes found no listener)
	if v.Kind == "dnstap" {
		time.Sleep(200 * time.Millisecond) // dnstap connects to the sink asynchronously
	}
	return in, nil
}

func (in *instance) pid() int { return in.cmd.Process.Pid }

func (in *instance) perf(seconds float64, qps int) (perf, error) {
	p, err := dnsperf(in.cfg, in.cfg.port, seconds, qps)
	in.sessions += p.Sent
	return p, err
}

// close stops CoreDNS (letting dnsdiag flush its log) and the sink, and
// counts what they wrote.
func (in *instance) close() (logLines, frames int64) {
	if in.cmd != nil {
		stop(in.cmd, 15*time.Second)
		logLines = countLines(in.log, "plugin/dnsdiag: {")
	}
	if in.sink != nil {
		stop(in.sink, 5*time.Second)
		for _, l := range strings.Split(in.sinkOut.String(), "\n") {
			if v, ok := strings.CutPrefix(l, "frames "); ok {
				frames, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			}
		}
	}
	return logLines, frames
}

func runVariant(cfg *config, v variant, upPID int, tag string) (res result) {
	res.Variant = v.Name
	in, waited, err := warmStart(cfg, v, upPID, tag, corefile(cfg, v.Corefile))
	res.IdleWait = waited.Seconds()
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer func() {
		res.LogLines, res.TapFrames = in.close()
		res.Sessions = in.sessions
	}()

	pids := []int{in.pid(), upPID}
	if in.sink != nil {
		pids = append(pids, in.sink.Process.Pid)
	}
	mine0 := sumCPU(pids)
	c0 := readCPUTimes()
	t0 := time.Now()
	p, cd, err := in.saturate(cfg.duration, nil)
	wall := time.Since(t0)
	c1 := readCPUTimes()
	mine1 := sumCPU(pids)
	if err != nil {
		res.Error = "saturation: " + err.Error()
		return res
	}
	res.QPS, res.Sent, res.Completed, res.Lost = p.QPS, p.Sent, p.Completed, p.Lost
	res.CPUPerQuery = perQuery(cd, p.Completed)
	res.Foreign = max0(float64((c1.busy-c0.busy)-(mine1-mine0)-p.CPU) / float64(wall))
	res.Steal = float64(c1.steal-c0.steal) / float64(wall)

	lp, err := in.perf(cfg.latDuration, cfg.latQPS)
	if err != nil {
		res.Error = "latency: " + err.Error()
		return res
	}
	res.LatQPS, res.LatLost, res.LatSamples = lp.QPS, lp.Lost, len(lp.Latencies)
	res.P50 = quantile(lp.Latencies, 0.50) * 1000
	res.P99 = quantile(lp.Latencies, 0.99) * 1000
	res.P999 = quantile(lp.Latencies, 0.999) * 1000
	res.HWMKB = procStatusKB(in.pid(), "VmHWM")
	return res
}

// memoryRun drives v at saturation for MEMDURATION seconds and samples its
// RSS every MEMSAMPLE seconds.
func memoryRun(cfg *config, v variant, upPID int) (m memRun) {
	m.Variant = v.Name
	in, _, err := warmStart(cfg, v, upPID, "mem", corefile(cfg, v.Corefile))
	if err != nil {
		m.Error = err.Error()
		return m
	}
	defer in.close()
	p, _, err := in.saturate(cfg.memDuration, func(done <-chan struct{}) {
		sampleEvery(done, seconds(cfg.memSample), seconds(cfg.memDuration), func(e time.Duration) {
			m.Samples = append(m.Samples, memSample{T: e.Seconds(),
				RSSKB: procStatusKB(in.pid(), "VmRSS"), HWMKB: procStatusKB(in.pid(), "VmHWM")})
		})
	})
	m.QPS, m.Lost = p.QPS, p.Lost
	if err != nil {
		m.Error = err.Error()
	}
	return m
}

// perQuery is CPU time per completed query in µs.
func perQuery(cpu time.Duration, completed int64) float64 {
	if completed == 0 {
		return 0
	}
	return float64(cpu) / float64(time.Microsecond) / float64(completed)
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func sumCPU(pids []int) time.Duration {
	var d time.Duration
	for _, p := range pids {
		d += procCPU(p)
	}
	return d
}

// waitReady asks 127.0.0.1:port for n01.bench.test until it answers.
func waitReady(port int, timeout time.Duration) error {
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	q := new(dns.Msg)
	q.SetQuestion("n01.bench.test.", dns.TypeA)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		r, _, err := c.ExchangeContext(ctx, q, addr)
		cancel()
		if err == nil && r != nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("no answer")
			}
			return fmt.Errorf("not ready on %s after %s: %v", addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func countLines(path, substr string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	var n int64
	buf := make([]byte, 1<<20)
	var carry []byte
	for {
		k, err := f.Read(buf)
		chunk := append(carry, buf[:k]...)
		lines := strings.Split(string(chunk), "\n")
		for _, l := range lines[:len(lines)-1] {
			if strings.Contains(l, substr) {
				n++
			}
		}
		carry = []byte(lines[len(lines)-1])
		if err != nil {
			if strings.Contains(string(carry), substr) {
				n++
			}
			return n
		}
	}
}

func readTail(path string) string {
	b, _ := os.ReadFile(path)
	return tail(b, 1500)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
