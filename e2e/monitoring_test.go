package e2e

// Monitoring: build/monitoring's dashboard and alert rules, evaluated by a
// real Prometheus (Debian's prometheus, which `make e2e` installs) that
// scrapes two real coredns processes on loopback as the pods coredns-a and
// coredns-b of namespace kube-system, after known traffic.

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"sigs.k8s.io/yaml"

	"github.com/dnsdiag/dnsdiag/build/monitoring"
)

// monCorefile is one "pod": the client-facing block {{DNS}}, a second one
// {{RETX}} for replayed retransmissions (so that whatever the hints do to
// sessions leaves DNS's counts alone), and their upstream {{UP}} in the same
// process: ok.test answers, nx.test NXDOMAIN, fail.test SERVFAIL, and
// silent.test is dropped, so forward gets no answer.
var monCorefile = mtDNSBlock + `
.:{{RETX}} {
    bind 127.0.0.1
    prometheus 127.0.0.1:{{PROM}}
    dnsdiag
    cache
    forward . 127.0.0.1:{{UP}}
}
` + monUpstreamBlock

// monUpstreamBlock is richUpstream dropping silent.test.
var monUpstreamBlock = strings.Replace(richUpstream, "    bind 127.0.0.1\n", "    bind 127.0.0.1\n    acl silent.test {\n        drop\n    }\n", 1)

// What one round of monRound does to each pod's DNS block, by status and
// BitMap; the lines the default policy writes (the failed ones) and the
// sessions it does not log (the others); and the upstream's answers.
var (
	monSessionsA = map[[2]string]float64{
		{"Succeeded", "15"}: 8, // 6 answered, 2 NXDOMAIN
		{"Succeeded", "3"}:  2, // 2 cache hits
		{"Failed", "15"}:    3, // upstream SERVFAIL
		{"Failed", "3"}:     1, // the cached SERVFAIL
		{"Failed", "5"}:     1, // silent upstream
		{"Failed", "1"}:     1, // acl drop
	}
	monSessionsB  = map[[2]string]float64{{"Succeeded", "15"}: 3, {"Failed", "15"}: 1}
	monOutcomesA  = map[string]float64{"NOERROR": 6, "NXDOMAIN": 2, "SERVFAIL": 3}
	monRetxRound  = 4.0 // sessions on A's RETX block per round
	monLinesA     = 6.0
	monLinesB     = 1.0
	monSilentWait = 10 * time.Second // forward gives up on silent.test after ~4 s
)

func monTotal(m map[[2]string]float64) float64 {
	s := 0.0
	for _, v := range m {
		s += v
	}
	return s
}

func monFailed(m map[[2]string]float64) float64 {
	s := 0.0
	for k, v := range m {
		if k[0] == "Failed" {
			s += v
		}
	}
	return s
}

// monAsk sends one query and reports what was wrong with its answer; it
// may run on any goroutine.
func monAsk(t *testing.T, addr, name string, rcode int, timeout time.Duration) {
	r := Query(t, "udp", addr, name, dns.TypeA, timeout)
	switch {
	case rcode < 0 && r.Msg != nil:
		t.Errorf("%s: got an answer, want none: %v", name, r.Msg)
	case rcode >= 0 && (r.Msg == nil || r.Msg.Rcode != rcode):
		t.Errorf("%s: got %v (%v), want rcode %s", name, r.Msg, r.Err, dns.RcodeToString[rcode])
	}
}

