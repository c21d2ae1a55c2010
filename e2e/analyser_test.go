package e2e

import (
	binenc "encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dnsdiag/dnsdiag/plugin/dnsdiagtest"
	tap "github.com/dnstap/golang-dnstap"
	framestream "github.com/farsightsec/golang-framestream"
	"github.com/miekg/dns"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// The analyser (build/analyser) against the project's ./coredns used as a
// stock CoreDNS: a Corefile without dnsdiag, with `dnstap ... full`.

// analyserWindow is the analyser's session window in these tests: longer
// than forward's 5 s of attempts, short enough for a session that never
// gets an answer (acl drop) to end within WaitLine's 10 s.
const analyserWindow = "6s"

var (
	analyserOnce sync.Once
	analyserBin  string
	analyserErr  error
)

// analyserBinary is ./dnsdiag-analyser beside the coredns binary under
// test (`make build` writes both), built into a temporary directory when
// it is not there (`make e2e-race` builds only coredns-race).
func analyserBinary(t *testing.T) string {
	t.Helper()
	analyserOnce.Do(func() {
		analyserBin = filepath.Join(filepath.Dir(binary), "dnsdiag-analyser")
		if _, err := os.Stat(analyserBin); err == nil {
			return
		}
		dir, err := os.MkdirTemp("", "dnsdiag-e2e-analyser-")
		if err != nil {
			analyserErr = err
			return
		}
		analyserBin = filepath.Join(dir, "dnsdiag-analyser")
		out, err := exec.Command("go", "build", "-trimpath", "-o", analyserBin, "../build/analyser").CombinedOutput()
		if err != nil {
			analyserErr = fmt.Errorf("building the analyser: %v\n%s", err, out)
		}
	})
	if analyserErr != nil {
		t.Fatal(analyserErr)
	}
	return analyserBin
}

// startAnalyser runs the analyser with args plus a -listen on a free port
// and a -metrics endpoint, waits until it listens, and returns it (as a
// Server, whose output helpers read its lines) with both ports.
func startAnalyser(t *testing.T, args ...string) (s *Server, tapPort, metricsPort int) {
	t.Helper()
	bin := analyserBinary(t)
	for attempt := 0; attempt < 3; attempt++ {
		tapPort, metricsPort = freePort(t), freePort(t)
		s = newServer(t)
		s.conf = filepath.Join(s.dir, "none")
		s.start(bin, "", append([]string{"-listen", "tcp://127.0.0.1:" + strconv.Itoa(tapPort),
			"-metrics", "127.0.0.1:" + strconv.Itoa(metricsPort)}, args...)...)
		deadline := time.Now().Add(10 * time.Second)
		for s.count("analyser: listening on") < 1 && time.Now().Before(deadline) {
			select {
			case <-s.exited:
				deadline = time.Now()
			case <-time.After(10 * time.Millisecond):
			}
		}
		if s.count("analyser: listening on") >= 1 {
			t.Cleanup(s.cleanup)
			return s, tapPort, metricsPort
		}
		s.stopped = true
		s.kill()
		s.out.waitEOF(2 * time.Second)
		if !strings.Contains(strings.Join(s.out.snapshot(), "\n"), "address already in use") {
			t.Fatalf("the analyser did not start:\n%s", strings.Join(s.out.snapshot(), "\n"))
		}
	}
	t.Fatal("the analyser did not start: ports kept being taken")
	return nil, 0, 0
}

// tapLine is the dnstap directive streaming to the analyser on {{TAP}}.
const tapLine = "dnstap tcp://127.0.0.1:{{TAP}} full"

// analyserQuery is one query of a scenario and the session it must give.
type analyserQuery struct {
	proto, name string
	qtype       uint16
	timeout     time.Duration
	status      string
	bitmap      int
}

// analyserScenarios are the plugin's session scenarios (sessions_test.go):
// corefile has {{DIAG}} where dnsdiag or dnstap goes.
var analyserScenarios = []struct {
	name     string
	corefile string
	queries  []analyserQuery
}{
	{"CacheMissThenHit", forwardCorefile("{{DIAG}}", "cache 30", ""), []analyserQuery{
		{"udp", "www.ok.test", dns.TypeA, qTimeout, "Succeeded", 15},
		{"udp", "www.ok.test", dns.TypeA, qTimeout, "Succeeded", 3},
	}},
	{"NXDOMAIN", forwardCorefile("{{DIAG}}", "", ""), []analyserQuery{
		{"udp", "x.nx.test", dns.TypeA, qTimeout, "Succeeded", 15},
	}},
	{"SERVFAIL", forwardCorefile("{{DIAG}}", "", ""), []analyserQuery{
		{"udp", "x.fail.test", dns.TypeA, qTimeout, "Failed", 15},
	}},
	{"REFUSED", forwardCorefile("{{DIAG}}", "acl refused.test {\n        block\n    }", ""), []analyserQuery{
		{"udp", "x.refused.test", dns.TypeA, qTimeout, "Failed", 3},
	}},
	{"SilentUpstream", silentCorefile("{{DIAG}}"), []analyserQuery{
		{"udp", "silent.test", dns.TypeA, 10 * time.Second, "Failed", 5},
		{"udp", "silent.test", dns.TypeA, qTimeout, "Failed", 3},
	}},
	{"ACLDrop", forwardCorefile("{{DIAG}}", "acl drop.test {\n        drop\n    }", ""), []analyserQuery{
		{"udp", "x.drop.test", dns.TypeA, 700 * time.Millisecond, "Failed", 1},
	}},
	{"DeadFirstUpstream", `
.:{{PORT}} {
    bind 127.0.0.1
    {{DIAG}}
    forward . 127.0.0.1:{{DEAD}} 127.0.0.1:{{UP}} {
        policy sequential
    }
}
` + richUpstream, []analyserQuery{
		{"udp", "www.ok.test", dns.TypeA, 8 * time.Second, "Succeeded", 15},
	}},
	{"TCP", forwardCorefile("{{DIAG}}", "", ""), []analyserQuery{
		{"tcp", "t.ok.test", dns.TypeA, qTimeout, "Succeeded", 15},
	}},
	{"Truncated", forwardCorefile("{{DIAG}}", "", "prefer_udp"), []analyserQuery{
		{"udp", "b.big.test", dns.TypeTXT, qTimeout, "Succeeded", 15},
		{"tcp", "b.big.test", dns.TypeTXT, qTimeout, "Succeeded", 15},
	}},
}

// TestAnalyserSameSessions runs each scenario twice, once with dnsdiag in
// the Corefile and once with only dnstap streaming to the analyser, and
// wants the same Status and BitMap for each query from both.
func TestAnalyserSameSessions(t *testing.T) {
	t.Parallel()
	for _, sc := range analyserScenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			got := map[string][]string{}
			var wg sync.WaitGroup
			for _, mode := range []string{"plugin", "analyser"} {
				wg.Go(func() {
					res := runAnalyserScenario(t, mode, sc.corefile, sc.queries)
					mu.Lock()
					got[mode] = res
					mu.Unlock()
				})
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			if strings.Join(got["plugin"], " ") != strings.Join(got["analyser"], " ") {
				t.Errorf("plugin %v, analyser %v: want the same sessions", got["plugin"], got["analyser"])
			}
		})
	}
}

// runAnalyserScenario starts the scenario in mode and returns "Status/BitMap"
// of each query's session, after checking each against what it must be.
func runAnalyserScenario(t *testing.T, mode, corefile string, queries []analyserQuery) []string {
	var lines *Server
	var ports map[string]int
	diag := logAllUnlimited
	if mode == "analyser" {
		var tapPort int
		lines, tapPort, _ = startAnalyser(t, "-log", "all", "-rate", "0", "-window", analyserWindow)
		ports = map[string]int{"TAP": tapPort}
		diag = tapLine
	}
	s := Start(t, strings.ReplaceAll(corefile, "{{DIAG}}", diag), ports)
	if lines == nil {
		lines = s
	} else {
		waitTapConnected(t, lines)
	}
	var res []string
	for _, q := range queries {
		r := Query(t, q.proto, s.Addr("PORT"), q.name, q.qtype, q.timeout)
		l := lines.WaitClient(r)
		got := fmt.Sprintf("%s/%d", l.Status, l.BitMap)
		if want := fmt.Sprintf("%s/%d", q.status, q.bitmap); got != want {
			t.Errorf("%s: %s %s: got %s, want %s\nline: %s", mode, q.proto, q.name, got, want, l.Raw)
		}
		if mode == "analyser" && l.Client != r.Local {
			t.Errorf("analyser: Client %q, want %q", l.Client, r.Local)
		}
		res = append(res, got)
	}
	return res
}