// monReplay sends one query and then the same bytes again from the same
// socket (same port, DNS ID and question, as glibc and musl retry): after
// the first answer arrived, or, if !afterAnswer, 1 s after the first copy,
// while it is unanswered. Both copies must be answered with rcode.
func monReplay(t *testing.T, addr, name string, afterAnswer bool, rcode int) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	q, err := m.Pack()
	if err != nil {
		t.Errorf("pack: %v", err)
		return
	}
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Errorf("dial %s: %v", addr, err)
		return
	}
	defer conn.Close()
	read := func() {
		buf := make([]byte, 4096)
		_ = conn.SetReadDeadline(time.Now().Add(monSilentWait))
		n, err := conn.Read(buf)
		var a dns.Msg
		if err == nil {
			err = a.Unpack(buf[:n])
		}
		if err != nil || a.Id != m.Id || a.Rcode != rcode {
			t.Errorf("replayed %s: answer %v (%v), want id %d rcode %s", name, a.Rcode, err, m.Id, dns.RcodeToString[rcode])
		}
	}
	if _, err := conn.Write(q); err != nil {
		t.Errorf("write: %v", err)
		return
	}
	if afterAnswer {
		read()
	} else {
		time.Sleep(time.Second)
	}
	if _, err := conn.Write(q); err != nil {
		t.Errorf("write: %v", err)
		return
	}
	read()
	if !afterAnswer {
		read()
	}
}

// monRound sends round r's traffic to both pods, names new to the round.
func monRound(t *testing.T, a, b *Server, r int) {
	var wg sync.WaitGroup
	da, db, retx := a.Addr("DNS"), b.Addr("DNS"), a.Addr("RETX")
	wg.Go(func() {
		for i := range 6 {
			monAsk(t, da, fmt.Sprintf("a%d-%d.ok.test", r, i), dns.RcodeSuccess, qTimeout)
		}
		for i := range 2 {
			monAsk(t, da, fmt.Sprintf("a%d-%d.ok.test", r, i), dns.RcodeSuccess, qTimeout)
		}
		for i := range 2 {
			monAsk(t, da, fmt.Sprintf("n%d-%d.nx.test", r, i), dns.RcodeNameError, qTimeout)
		}
		for i := range 3 {
			monAsk(t, da, fmt.Sprintf("f%d-%d.fail.test", r, i), dns.RcodeServerFailure, qTimeout)
		}
		monAsk(t, da, fmt.Sprintf("f%d-0.fail.test", r), dns.RcodeServerFailure, qTimeout)
	})
	wg.Go(func() { monAsk(t, da, fmt.Sprintf("s%d.silent.test", r), dns.RcodeServerFailure, monSilentWait) })
	wg.Go(func() { monAsk(t, da, fmt.Sprintf("d%d.drop.test", r), -1, 700*time.Millisecond) })
	wg.Go(func() {
		for i := range 3 {
			monAsk(t, db, fmt.Sprintf("b%d-%d.ok.test", r, i), dns.RcodeSuccess, qTimeout)
		}
		monAsk(t, db, fmt.Sprintf("g%d.fail.test", r), dns.RcodeServerFailure, qTimeout)
	})
	wg.Go(func() { monReplay(t, retx, fmt.Sprintf("r%d.ok.test", r), true, dns.RcodeSuccess) })
	wg.Go(func() { monReplay(t, retx, fmt.Sprintf("r%d.silent.test", r), false, dns.RcodeServerFailure) })
	wg.Wait()
}

// ---------------------------------------------------------------------------
// A Prometheus

// promServer is a prometheus process with its own config, storage and log
// in a temporary directory, on a loopback port.
type promServer struct {
	t    *testing.T
	base string
	log  string
}