// waitTapConnected waits until coredns's dnstap has connected: CoreDNS
// connects at startup, and what it taps before is not sent.
func waitTapConnected(t *testing.T, a *Server, ports ...int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if a.count("analyser: connection from") >= max(1, len(ports)) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("coredns's dnstap did not connect to the analyser; output:\n%s", a.tail(40))
}

// Two hundred distinct queries at once: each gets a session of its own,
// none is paired with another's legs, and the metrics count them all.
func TestAnalyserConcurrentDistinct(t *testing.T) {
	t.Parallel()
	a, tapPort, metricsPort := startAnalyser(t, "-log", "all", "-rate", "0", "-window", analyserWindow)
	s := Start(t, forwardCorefile(tapLine, "", ""), map[string]int{"TAP": tapPort})
	waitTapConnected(t, a)
	const n = 200
	results := Concurrently(n, 20, func(i int) Result {
		return Query(t, "udp", s.Addr("PORT"), fmt.Sprintf("q%d.ok.test", i), dns.TypeA, qTimeout)
	})
	for i, r := range results {
		mustAnswerA(t, r, "192.0.2.1")
		l := a.WaitClient(r)
		if l.Status != "Succeeded" || l.BitMap != 15 || len(l.Upstreams) != 1 || l.Count(fq) != 1 || l.Count(fr) != 1 {
			t.Errorf("query %d: want one Succeeded 15 session with one attempt: %s", i, l.Raw)
		}
		if strings.Contains(l.Raw, `"Ambiguous"`) {
			t.Errorf("query %d: distinct queries are never ambiguous: %s", i, l.Raw)
		}
		for _, m := range l.Messages {
			var h struct{ QNAME string }
			if err := json.Unmarshal(m.Message, &h); err != nil || h.QNAME != r.Query.Question[0].Name {
				t.Errorf("query %d: leg %s of another question: %s", i, m.Type, m.Message)
			}
		}
	}
	if got := len(a.LinesWhere(func(l Line) bool { return !l.Background })); got != n {
		t.Errorf("%d client session lines, want %d", got, n)
	}
	addr := "127.0.0.1:" + strconv.Itoa(metricsPort)
	if v := k8sMetric(t, addr, "coredns_dnsdiag_sessions_total", map[string]string{"status": "Succeeded", "bitmap": "15"}); v != n {
		t.Errorf("coredns_dnsdiag_sessions_total{Succeeded,15} = %v, want %d", v, n)
	}
	if v := k8sMetric(t, addr, "coredns_dnsdiag_analyser_frames_total", nil); v < 4*n {
		t.Errorf("coredns_dnsdiag_analyser_frames_total = %v, want at least %d", v, 4*n)
	}
}

// Two CoreDNS processes stream to one analyser at once; each one's
// sessions carry its dnstap identity and are kept apart.
func TestAnalyserTwoSenders(t *testing.T) {
	t.Parallel()
	a, tapPort, _ := startAnalyser(t, "-log", "all", "-rate", "0", "-window", analyserWindow)
	tapBlock := func(id string) string {
		return "dnstap tcp://127.0.0.1:{{TAP}} full {\n        identity " + id + "\n    }"
	}
	one := Start(t, forwardCorefile(tapBlock("one"), "", ""), map[string]int{"TAP": tapPort})
	two := Start(t, forwardCorefile(tapBlock("two"), "", ""), map[string]int{"TAP": tapPort})
	waitTapConnected(t, a, 1, 2)
	const n = 50
	results := Concurrently(2*n, 10, func(i int) Result {
		s := one
		if i%2 == 1 {
			s = two
		}
		// The same names from both: only the sender tells them apart.
		return Query(t, "udp", s.Addr("PORT"), fmt.Sprintf("s%d.ok.test", i/2), dns.TypeA, qTimeout)
	})
	for i, r := range results {
		mustAnswerA(t, r, "192.0.2.1")
		want := []string{"one", "two"}[i%2]
		l := a.WaitClient(r)
		if l.Server != want || l.Status != "Succeeded" || l.BitMap != 15 || len(l.Upstreams) != 1 {
			t.Errorf("query %d: want a Succeeded 15 session from %q: %s", i, want, l.Raw)
		}
	}
}

// The analyser with -log-format json, as CoreDNS's own -log-format json
// (logformat_test.go): every line it writes is a record of CoreDNS's JSON
// log format, and each session exactly one INFO record "session" of plugin
// dnsdiag whose "session" member is the session line as a JSON object,
// with the Status and BitMap the text line would have.
func TestAnalyserLogFormatJSON(t *testing.T) {
	t.Parallel()
	a, tapPort, _ := startAnalyser(t, "-log-format", "json", "-log", "all", "-rate", "0", "-window", analyserWindow)
	s := Start(t, forwardCorefile(tapLine, "cache 30", ""), map[string]int{"TAP": tapPort})
	waitTapConnected(t, a)
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	queries := []struct {
		name           string
		rcode          int
		status, rcodes string
		bitmap         int
	}{
		{"j.ok.test", dns.RcodeSuccess, "Succeeded", "NOERROR", 15}, // cache miss
		{"j.ok.test", dns.RcodeSuccess, "Succeeded", "NOERROR", 3},  // cache hit
		{"j.nx.test", dns.RcodeNameError, "Succeeded", "NXDOMAIN", 15},
		{"j.fail.test", dns.RcodeServerFailure, "Failed", "SERVFAIL", 15},
	}
	var results []Result
	for _, q := range queries {
		r := Query(t, "udp", s.Addr("PORT"), q.name, dns.TypeA, qTimeout)
		r.MustAnswer(t, q.rcode)
		results = append(results, r)
		rec := waitRecord(t, a, "session record of "+q.name+" from "+r.Local, lineTimeout, func(rec jsonRecord) bool {
			return rec.Session != nil && isClient(*rec.Session, r)
		})
		l := rec.Session
		if rec.Level != "INFO" || rec.Msg != "session" || l.Status != q.status || l.BitMap != q.bitmap ||
			l.RcodeString() != q.rcodes || l.Server != host || l.Protocol != "udp" {
			t.Errorf("%s: want an INFO \"session\" record, %s/%d %s from server %q: %s", q.name, q.status, q.bitmap, q.rcodes, host, rec.raw)
		}
		var plain map[string]any
		if err := json.Unmarshal([]byte(rec.raw), &plain); err != nil {
			t.Fatal(err)
		}
		if sess, ok := plain["session"].(map[string]any); !ok || sess["Status"] != q.status || sess["BitMap"] != float64(q.bitmap) {
			t.Errorf(`%s: "session" is not the session as a JSON object: %s`, q.name, rec.raw)
		}
	}

	// One record per session, and no text line.
	recs := jsonRecords(t, a)
	sessions := 0
	for _, rec := range recs {
		if rec.Session != nil {
			sessions++
		}
	}
	for i, r := range results {
		n := 0
		for _, rec := range recs {
			if rec.Session != nil && isClient(*rec.Session, r) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("query %d (%s): %d session records, want 1", i, queries[i].name, n)
		}
	}
	if sessions != len(queries) {
		t.Errorf("%d session records, want %d", sessions, len(queries))
	}
	for _, o := range a.Output() {
		if strings.Contains(o, dnsdiagtest.LinePrefix) {
			t.Errorf("a text line in JSON mode: %s", o)
		}
	}
}