// startPrometheus scrapes each target (pod name to address) every second,
// with the namespace and pod labels a Kubernetes scrape sets, and loads
// rules.
func startPrometheus(t *testing.T, targets map[string]string, rules string) *promServer {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("needs Debian's prometheus on PATH (make e2e installs it)")
	}
	dir := t.TempDir()
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n- %q\nscrape_configs:\n- job_name: coredns\n  static_configs:\n", rules)
	for _, pod := range slices.Sorted(maps.Keys(targets)) {
		fmt.Fprintf(&cfg, "  - targets: [%q]\n    labels: {namespace: kube-system, pod: %q}\n", targets[pod], pod)
	}
	conf := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(conf, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for attempt := 0; ; attempt++ {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
		p := &promServer{t: t, base: "http://" + addr, log: filepath.Join(dir, fmt.Sprintf("prometheus-%d.log", attempt))}
		logf, err := os.Create(p.log)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "data"),
			"--web.listen-address="+addr, "--log.level=warn")
		cmd.Dir = dir
		cmd.Stdout, cmd.Stderr = logf, logf
		err = cmd.Start()
		logf.Close()
		if err != nil {
			t.Fatalf("start %s: %v", bin, err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
			if t.Failed() {
				t.Logf("prometheus log:\n%s", readFile(t, p.log))
			}
		})
		if p.waitReady(exited, 20*time.Second) {
			return p
		}
		if out := readFile(t, p.log); attempt == 2 || !strings.Contains(out, "address already in use") {
			t.Fatalf("prometheus did not become ready:\n%s\nconfig:\n%s", out, cfg.String())
		}
	}
}

func (p *promServer) waitReady(exited chan struct{}, timeout time.Duration) bool {
	c := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		select {
		case <-exited:
			return false
		default:
		}
		if resp, err := c.Get(p.base + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// promResult is one series of an instant query's vector.
type promResult struct {
	Metric map[string]string
	Value  float64
}

// api GETs /api/v1/path and decodes its data; a response with status
// "error" (a query that does not parse) is returned as an error.
func (p *promServer) api(path string, params url.Values, data any) error {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(p.base + "/api/v1/" + path + "?" + params.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var r struct {
		Status, ErrorType, Error string
		Data                     json.RawMessage
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return fmt.Errorf("HTTP %d: %v", resp.StatusCode, err)
	}
	if r.Status != "success" {
		return fmt.Errorf("%s: %s", r.ErrorType, r.Error)
	}
	return json.Unmarshal(r.Data, data)
}

// query evaluates expr at time at (now if zero) and returns its vector.
func (p *promServer) query(expr string, at time.Time) ([]promResult, error) {
	params := url.Values{"query": {expr}}
	if !at.IsZero() {
		params.Set("time", strconv.FormatFloat(float64(at.UnixNano())/1e9, 'f', 3, 64))
	}
	var d struct {
		ResultType string
		Result     []struct {
			Metric map[string]string
			Value  [2]any
		}
	}
	if err := p.api("query", params, &d); err != nil {
		return nil, err
	}
	if d.ResultType != "vector" {
		return nil, fmt.Errorf("result type %s, want vector", d.ResultType)
	}
	var out []promResult
	for _, r := range d.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("value %v: %v", r.Value[1], err)
		}
		out = append(out, promResult{r.Metric, v})
	}
	return out, nil
}

// mustQuery is query that fails the test on an error.
func (p *promServer) mustQuery(expr string, at time.Time) []promResult {
	p.t.Helper()
	res, err := p.query(expr, at)
	if err != nil {
		p.t.Fatalf("query %s: %v", expr, err)
	}
	return res
}

// waitFor queries expr until cond holds on its result, at most timeout.
func (p *promServer) waitFor(desc, expr string, timeout time.Duration, cond func([]promResult) bool) {
	p.t.Helper()
	var last []promResult
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		last = p.mustQuery(expr, time.Time{})
		if cond(last) {
			return
		}
	}
	p.t.Fatalf("timed out waiting for %s: %s = %v", desc, expr, last)
}

// byLabel is a result's values by the value of label.
func byLabel(res []promResult, label string) map[string]float64 {
	out := map[string]float64{}
	for _, r := range res {
		out[r.Metric[label]] += r.Value
	}
	return out
}