// A sender that breaks off inside a frame: the frame is counted as
// truncated, the session it left open ends as SampleLoss, and the
// analyser serves on.
func TestAnalyserSenderDisconnectsMidFrame(t *testing.T) {
	t.Parallel()
	a, tapPort, metricsPort := startAnalyser(t, "-log", "all", "-rate", "0")
	conn, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(tapPort))
	if err != nil {
		t.Fatal(err)
	}
	enc, err := framestream.NewEncoder(conn, &framestream.EncoderOptions{ContentType: []byte("protobuf:dnstap.Dnstap"), Bidirectional: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	q := new(dns.Msg)
	q.SetQuestion("cut.test.", dns.TypeA)
	q.Id = 4242
	frame := tapFrame(t, tap.Message_CLIENT_QUERY, q, "127.0.0.9", 5353)
	if _, err := enc.Write(frame); err != nil {
		t.Fatal(err)
	}
	if err := enc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Half of a second frame, then the connection is gone.
	var hdr [4]byte
	binenc.BigEndian.PutUint32(hdr[:], uint32(len(frame)))
	conn.Write(append(hdr[:], frame[:len(frame)/2]...))
	conn.Close()

	l := a.WaitLine("for the cut-off session", func(l Line) bool { return l.QName == "cut.test." })
	if l.Status != "SampleLoss" || l.BitMap != 1 || l.Client != "127.0.0.9:5353" {
		t.Errorf("want a SampleLoss session with BitMap 1 from 127.0.0.9:5353: %s", l.Raw)
	}
	addr := "127.0.0.1:" + strconv.Itoa(metricsPort)
	k8sWaitMetric(t, addr, "coredns_dnsdiag_analyser_frames_undecodable_total", map[string]string{"reason": "truncated"}, 1)
	if v := k8sMetric(t, addr, "coredns_dnsdiag_analyser_connections", nil); v != 0 {
		t.Errorf("coredns_dnsdiag_analyser_connections = %v after the sender left, want 0", v)
	}
	// It serves on: a real sender's sessions still come through.
	s := Start(t, forwardCorefile(tapLine, "", ""), map[string]int{"TAP": tapPort})
	waitTapConnected(t, a, 1, 2)
	r := Query(t, "udp", s.Addr("PORT"), "after.ok.test", dns.TypeA, qTimeout)
	if l := a.WaitClient(r); l.Status != "Succeeded" || l.BitMap != 15 {
		t.Errorf("after the cut: want Succeeded 15: %s", l.Raw)
	}
}

// tapFrame is a dnstap frame of type typ carrying m, as from client addr:port.
func tapFrame(t testing.TB, typ tap.Message_Type, m *dns.Msg, addr string, port uint32) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	sec, nsec := uint64(now.Unix()), uint32(now.Nanosecond())
	msg := &tap.Message{Type: &typ, SocketFamily: tap.SocketFamily_INET.Enum(), SocketProtocol: tap.SocketProtocol_UDP.Enum(),
		QueryAddress: net.ParseIP(addr).To4(), QueryPort: &port, QueryTimeSec: &sec, QueryTimeNsec: &nsec}
	if typ == tap.Message_CLIENT_QUERY || typ == tap.Message_FORWARDER_QUERY {
		msg.QueryMessage = b
	} else {
		msg.ResponseMessage, msg.ResponseTimeSec, msg.ResponseTimeNsec = b, &sec, &nsec
	}
	dt := tap.Dnstap_MESSAGE
	f, err := proto.Marshal(&tap.Dnstap{Type: &dt, Identity: []byte("raw"), Message: msg})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// analyserRender renders build/kubernetes/dir as generic objects by kind
// and namespace/name, for the fields k8sObject does not have.
func analyserRender(t *testing.T, dir string) map[string]map[string]any {
	t.Helper()
	out, err := exec.Command("kubectl", "kustomize", filepath.Join("..", "build", "kubernetes", dir)).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v", dir, err)
	}
	objs := map[string]map[string]any{}
	for _, doc := range strings.Split(string(out), "\n---\n") {
		var o struct {
			Kind     string
			Metadata struct{ Name, Namespace string }
		}
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatal(err)
		}
		objs[o.Kind+" "+o.Metadata.Namespace+"/"+o.Metadata.Name] = m
	}
	return objs
}