// promRegex is a label matcher's regular expression, as it stands between
// the quotes of =~"...", for any of the literal values.
func promRegex(values ...string) string {
	for i, v := range values {
		values[i] = strings.ReplaceAll(regexp.QuoteMeta(v), `\`, `\\`)
	}
	return strings.Join(values, "|")
}

func near(got, want, rel float64) bool {
	return math.Abs(got-want) <= rel*math.Abs(want)
}

// ---------------------------------------------------------------------------

// TestMonitoring: Prometheus scrapes two coredns pods through two rounds of
// known traffic; then every dashboard query and every alert is evaluated
// through the HTTP API over the second round: each must parse, each over
// metrics dnsdiag exports must return data, and the key ones must show what
// the traffic implies. Prometheus also runs the rules file itself.
func TestMonitoring(t *testing.T) {
	t.Parallel()
	metrics, err := monitoring.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	dash, err := monitoring.LoadDashboard()
	if err != nil {
		t.Fatal(err)
	}
	rules, err := monitoring.LoadRules()
	if err != nil {
		t.Fatal(err)
	}
	rulesPath, err := filepath.Abs(filepath.Join("..", "build", "monitoring", monitoring.RulesFile))
	if err != nil {
		t.Fatal(err)
	}

	a, b := Start(t, monCorefile, nil), Start(t, monCorefile, nil)
	prom := startPrometheus(t, map[string]string{"coredns-a": a.Addr("PROM"), "coredns-b": b.Addr("PROM")}, rulesPath)
	prom.waitFor("both pods scraped", `sum(up{job="coredns"})`, 20*time.Second, func(r []promResult) bool {
		return len(r) == 1 && r[0].Value == 2
	})

	serverA, serverB, retxA := a.ServerLabel("DNS"), b.ServerLabel("DNS"), a.ServerLabel("RETX")
	mainServers := promRegex(serverA, serverB)
	// settled waits until Prometheus has scraped every count of n rounds.
	settled := func(n float64) {
		want := map[string]float64{
			"sessions_total " + serverA:       n * monTotal(monSessionsA),
			"sessions_total " + serverB:       n * monTotal(monSessionsB),
			"sessions_total " + retxA:         n * monRetxRound,
			"log_lines_total " + serverA:      n * monLinesA,
			"log_lines_total " + serverB:      n * monLinesB,
			"log_suppressed_total " + serverA: n * (monTotal(monSessionsA) - monLinesA),
			"log_suppressed_total " + serverB: n * (monTotal(monSessionsB) - monLinesB),
		}
		expr := `sum by (__name__, server) ({__name__=~"coredns_dnsdiag_(sessions_total|log_lines_total|log_suppressed_total)"})`
		prom.waitFor(fmt.Sprintf("the counts of %v rounds", n), expr, 20*time.Second, func(res []promResult) bool {
			matched := 0
			for _, r := range res {
				k := strings.TrimPrefix(r.Metric["__name__"], "coredns_dnsdiag_") + " " + r.Metric["server"]
				if w, ok := want[k]; ok && r.Value == w {
					matched++
				}
			}
			return matched == len(want)
		})
	}
	monRound(t, a, b, 1)
	settled(1)
	t1 := time.Now()
	time.Sleep(2500 * time.Millisecond) // at least two scrapes between the rounds
	monRound(t, a, b, 2)
	settled(2)
	t2 := time.Now()
	// The window ends at t2 and starts after t1, when round 1 was all
	// scraped, and before round 2 began: rates over it are round 2's alone.
	window := fmt.Sprintf("%ds", int(t2.Sub(t1).Seconds()))
	if t.Failed() {
		t.FailNow()
	}

	scrape := map[string]bool{}
	for _, s := range promScrape(t, a.Addr("PROM")) {
		scrape[s.Name] = true
	}
	monCheckMetricList(t, metrics, scrape)

	all := map[string]string{"namespace": ".*", "pod": ".*", "server": ".*", "__rate_interval": window}
	eval := func(expr string, vals map[string]string) []promResult {
		t.Helper()
		return prom.mustQuery(monitoring.Substitute(expr, vals), t2)
	}
	state := func(expr string) string {
		st := monitoring.Exported
		for _, n := range monitoring.MetricNames(expr) {
			if s := metrics[n]; s == monitoring.Pending || (s == monitoring.OnEvent && st != monitoring.Pending) {
				st = s
			}
		}
		return st
	}

	// Every panel query parses, and returns data over exported metrics.
	var pending []string
	panels := map[string][]monitoring.Target{}
	for _, p := range dash.AllPanels() {
		if p.Type == "row" {
			continue
		}
		panels[p.Title] = p.Targets
		for _, tg := range p.Targets {
			res := eval(tg.Expr, all)
			switch st := state(tg.Expr); {
			case st == monitoring.Exported && len(res) == 0:
				t.Errorf("panel %q query %s returned no data: %s", p.Title, tg.RefID, monitoring.Substitute(tg.Expr, all))
			case st != monitoring.Exported:
				pending = append(pending, fmt.Sprintf("| panel %q %s | %s | %v | %d series |", p.Title, tg.RefID, st, monitoring.MetricNames(tg.Expr), len(res)))
			}
		}
	}

	// Template variables: label_values as Grafana asks for them.
	for _, v := range dash.Templating.List[1:] {
		sel, label, _ := monitoring.LabelValues(v.VariableQuery())
		var vals []string
		if err := prom.api("label/"+label+"/values", url.Values{"match[]": {monitoring.Substitute(sel, all)}}, &vals); err != nil {
			t.Fatalf("variable %s: %v", v.Name, err)
		}
		sort.Strings(vals)
		servers := []string{serverA, serverB, retxA}
		sort.Strings(servers)
		want := map[string][]string{
			"namespace": {"kube-system"},
			"pod":       {"coredns-a", "coredns-b"},
			"server":    servers,
		}[v.Name]
		if !slices.Equal(vals, want) {
			t.Errorf("variable %s: values %v, want %v", v.Name, vals, want)
		}
	}

	// Key values, over round 2 on pod a's DNS block (b's where it compares).
	podA := map[string]string{"namespace": "kube-system", "pod": "coredns-a", "server": promRegex(serverA), "__rate_interval": window}
	mains := map[string]string{"namespace": "kube-system", "pod": ".*", "server": mainServers, "__rate_interval": window}
	target := func(title, ref string) string {
		t.Helper()
		for _, tg := range panels[title] {
			if tg.RefID == ref {
				return tg.Expr
			}
		}
		t.Fatalf("no panel %q with query %s", title, ref)
		return ""
	}
	one := func(res []promResult, what string) float64 {
		t.Helper()
		if len(res) != 1 {
			t.Fatalf("%s: %d series, want 1: %v", what, len(res), res)
		}
		return res[0].Value
	}
	const exact = 0.02 // ratios of series scraped together are exact but for float rounding

	// Session rate by Status and BitMap: each series' share of the rate is
	// its share of the round's sessions.
	res := eval(target("Session rate by Status and BitMap", "A"), podA)
	sum := 0.0
	for _, r := range res {
		sum += r.Value
	}
	got := map[[2]string]float64{}
	for _, r := range res {
		got[[2]string{r.Metric["status"], r.Metric["bitmap"]}] = r.Value / sum * monTotal(monSessionsA)
	}
	for k, w := range monSessionsA {
		if !near(got[k], w, exact) {
			t.Errorf("session rate %v: %.3f of the round's sessions, want %v (all: %v)", k, got[k], w, got)
		}
	}
	if len(got) != len(monSessionsA) {
		t.Errorf("session rate series %v, want %v", got, monSessionsA)
	}

	wantRatio := monFailed(monSessionsA) / monTotal(monSessionsA)
	if f := one(eval(target("Failure ratio", "A"), podA), "failure ratio"); !near(f, wantRatio, exact) {
		t.Errorf("failure ratio %v, want %v", f, wantRatio)
	}
	internal := one(eval(target("Internal versus external failures", "A"), podA), "internal failures")
	external := one(eval(target("Internal versus external failures", "B"), podA), "external failures")
	if w := (monSessionsA[[2]string{"Failed", "1"}] + monSessionsA[[2]string{"Failed", "3"}]) /
		(monSessionsA[[2]string{"Failed", "5"}] + monSessionsA[[2]string{"Failed", "15"}]); !near(internal/external, w, exact) {
		t.Errorf("internal/external failures %v/%v, want a ratio of %v", internal, external, w)
	}
	if p99 := byLabel(eval(target("Session duration", "A"), podA), "status")["Failed"]; p99 < 1 {
		t.Errorf("p99 of Failed sessions %vs, want over 1 s (the silent upstream's)", p99)
	}

	outcomes := byLabel(eval(target("Upstream attempts by outcome", "A"), podA), "outcome")
	for o, w := range monOutcomesA {
		if !near(outcomes[o]/outcomes["NOERROR"], w/monOutcomesA["NOERROR"], exact) {
			t.Errorf("upstream attempts %s: %v against NOERROR %v, want %v:%v", o, outcomes[o], outcomes["NOERROR"], w, monOutcomesA["NOERROR"])
		}
	}
	if outcomes["no_answer"] <= 0 {
		t.Errorf("upstream attempts: no no_answer (the silent upstream): %v", outcomes)
	}
	if p99 := byLabel(eval(target("Upstream attempt duration, p99", "A"), podA), "upstream")[a.Addr("UP")]; p99 < 1 {
		t.Errorf("upstream %s p99 attempt duration %vs, want over 1 s (attempts without an answer)", a.Addr("UP"), p99)
	}

	written := one(eval(target("Lines written and suppressed", "A"), podA), "lines written")
	notLogged := byLabel(eval(target("Lines written and suppressed", "B"), podA), "reason")
	if w := monLinesA / (monTotal(monSessionsA) - monLinesA); !near(written/notLogged["policy"], w, exact) || notLogged["rate_limit"] != 0 {
		t.Errorf("lines written %v, not logged %v: want written/policy = %v, no rate_limit", written, notLogged, w)
	}
	for pod, n := range byLabel(eval(target("Sessions in flight", "A"), all), "pod") {
		if n != 0 {
			t.Errorf("pod %s: %v sessions in flight after the traffic, want 0", pod, n)
		}
	}

	// Per replica: a serves 4 times b's sessions; their failure ratios.
	rates := byLabel(eval(target("Query rate by pod", "A"), mains), "pod")
	if w := monTotal(monSessionsA) / monTotal(monSessionsB); !near(rates["coredns-a"]/rates["coredns-b"], w, 0.3) {
		t.Errorf("query rate by pod %v: want a/b near %v", rates, w)
	}
	requests := byLabel(eval(target("Query rate by pod", "B"), mains), "pod")
	for pod, r := range rates {
		if !near(requests[pod], r, exact) {
			t.Errorf("pod %s: CoreDNS's request rate %v, dnsdiag's session rate %v: want them equal", pod, requests[pod], r)
		}
	}
	ratios := byLabel(eval(target("Failure ratio by pod", "A"), mains), "pod")
	for pod, m := range map[string]map[[2]string]float64{"coredns-a": monSessionsA, "coredns-b": monSessionsB} {
		if w := monFailed(m) / monTotal(m); !near(ratios[pod], w, exact) {
			t.Errorf("failure ratio of %s %v, want %v", pod, ratios[pod], w)
		}
	}

	// Hints: round 2 replayed a query after its answer and one while it was
	// unanswered, on a's RETX block.
	hintsExpr := target("Hints by code", "A")
	hints := byLabel(eval(hintsExpr, map[string]string{"namespace": ".*", "pod": "coredns-a", "server": promRegex(retxA), "__rate_interval": window}), "code")
	if metrics["coredns_dnsdiag_hints_total"] == monitoring.Exported {
		for _, code := range []string{"retransmit_after_answer", "retransmit_unanswered"} {
			if hints[code] <= 0 {
				t.Errorf("hints %s: rate %v over round 2, which replayed one; all: %v", code, hints[code], hints)
			}
		}
	} else {
		t.Logf("hints_total is pending: the replayed retransmissions are not asserted (the test fails once the scrape has it)")
	}

	// Alerts: each expression at t2, and Prometheus's own evaluation of the
	// rules file. With this traffic these fire (in state pending: their
	// `for` has not elapsed), the others must not.
	fires := map[string][]string{
		"DnsdiagUpstreamNotAnswering": {"coredns-a " + a.Addr("UP")},
		"DnsdiagFailureRatioHigh":     {"coredns-a", "coredns-b"},
		"DnsdiagReplicaImbalance":     {"coredns-a"},
	}
	if metrics["coredns_dnsdiag_hints_total"] == monitoring.Exported {
		fires["DnsdiagAnswersLost"] = []string{"coredns-a"}
	}
	alertKey := func(m map[string]string) string {
		return strings.TrimSpace(m["pod"] + " " + m["upstream"])
	}
	for _, r := range rules.Rules() {
		res, err := prom.query(r.Expr, t2)
		if err != nil {
			t.Errorf("alert %s: %v", r.Alert, err)
			continue
		}
		var keys []string
		for _, x := range res {
			keys = append(keys, alertKey(x.Metric))
		}
		sort.Strings(keys)
		if st := state(r.Expr); st != monitoring.Exported {
			pending = append(pending, fmt.Sprintf("| alert %s | %s | %v | %d series |", r.Alert, st, monitoring.MetricNames(r.Expr), len(res)))
		}
		if want := fires[r.Alert]; !slices.Equal(keys, want) {
			t.Errorf("alert %s fires for %v, want %v", r.Alert, keys, want)
		}
	}
	monCheckPromRules(t, prom, rules, fires, alertKey)

	t.Logf("queries over metrics not exported (yet) or without series in this traffic, parsed only:\n| where | state | metrics | result |\n|---|---|---|---|\n%s", strings.Join(pending, "\n"))
}

// monCheckMetricList compares metrics.txt with a real scrape: exported names
// are there, pending ones are not (once they are, metrics.txt must say
// exported), on-event ones are named in the plugin README.
func monCheckMetricList(t *testing.T, metrics map[string]string, scrape map[string]bool) {
	t.Helper()
	readme := readFile(t, filepath.Join("..", "plugin", "dnsdiag", "README.md"))
	for name, st := range metrics {
		switch {
		case st == monitoring.Exported && !scrape[name]:
			t.Errorf("%s is marked exported in build/monitoring/%s, but ./coredns does not export it", name, monitoring.MetricsFile)
		case st == monitoring.Pending && scrape[name]:
			t.Errorf("%s is exported now: mark it exported in build/monitoring/%s, so that its panels must return data", name, monitoring.MetricsFile)
		case st == monitoring.OnEvent && !strings.Contains(readme, strings.TrimSuffix(name, "_bucket")):
			t.Errorf("%s is marked on-event, but plugin/dnsdiag/README.md does not name it", name)
		}
	}
}

// monCheckPromRules: Prometheus loaded every rule of the file, evaluates
// each without error, and holds exactly the expected alerts, pending.
func monCheckPromRules(t *testing.T, prom *promServer, rules monitoring.RuleGroups, fires map[string][]string, key func(map[string]string) string) {
	t.Helper()
	var d struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Name, Health, LastError string
				Type                    string
				Alerts                  []struct {
					Labels map[string]string
					State  string
				}
			}
		}
	}
	if err := prom.api("rules", url.Values{"type": {"alert"}}, &d); err != nil {
		t.Fatal(err)
	}
	loaded := map[string]bool{}
	for _, g := range d.Groups {
		for _, r := range g.Rules {
			loaded[r.Name] = true
			if r.Health == "err" || r.LastError != "" {
				t.Errorf("Prometheus evaluates %s with an error: %s %s", r.Name, r.Health, r.LastError)
			}
			var keys []string
			for _, a := range r.Alerts {
				keys = append(keys, key(a.Labels))
				if a.State != "pending" {
					t.Errorf("alert %s for %v is %s, want pending (its for has not elapsed)", r.Name, a.Labels, a.State)
				}
			}
			sort.Strings(keys)
			if !slices.Equal(keys, fires[r.Name]) {
				t.Errorf("Prometheus's alert %s: active for %v, want %v", r.Name, keys, fires[r.Name])
			}
		}
	}
	for _, r := range rules.Rules() {
		if !loaded[r.Alert] {
			t.Errorf("Prometheus did not load alert %s", r.Alert)
		}
	}
}

// TestMonitoringComponent renders the install overlay with the optional
// build/kubernetes/monitoring component: install's objects unchanged, plus
// the ServiceMonitor of kube-system's CoreDNS on the metrics port (:9153,
// where the Corefile's prometheus listens) and the PrometheusRule (which
// build/monitoring's tests keep equal to the rules file).
func TestMonitoringComponent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	root, err := filepath.Abs(filepath.Join("..", "build", "kubernetes"))
	if err != nil {
		t.Fatal(err)
	}
	rel := func(p string) string {
		r, err := filepath.Rel(dir, filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	overlay := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- %s\ncomponents:\n- %s\n", rel("install"), rel("monitoring"))
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(overlay), 0o644); err != nil {
		t.Fatal(err)
	}
	fromRoot, err := filepath.Rel(root, dir)
	if err != nil {
		t.Fatal(err)
	}
	with, install := k8sKustomize(t, fromRoot), k8sKustomize(t, "install")
	for key, o := range install {
		ow, _ := json.Marshal(with[key])
		oi, _ := json.Marshal(o)
		if string(ow) != string(oi) {
			t.Errorf("with the component, install's %s changes:\n%s\nvs\n%s", key, ow, oi)
		}
	}
	var added []string
	for key := range with {
		if _, ok := install[key]; !ok {
			added = append(added, key)
		}
	}
	sort.Strings(added)
	if want := []string{"PrometheusRule kube-system/dnsdiag", "ServiceMonitor kube-system/coredns-dnsdiag"}; !slices.Equal(added, want) {
		t.Errorf("the component adds %v, want %v", added, want)
	}

	var sm struct {
		Spec struct {
			Selector          struct{ MatchLabels map[string]string }
			NamespaceSelector struct{ MatchNames []string }
			Endpoints         []struct{ Port, Path string }
		}
	}
	if err := yaml.Unmarshal([]byte(readFile(t, filepath.Join(root, "monitoring", "servicemonitor.yaml"))), &sm); err != nil {
		t.Fatal(err)
	}
	var dep struct {
		Metadata struct{ Labels map[string]string }
		Spec     struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Name  string
						Ports []struct {
							Name          string
							ContainerPort int `json:"containerPort"`
						}
					}
				}
			}
		}
	}
	if err := yaml.Unmarshal([]byte(readFile(t, filepath.Join(root, "base", "deployment.yaml"))), &dep); err != nil {
		t.Fatal(err)
	}
	if sm.Spec.Selector.MatchLabels["k8s-app"] != dep.Metadata.Labels["k8s-app"] || !slices.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{"kube-system"}) ||
		len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor %+v: want kube-system's k8s-app=%s, one endpoint on /metrics", sm.Spec, dep.Metadata.Labels["k8s-app"])
	}
	port := 0
	for _, c := range dep.Spec.Template.Spec.Containers {
		for _, p := range c.Ports {
			if c.Name == "coredns" && len(sm.Spec.Endpoints) == 1 && p.Name == sm.Spec.Endpoints[0].Port {
				port = p.ContainerPort
			}
		}
	}
	if port != 9153 || !slices.Contains(k8sDirectives(k8sCorefileOf(t, with)), "    prometheus :9153") {
		t.Errorf("the ServiceMonitor's port is the container's %d, want 9153, where the Corefile's prometheus listens", port)
	}
}