const analyserTapLine = "    dnstap tcp://dnstap-analyser.kube-system.svc.cluster.local:6000 full"

// TestAnalyserK8sManifests renders build/kubernetes/analyser: deploy is
// the analyser's Deployment and Service dnstap-analyser on 6000; install
// is base with only the dnstap line added after ready (the image is
// stock); uninstall is base again. Then the rendered Corefile, run by
// ./coredns as a stock CoreDNS, streams to the analyser started with the
// Deployment's own arguments, which counts the cluster's sessions.
func TestAnalyserK8sManifests(t *testing.T) {
	t.Parallel()
	deploy := analyserRender(t, "analyser/deploy")
	dk, sk := "Deployment kube-system/dnstap-analyser", "Service kube-system/dnstap-analyser"
	if len(deploy) != 2 || deploy[dk] == nil || deploy[sk] == nil {
		t.Fatalf("analyser/deploy renders %v, want %s and %s", slicesKeys(deploy), dk, sk)
	}
	var svc struct {
		Spec struct {
			Ports []struct{ Port, TargetPort int }
		}
	}
	var dep struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Image         string
						Command, Args []string
					}
				}
			}
		}
	}
	remarshal(t, deploy[sk], &svc)
	remarshal(t, deploy[dk], &dep)
	if len(svc.Spec.Ports) == 0 || svc.Spec.Ports[0].Port != 6000 || svc.Spec.Ports[0].TargetPort != 6000 {
		t.Errorf("Service dnstap-analyser ports %+v, want 6000 first", svc.Spec.Ports)
	}
	cs := dep.Spec.Template.Spec.Containers
	if len(cs) != 1 || strings.Join(cs[0].Command, " ") != "/dnsdiag-analyser" || cs[0].Image != k8sDnsdiagImage {
		t.Fatalf("analyser container %+v: want /dnsdiag-analyser from %s", cs, k8sDnsdiagImage)
	}

	base, install, uninstall := k8sKustomize(t, "base"), k8sKustomize(t, "analyser/install"), k8sKustomize(t, "analyser/uninstall")
	if img, _ := k8sImageOf(t, install); img != k8sUpstreamImage {
		t.Errorf("analyser/install runs %s, want the stock image %s", img, k8sUpstreamImage)
	}
	b, i := k8sDirectives(k8sCorefileOf(t, base)), k8sDirectives(k8sCorefileOf(t, install))
	at := slices.Index(i, analyserTapLine)
	if at < 1 || i[at-1] != "    ready" || !slices.Equal(slices.Delete(slices.Clone(i), at, at+1), b) {
		t.Errorf("analyser/install's Corefile is not base's plus the dnstap line after ready:\n%s", strings.Join(i, "\n"))
	}
	for key, o := range base {
		ob, _ := json.Marshal(o)
		ou, _ := json.Marshal(uninstall[key])
		if string(ob) != string(ou) || len(uninstall) != len(base) {
			t.Errorf("analyser/uninstall's %s differs from base's", key)
		}
	}

	// The Deployment's arguments, with its addresses moved to loopback.
	var args []string
	for j := 0; j < len(cs[0].Args); j++ {
		if a := cs[0].Args[j]; a == "-listen" || a == "-metrics" {
			j++
			continue
		}
		args = append(args, cs[0].Args[j])
	}
	a, tapPort, metricsPort := startAnalyser(t, args...)
	corefile := strings.Replace(k8sCorefileOf(t, install), "dnstap-analyser.kube-system.svc.cluster.local:6000", "127.0.0.1:"+strconv.Itoa(tapPort), 1)
	api, up := newK8sAPI(t), newK8sUpstream(t)
	s := Start(t, k8sCorefile(t, corefile, api.URL, up.Addr), nil)
	waitTapConnected(t, a)
	k8sWaitHTTP(t, "http://"+s.Addr("READY")+"/ready", "OK")
	k8sWantAnswers(t, Query(t, "udp", s.Addr("P53"), "kubernetes.default.svc.cluster.local", dns.TypeA, k8sTimeout), dns.RcodeSuccess, k8sAPIIP)
	k8sWaitMetric(t, "127.0.0.1:"+strconv.Itoa(metricsPort), "coredns_dnsdiag_sessions_total", map[string]string{"status": "Succeeded", "bitmap": "3"}, 1)
}

func remarshal(t *testing.T, from, to any) {
	t.Helper()
	b, err := json.Marshal(from)
	if err == nil {
		err = json.Unmarshal(b, to)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func slicesKeys(m map[string]map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// A sender that floods beyond what the analyser pairs: it is never made to
// wait (every frame is read), what does not fit the queue is shed and
// counted, the sessions that were open then end as SampleLoss, open
// sessions stay under the cap, and memory stays bounded.
func TestAnalyserFlood(t *testing.T) {
	t.Parallel()
	const frames, maxSessions = 60_000, 2000
	a, tapPort, metricsPort := startAnalyser(t, "-log", "none", "-queue", "64", "-max-sessions", strconv.Itoa(maxSessions), "-window", "2s")
	conn, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(tapPort))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	enc, err := framestream.NewEncoder(conn, &framestream.EncoderOptions{ContentType: []byte("protobuf:dnstap.Dnstap"), Bidirectional: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	q := new(dns.Msg)
	for i := range frames {
		q.SetQuestion(fmt.Sprintf("f%d.flood.test.", i), dns.TypeA)
		q.Id = uint16(i)
		if _, err := enc.Write(tapFrame(t, tap.Message_CLIENT_QUERY, q, "127.0.0.9", uint32(1024+i%60000))); err != nil {
			t.Fatalf("frame %d: the analyser stopped reading: %v", i, err)
		}
	}
	if err := enc.Flush(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	addr := "127.0.0.1:" + strconv.Itoa(metricsPort)
	k8sWaitMetric(t, addr, "coredns_dnsdiag_analyser_frames_total", nil, frames)
	shed := k8sMetric(t, addr, "coredns_dnsdiag_analyser_frames_shed_total", nil)
	capped := k8sMetric(t, addr, "coredns_dnsdiag_analyser_sessions_dropped_total", map[string]string{"reason": "session_cap"})
	t.Logf("%d frames sent in %v; shed %v, beyond the session cap %v", frames, took, shed, capped)
	if shed+capped == 0 {
		t.Errorf("a flood of %d frames with a queue of 64 and a cap of %d: nothing shed or capped", frames, maxSessions)
	}
	if open := k8sMetric(t, addr, "coredns_dnsdiag_analyser_open_sessions", nil); open > maxSessions {
		t.Errorf("%v sessions open, over the cap %d", open, maxSessions)
	}
	if rss := analyserRSS(t, a); rss > 200<<20 {
		t.Errorf("analyser RSS %d MiB under the flood, want under 200", rss>>20)
	}
	conn.Close()
	k8sWaitMetric(t, addr, "coredns_dnsdiag_sessions_total", map[string]string{"status": "SampleLoss"}, 1)
}

// analyserRSS is the analyser process's resident set, from /proc.
func analyserRSS(t *testing.T, a *Server) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", a.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
