package e2e

// Kubernetes without a cluster: the real binary runs every Corefile of
// corefile-examples/, rewritten only for ports, bind and a reachable API and
// upstream; the kubernetes plugin lists and watches a small fake API server
// (k8sAPI); the upstream is a DNS server in this process (k8sUpstream). The
// manifests of build/kubernetes are rendered with `kubectl kustomize`.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"
)

// ---------------------------------------------------------------------------
// A fake kube-apiserver

// The cluster k8sAPI serves.
const (
	k8sSvcIP      = "10.96.12.34" // web.shop
	k8sKubeDNSIP  = "10.96.0.10"  // kube-dns.kube-system
	k8sAPIIP      = "10.96.0.1"   // kubernetes.default
	k8sUpstreamIP = "192.0.2.53"  // what k8sUpstream answers for any A
)

var k8sPodIPs = []string{"10.244.1.5", "10.244.2.7"} // db.shop, headless

// k8sAPI answers the list and watch calls the kubernetes plugin makes:
// Namespaces, Services, EndpointSlices (and Pods, empty). A watch sends the
// initial events when asked for them (client-go's watch-list), then stays
// open with nothing more to say until the client or the test goes away.
type k8sAPI struct {
	URL  string
	srv  *httptest.Server
	done chan struct{}

	mu    sync.Mutex
	calls map[string]int // "list /api/v1/services", "watch-list ...", "watch ..."
}

const k8sResourceVersion = "100"

// A query's timeout, and the legs of an internal answer and of a forwarded one.
const k8sTimeout = 3 * time.Second

var (
	k8sLegs3  = []string{"CLIENT_QUERY", "CLIENT_RESPONSE"}
	k8sLegs15 = []string{"CLIENT_QUERY", "FORWARDER_QUERY", "FORWARDER_RESPONSE", "CLIENT_RESPONSE"}
)

func newK8sAPI(t *testing.T) *k8sAPI {
	t.Helper()
	a := &k8sAPI{done: make(chan struct{}), calls: map[string]int{}}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	a.URL = a.srv.URL
	t.Cleanup(func() {
		close(a.done) // ends the watches still open, so Close does not wait on them
		a.srv.CloseClientConnections()
		a.srv.Close()
	})
	return a
}

// read is how many times the collection at path was listed, either way.
func (a *k8sAPI) read(path string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls["list "+path] + a.calls["watch-list "+path]
}

func k8sMeta(ns, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: "10", UID: types.UID("uid-" + ns + "-" + name)}
}

// k8sObjects is every object of a collection, each with its kind set (watch
// events need it), and the list's kind.
func k8sObjects(path string) (items []any, listKind, kind, apiVersion string, ok bool) {
	tm := func(kind, v string) metav1.TypeMeta { return metav1.TypeMeta{Kind: kind, APIVersion: v} }
	switch path {
	case "/api/v1/namespaces":
		for _, n := range []string{"default", "kube-system", "shop"} {
			items = append(items, corev1.Namespace{TypeMeta: tm("Namespace", "v1"), ObjectMeta: k8sMeta("", n)})
		}
		return items, "NamespaceList", "Namespace", "v1", true
	case "/api/v1/services":
		svc := func(ns, name, ip string, ports ...corev1.ServicePort) corev1.Service {
			return corev1.Service{TypeMeta: tm("Service", "v1"), ObjectMeta: k8sMeta(ns, name), Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeClusterIP, ClusterIP: ip, ClusterIPs: []string{ip}, Ports: ports,
			}}
		}
		port := func(name string, proto corev1.Protocol, p int32) corev1.ServicePort {
			return corev1.ServicePort{Name: name, Protocol: proto, Port: p}
		}
		items = append(items,
			svc("default", "kubernetes", k8sAPIIP, port("https", corev1.ProtocolTCP, 443)),
			svc("kube-system", "kube-dns", k8sKubeDNSIP, port("dns", corev1.ProtocolUDP, 53), port("dns-tcp", corev1.ProtocolTCP, 53), port("metrics", corev1.ProtocolTCP, 9153)),
			svc("shop", "web", k8sSvcIP, port("http", corev1.ProtocolTCP, 80)),
			svc("shop", "db", corev1.ClusterIPNone, port("postgres", corev1.ProtocolTCP, 5432)),
		)
		return items, "ServiceList", "Service", "v1", true
	case "/apis/discovery.k8s.io/v1/endpointslices":
		ready := true
		name, proto, p := "postgres", corev1.ProtocolTCP, int32(5432)
		es := discoveryv1.EndpointSlice{
			TypeMeta:    tm("EndpointSlice", "discovery.k8s.io/v1"),
			ObjectMeta:  k8sMeta("shop", "db-x7k2p"),
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: &name, Protocol: &proto, Port: &p}},
		}
		es.Labels = map[string]string{discoveryv1.LabelServiceName: "db", discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}
		for i, ip := range k8sPodIPs {
			host := fmt.Sprintf("db-%d", i)
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
				Addresses: []string{ip}, Hostname: &host, Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			})
		}
		return []any{es}, "EndpointSliceList", "EndpointSlice", "discovery.k8s.io/v1", true
	case "/api/v1/pods":
		return nil, "PodList", "Pod", "v1", true
	}
	return nil, "", "", "", false
}

func (a *k8sAPI) serve(w http.ResponseWriter, r *http.Request) {
	items, listKind, kind, apiVersion, ok := k8sObjects(r.URL.Path)
	q := r.URL.Query()
	watching := q.Get("watch") == "true" || q.Get("watch") == "1"
	call := "list"
	switch {
	case watching && q.Get("sendInitialEvents") == "true":
		call = "watch-list"
	case watching:
		call = "watch"
	}
	a.mu.Lock()
	a.calls[call+" "+r.URL.Path]++
	a.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	if r.Method != http.MethodGet || !ok {
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
			Status: metav1.StatusFailure, Reason: metav1.StatusReasonNotFound, Code: http.StatusNotFound,
			Message: r.Method + " " + r.URL.Path + ": not served by the test's API"})
		return
	}
	if !watching {
		if items == nil {
			items = []any{}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"kind": listKind, "apiVersion": apiVersion,
			"metadata": map[string]string{"resourceVersion": k8sResourceVersion},
			"items":    items,
		})
		return
	}

	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	event := func(typ string, obj any) {
		_ = enc.Encode(map[string]any{"type": typ, "object": obj})
	}
	if call == "watch-list" {
		for _, it := range items {
			event("ADDED", it)
		}
		event("BOOKMARK", map[string]any{
			"kind": kind, "apiVersion": apiVersion,
			"metadata": map[string]any{
				"resourceVersion": k8sResourceVersion,
				"annotations":     map[string]string{metav1.InitialEventsAnnotationKey: "true"},
			},
		})
	}
	if flusher != nil {
		flusher.Flush()
	}
	select {
	case <-r.Context().Done():
	case <-a.done:
	}
}

// ---------------------------------------------------------------------------
// An upstream resolver

// k8sUpstream stands for /etc/resolv.conf's resolver (or, for NodeLocal
// DNSCache, kube-dns), over UDP and TCP on one port:
//
//	servfail.*   SERVFAIL
//	nx.*         NXDOMAIN
//	any A        192.0.2.53, TTL 60
//	anything else NOERROR, no answer
type k8sUpstream struct {
	Addr string

	mu      sync.Mutex
	queries []string // "proto qname qtype"
}

func newK8sUpstream(t *testing.T) *k8sUpstream {
	t.Helper()
	u := &k8sUpstream{}
	var pc net.PacketConn
	var ln net.Listener
	for range 20 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
		var err error
		if pc, err = net.ListenPacket("udp", addr); err != nil {
			continue
		}
		if ln, err = net.Listen("tcp", addr); err != nil {
			pc.Close()
			continue
		}
		u.Addr = addr
		break
	}
	if u.Addr == "" {
		t.Fatal("no port for the upstream")
	}
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: u}, {Listener: ln, Handler: u}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() { _ = s.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = s.Shutdown() })
	}
	return u
}

func (u *k8sUpstream) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	if len(r.Question) == 1 {
		q := r.Question[0]
		name := strings.ToLower(q.Name)
		u.mu.Lock()
		u.queries = append(u.queries, w.RemoteAddr().Network()+" "+name+" "+dns.TypeToString[q.Qtype])
		u.mu.Unlock()
		switch {
		case strings.HasPrefix(name, "servfail."):
			m.Rcode = dns.RcodeServerFailure
		case strings.HasPrefix(name, "nx."):
			m.Rcode = dns.RcodeNameError
		case q.Qtype == dns.TypeA:
			rr, _ := dns.NewRR(q.Name + " 60 IN A " + k8sUpstreamIP)
			m.Answer = append(m.Answer, rr)
		}
	}
	_ = w.WriteMsg(m)
}

// asked reports the queries for qname the upstream got, "proto qname qtype".
func (u *k8sUpstream) asked(qname string) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for _, q := range u.queries {
		if strings.Fields(q)[1] == qname {
			out = append(out, q)
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// Rewriting a Corefile for the test

// k8sCorefile rewrites an example Corefile to run here, and nothing else:
//   - each server block's port P becomes the placeholder {{P<P>}} (53 where
//     none is given), and it binds 127.0.0.1 only;
//   - health, ready and prometheus listen on 127.0.0.1:{{HEALTH}},
//     {{READY}} and {{METRICS}};
//   - forward goes to the same process where it named one of its own ports
//     on 127.0.0.1, and to upstream otherwise (/etc/resolv.conf, cluster IPs);
//   - kubernetes gets `endpoint apiURL`.
func k8sCorefile(t *testing.T, text, apiURL, upstream string) string {
	t.Helper()
	lines := strings.Split(text, "\n")

	// Pass 1: the ports the server blocks listen on.
	own := map[string]bool{}
	depth := 0
	for _, l := range lines {
		code := k8sCode(l)
		if depth == 0 && strings.TrimSpace(code) != "" {
			for _, key := range strings.Fields(strings.TrimSuffix(strings.TrimSpace(code), "{")) {
				own[k8sKeyPort(key)] = true
			}
		}
		depth += strings.Count(code, "{") - strings.Count(code, "}")
	}

	// Pass 2: rewrite.
	var out []string
	depth = 0
	for _, l := range lines {
		code := k8sCode(l)
		trimmed := strings.TrimSpace(code)
		fields := strings.Fields(trimmed)
		indent := l[:len(l)-len(strings.TrimLeft(l, " \t"))]
		block := ""
		if strings.HasSuffix(trimmed, "{") {
			block = " {"
		}
		switch {
		case depth == 0 && trimmed != "":
			var keys []string
			for _, key := range strings.Fields(strings.TrimSuffix(trimmed, "{")) {
				p := k8sKeyPort(key)
				zone := strings.TrimPrefix(key, "dns://")
				if i := strings.LastIndex(zone, ":"); i >= 0 {
					zone = zone[:i]
				}
				keys = append(keys, zone+":{{P"+p+"}}")
			}
			out = append(out, strings.Join(keys, " ")+" {", "    bind 127.0.0.1")
		case depth == 1 && len(fields) > 0 && fields[0] == "bind":
			// replaced by the bind 127.0.0.1 above
		case depth == 1 && len(fields) > 0 && (fields[0] == "health" || fields[0] == "ready" || fields[0] == "prometheus"):
			name := map[string]string{"health": "HEALTH", "ready": "READY", "prometheus": "METRICS"}[fields[0]]
			out = append(out, indent+fields[0]+" 127.0.0.1:{{"+name+"}}"+block)
		case depth == 1 && len(fields) > 2 && fields[0] == "forward":
			to := []string{}
			for _, f := range fields[2:] {
				if f == "{" {
					break
				}
				host, port, err := net.SplitHostPort(f)
				var dest string
				if err == nil && host == "127.0.0.1" && own[port] {
					dest = "127.0.0.1:{{P" + port + "}}"
				} else {
					dest = upstream
				}
				if !slices.Contains(to, dest) {
					to = append(to, dest)
				}
			}
			out = append(out, indent+"forward "+fields[1]+" "+strings.Join(to, " ")+block)
		case depth == 1 && len(fields) > 0 && fields[0] == "kubernetes":
			if block == "" {
				out = append(out, l+" {", indent+"    endpoint "+apiURL, indent+"}")
			} else {
				out = append(out, l, indent+"    endpoint "+apiURL)
			}
		default:
			out = append(out, l)
		}
		depth += strings.Count(code, "{") - strings.Count(code, "}")
	}
	if depth != 0 {
		t.Fatalf("unbalanced braces in the Corefile")
	}
	return strings.Join(out, "\n")
}

// k8sCode is a Corefile line without its comment and quoted strings.
func k8sCode(l string) string {
	var b strings.Builder
	quoted := false
	for _, c := range l {
		switch {
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '#':
			return b.String()
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// k8sKeyPort is the port of a server block key: "53" for ".", "cluster.local".
func k8sKeyPort(key string) string {
	key = strings.TrimPrefix(key, "dns://")
	if i := strings.LastIndex(key, ":"); i >= 0 {
		return key[i+1:]
	}
	return "53"
}

// ---------------------------------------------------------------------------
// Running an example

type k8sExample struct {
	*Server
	api  *k8sAPI
	up   *k8sUpstream
	text string // the Corefile as run
}

func k8sReadExample(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "corefile-examples", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// startK8sExample runs corefile-examples/name against a fresh fake API and
// upstream, and waits until it serves, and is healthy and ready where the
// Corefile has health and ready.
func startK8sExample(t *testing.T, name string) *k8sExample {
	t.Helper()
	e := &k8sExample{api: newK8sAPI(t), up: newK8sUpstream(t)}
	e.text = k8sCorefile(t, k8sReadExample(t, name), e.api.URL, e.up.Addr)
	e.Server = Start(t, e.text, nil)
	if strings.Contains(e.text, "{{HEALTH}}") {
		k8sWaitHTTP(t, "http://"+e.Addr("HEALTH")+"/health", "OK")
	}
	if strings.Contains(e.text, "{{READY}}") {
		k8sWaitHTTP(t, "http://"+e.Addr("READY")+"/ready", "OK")
	}
	if regexp.MustCompile(`(?m)^\s*kubernetes\s`).MatchString(e.text) {
		// The plugin synced before the server started: no "waiting for" or
		// "unsynced" warnings, and it read every collection it needs.
		for _, l := range e.Output() {
			if strings.Contains(l, "unsynced Kubernetes API") || strings.Contains(l, "Failed to watch") || strings.Contains(l, "Failed to list") {
				t.Errorf("kubernetes plugin: %s", l)
			}
		}
		for _, p := range []string{"/api/v1/namespaces", "/api/v1/services", "/apis/discovery.k8s.io/v1/endpointslices"} {
			if e.api.read(p) == 0 {
				t.Errorf("the kubernetes plugin never read %s", p)
			}
		}
	}
	return e
}

// k8sWaitHTTP polls url for up to 15 s until it answers 200 with body.
func k8sWaitHTTP(t *testing.T, url, body string) {
	t.Helper()
	var last string
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(b)) == body {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("GET %s: %s, want 200 %s", url, last, body)
}

// k8sMetric sums the samples of the metric name whose labels include want.
func k8sMetric(t *testing.T, addr, name string, want map[string]string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0.0
	re := regexp.MustCompile(`(\w+)="([^"]*)"`)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		labels := map[string]string{}
		if i := strings.Index(line, "{"); i >= 0 {
			for _, m := range re.FindAllStringSubmatch(line[i:strings.LastIndex(line, "}")], -1) {
				labels[m[1]] = m[2]
			}
		}
		match := true
		for k, v := range want {
			match = match && labels[k] == v
		}
		if match {
			v, err := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			sum += v
		}
	}
	return sum
}

// k8sWaitMetric waits up to 10 s until the metric reaches at least n.
func k8sWaitMetric(t *testing.T, addr, name string, labels map[string]string, n float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v := k8sMetric(t, addr, name, labels)
		if v >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v, want >= %v", name, labels, v, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func k8sAnswers(t *testing.T, m *dns.Msg) []string {
	t.Helper()
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.PTR:
			out = append(out, rr.Ptr)
		case *dns.SRV:
			out = append(out, fmt.Sprintf("%d %s", rr.Port, rr.Target))
		default:
			out = append(out, rr.String())
		}
	}
	slices.Sort(out)
	return out
}

func k8sWantAnswers(t *testing.T, r Result, rcode int, want ...string) {
	t.Helper()
	got := k8sAnswers(t, r.MustAnswer(t, rcode))
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("%s: answers %v, want %v", r.Query.Question[0].Name, got, want)
	}
}

// ---------------------------------------------------------------------------
// Tests

// TestK8sExamplesStart starts the binary on every Corefile in
// corefile-examples/ and checks that it comes up: it serves, is healthy and
// ready where asked, and answers on every server block.
func TestK8sExamplesStart(t *testing.T) {
	t.Parallel()
	paths, err := filepath.Glob(filepath.Join("..", "corefile-examples", "*.Corefile"))
	if err != nil || len(paths) < 4 {
		t.Fatalf("corefile-examples: %v %v", paths, err)
	}
	for _, path := range paths {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := startK8sExample(t, name)
			if !strings.Contains(e.text, "dnsdiag") {
				t.Errorf("%s has no dnsdiag", name)
			}
			for _, p := range placeholder.FindAllStringSubmatch(e.text, -1) {
				if !strings.HasPrefix(p[1], "P") {
					continue
				}
				r := Query(t, "udp", e.Addr(p[1]), "www.example.org", dns.TypeA, k8sTimeout)
				if r.Err != nil || r.Msg == nil {
					t.Errorf("no answer on %s: %v", e.Addr(p[1]), r.Err)
				}
			}
			if strings.Contains(e.text, "{{METRICS}}") {
				if k8sMetric(t, e.Addr("METRICS"), "coredns_dnsdiag_inflight_sessions", nil) < 0 {
					t.Error("negative in-flight sessions")
				}
				resp, err := http.Get("http://" + e.Addr("METRICS") + "/metrics")
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !strings.Contains(string(b), "coredns_dnsdiag_sessions_total{") {
					t.Error("no coredns_dnsdiag_sessions_total on the metrics endpoint")
				}
			}
		})
	}
}

// TestK8sKubeSystem runs the kube-system Corefile: cluster names are
// answered by the kubernetes plugin from the fake API (BitMap 3), other
// names by the upstream (BitMap 15), and failures are logged.
func TestK8sKubeSystem(t *testing.T) {
	t.Parallel()
	e := startK8sExample(t, "kube-system.Corefile")
	dnsAddr, metrics, server := e.Addr("P53"), e.Addr("METRICS"), e.ServerLabel("P53")
	sessions := "coredns_dnsdiag_sessions_total"

	// Internal: a ClusterIP Service, a headless one (from its
	// EndpointSlice), an SRV record, a reverse lookup, and a name the
	// cluster does not have. None reaches the upstream.
	k8sWantAnswers(t, Query(t, "udp", dnsAddr, "web.shop.svc.cluster.local", dns.TypeA, k8sTimeout), dns.RcodeSuccess, k8sSvcIP)
	k8sWantAnswers(t, Query(t, "tcp", dnsAddr, "kube-dns.kube-system.svc.cluster.local", dns.TypeA, k8sTimeout), dns.RcodeSuccess, k8sKubeDNSIP)
	k8sWantAnswers(t, Query(t, "udp", dnsAddr, "db.shop.svc.cluster.local", dns.TypeA, k8sTimeout), dns.RcodeSuccess, k8sPodIPs...)
	k8sWantAnswers(t, Query(t, "udp", dnsAddr, "_http._tcp.web.shop.svc.cluster.local", dns.TypeSRV, k8sTimeout), dns.RcodeSuccess, "80 web.shop.svc.cluster.local.")
	k8sWantAnswers(t, Query(t, "udp", dnsAddr, "34.12.96.10.in-addr.arpa", dns.TypePTR, k8sTimeout), dns.RcodeSuccess, "web.shop.svc.cluster.local.")
	Query(t, "udp", dnsAddr, "nosuch.shop.svc.cluster.local", dns.TypeA, k8sTimeout).MustAnswer(t, dns.RcodeNameError)
	k8sWaitMetric(t, metrics, sessions, map[string]string{"server": server, "status": "Succeeded", "bitmap": "3"}, 6)
	for _, n := range []string{"web.shop.svc.cluster.local.", "db.shop.svc.cluster.local.", "nosuch.shop.svc.cluster.local."} {
		if q := e.up.asked(n); len(q) > 0 {
			t.Errorf("%s went upstream: %v", n, q)
		}
	}

	// External: forwarded to the upstream, then a cache hit.
	k8sWantAnswers(t, Query(t, "udp", dnsAddr, "www.example.org", dns.TypeA, k8sTimeout), dns.RcodeSuccess, k8sUpstreamIP)
	k8sWaitMetric(t, metrics, sessions, map[string]string{"server": server, "status": "Succeeded", "bitmap": "15"}, 1)
	k8sWantAnswers(t, Query(t, "udp", dnsAddr, "www.example.org", dns.TypeA, k8sTimeout), dns.RcodeSuccess, k8sUpstreamIP)
	k8sWaitMetric(t, metrics, sessions, map[string]string{"server": server, "status": "Succeeded", "bitmap": "3"}, 7)
	if q := e.up.asked("www.example.org."); len(q) != 1 {
		t.Errorf("upstream asked %v, want once (then the cache)", q)
	}
	k8sWaitMetric(t, metrics, "coredns_dnsdiag_upstream_attempts_total", map[string]string{"server": server, "upstream": e.up.Addr, "outcome": "NOERROR"}, 1)

	// A bare dnsdiag logs only what did not succeed: none of the above...
	for _, l := range e.Lines() {
		if !l.Background && l.Status == "Succeeded" && strings.HasSuffix(l.QName, "example.org.") {
			t.Errorf("a Succeeded session was logged: %s", l.Raw)
		}
	}
	// ...and this one, which the upstream fails.
	r := Query(t, "udp", dnsAddr, "servfail.example.org", dns.TypeA, k8sTimeout)
	r.MustAnswer(t, dns.RcodeServerFailure)
	l := e.WaitClient(r)
	check(t, l, want{Status: "Failed", BitMap: 15, Rcode: "SERVFAIL", Server: server, Protocol: "udp",
		QName: "servfail.example.org.", QType: "A", Upstreams: -1})
	if len(l.Upstreams) == 0 || l.Upstreams[0].Address != e.up.Addr {
		t.Errorf("upstream attempts %+v, want %s", l.Upstreams, e.up.Addr)
	}
	checkClientLegs(t, l, r)

	// While troubleshooting: `dnsdiag { log all }`, picked up by a reload
	// (the reload plugin does it in a pod; SIGUSR1 here, at once). The
	// kubernetes plugin starts again on the fake API, and every session
	// shows: the Service name BitMap 3, a new external name 15.
	e.WriteCorefile(strings.Replace(e.text, "    dnsdiag\n", "    dnsdiag {\n        log all\n    }\n", 1))
	e.Reload()
	svc := Query(t, "udp", dnsAddr, "web.shop.svc.cluster.local", dns.TypeA, k8sTimeout)
	k8sWantAnswers(t, svc, dns.RcodeSuccess, k8sSvcIP)
	check(t, e.WaitClient(svc), want{Status: "Succeeded", BitMap: 3, Rcode: "NOERROR", Server: server,
		QName: "web.shop.svc.cluster.local.", QType: "A", Types: k8sLegs3, Upstreams: 0})
	ext := Query(t, "tcp", dnsAddr, "api.example.com", dns.TypeA, k8sTimeout)
	k8sWantAnswers(t, ext, dns.RcodeSuccess, k8sUpstreamIP)
	le := e.WaitClient(ext)
	check(t, le, want{Status: "Succeeded", BitMap: 15, Rcode: "NOERROR", Server: server, Protocol: "tcp",
		QName: "api.example.com.", QType: "A", Types: k8sLegs15, Upstreams: 1})
	checkClientLegs(t, le, ext)
	if le.Upstreams[0].Address != e.up.Addr {
		t.Errorf("upstream %s, want %s", le.Upstreams[0].Address, e.up.Addr)
	}
}

// TestK8sLogPolicy runs the log-policy Corefile: cluster names only logged
// when they fail (or are slow, or sampled), every other session logged.
func TestK8sLogPolicy(t *testing.T) {
	t.Parallel()
	e := startK8sExample(t, "log-policy.Corefile")
	dnsAddr := e.Addr("P53")

	svc := Query(t, "udp", dnsAddr, "web.shop.svc.cluster.local", dns.TypeA, k8sTimeout)
	k8sWantAnswers(t, svc, dns.RcodeSuccess, k8sSvcIP)
	ext := Query(t, "udp", dnsAddr, "www.example.org", dns.TypeA, k8sTimeout)
	k8sWantAnswers(t, ext, dns.RcodeSuccess, k8sUpstreamIP)
	hit := Query(t, "udp", dnsAddr, "www.example.org", dns.TypeA, k8sTimeout)
	k8sWantAnswers(t, hit, dns.RcodeSuccess, k8sUpstreamIP)
	fail := Query(t, "udp", dnsAddr, "servfail.example.org", dns.TypeA, k8sTimeout)
	fail.MustAnswer(t, dns.RcodeServerFailure)
	// A cluster name that fails: the fake API has no such Service, and the
	// reverse zone falls through to the upstream, which fails it.
	rev := Query(t, "udp", dnsAddr, "servfail.in-addr.arpa", dns.TypePTR, k8sTimeout)
	rev.MustAnswer(t, dns.RcodeServerFailure)

	check(t, e.WaitClient(ext), want{Status: "Succeeded", BitMap: 15, Rcode: "NOERROR", QName: "www.example.org.", Types: k8sLegs15, Upstreams: 1})
	check(t, e.WaitClient(hit), want{Status: "Succeeded", BitMap: 3, Rcode: "NOERROR", QName: "www.example.org.", Types: k8sLegs3, Upstreams: 0})
	check(t, e.WaitClient(fail), want{Status: "Failed", BitMap: 15, Rcode: "SERVFAIL", Upstreams: 1})
	lr := e.WaitClient(rev)
	check(t, lr, want{Status: "Failed", BitMap: 15, Rcode: "SERVFAIL", QName: "servfail.in-addr.arpa.", Upstreams: 1})
	// messages header: the cluster block's lines carry headers, not answers.
	for _, m := range lr.Messages {
		if strings.Contains(string(m.Message), "answerRRs") || strings.Contains(string(m.Message), "authorityRRs") {
			t.Errorf("messages header, yet %s carries records: %s", m.Type, m.Message)
		}
	}

	// The Succeeded cluster name counts in the metrics but is not logged.
	k8sWaitMetric(t, e.Addr("METRICS"), "coredns_dnsdiag_sessions_total",
		map[string]string{"status": "Succeeded", "bitmap": "3"}, 2)
	k8sWaitMetric(t, e.Addr("METRICS"), "coredns_dnsdiag_log_suppressed_total", map[string]string{"reason": "policy"}, 1)
	for _, l := range e.Lines() {
		if isClient(l, svc) {
			t.Errorf("log failed, yet a Succeeded cluster session was logged: %s", l.Raw)
		}
	}
}

// TestK8sNodeLocalDNS runs the NodeLocal DNSCache Corefile: cluster names
// go to kube-dns over TCP (force_tcp), then come from the cache.
func TestK8sNodeLocalDNS(t *testing.T) {
	t.Parallel()
	e := startK8sExample(t, "nodelocaldns.Corefile")
	dnsAddr, metrics := e.Addr("P53"), e.Addr("METRICS")

	name := "web.shop.svc.cluster.local."
	k8sWantAnswers(t, Query(t, "udp", dnsAddr, name, dns.TypeA, k8sTimeout), dns.RcodeSuccess, k8sUpstreamIP)
	k8sWantAnswers(t, Query(t, "udp", dnsAddr, name, dns.TypeA, k8sTimeout), dns.RcodeSuccess, k8sUpstreamIP)
	if q := e.up.asked(name); len(q) != 1 || !strings.HasPrefix(q[0], "tcp ") {
		t.Errorf("kube-dns asked %v, want once over tcp", q)
	}
	k8sWaitMetric(t, metrics, "coredns_dnsdiag_sessions_total", map[string]string{"status": "Succeeded", "bitmap": "15"}, 1)
	k8sWaitMetric(t, metrics, "coredns_dnsdiag_sessions_total", map[string]string{"status": "Succeeded", "bitmap": "3"}, 1)

	r := Query(t, "udp", dnsAddr, "servfail.shop.svc.cluster.local", dns.TypeA, k8sTimeout)
	r.MustAnswer(t, dns.RcodeServerFailure)
	l := e.WaitClient(r)
	check(t, l, want{Status: "Failed", BitMap: 15, Rcode: "SERVFAIL", Upstreams: 1})
	if l.Upstreams[0].Protocol != "tcp" {
		t.Errorf("upstream protocol %s, want tcp (force_tcp): %s", l.Upstreams[0].Protocol, l.Raw)
	}

	// Other names go to the node's resolver.
	k8sWantAnswers(t, Query(t, "udp", dnsAddr, "www.example.org", dns.TypeA, k8sTimeout), dns.RcodeSuccess, k8sUpstreamIP)
	if q := e.up.asked("www.example.org."); len(q) != 1 || !strings.HasPrefix(q[0], "udp ") {
		t.Errorf("the node's resolver asked %v, want once over udp", q)
	}
}

// TestK8sCorefileRewrite pins what the test changes in an example.
func TestK8sCorefileRewrite(t *testing.T) {
	in := `# c { }
.:53 {
    bind 10.0.0.1
    health {
       lameduck 5s
    }
    ready
    template IN A x { answer "{{ .Name }} 60 IN A 1.2.3.4" }
    kubernetes cluster.local
    prometheus :9153
    forward . /etc/resolv.conf 10.0.0.2 127.0.0.1:1054 {
       max_concurrent 1000
    }
}
demo:1054 in-addr.arpa {
    forward . 127.0.0.1:1054
}
`
	want := `# c { }
.:{{P53}} {
    bind 127.0.0.1
    health 127.0.0.1:{{HEALTH}} {
       lameduck 5s
    }
    ready 127.0.0.1:{{READY}}
    template IN A x { answer "{{ .Name }} 60 IN A 1.2.3.4" }
    kubernetes cluster.local {
        endpoint http://api
    }
    prometheus 127.0.0.1:{{METRICS}}
    forward . UP 127.0.0.1:{{P1054}} {
       max_concurrent 1000
    }
}
demo:{{P1054}} in-addr.arpa:{{P53}} {
    bind 127.0.0.1
    forward . 127.0.0.1:{{P1054}}
}
`
	if got := k8sCorefile(t, in, "http://api", "UP"); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// ---------------------------------------------------------------------------
// The manifests

type k8sObject struct {
	Kind     string
	Metadata struct {
		Name      string
		Namespace string
	}
	Data map[string]string
	Spec struct {
		Template struct {
			Spec struct {
				Containers []struct {
					Name            string
					Image           string
					ImagePullPolicy string `json:"imagePullPolicy"`
					Args            []string
				}
			}
		}
	}
}

// k8sKustomize renders build/kubernetes/dir with `kubectl kustomize`.
func k8sKustomize(t *testing.T, dir string) map[string]k8sObject {
	t.Helper()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatal("needs kubectl on PATH to render the kustomizations (kubectl kustomize)")
	}
	cmd := exec.Command(kubectl, "kustomize", filepath.Join("..", "build", "kubernetes", dir))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, stderr.String())
	}
	objs := map[string]k8sObject{}
	for _, doc := range strings.Split(string(out), "\n---\n") {
		var o k8sObject
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("%s: %v\n%s", dir, err, doc)
		}
		key := o.Kind + " " + o.Metadata.Namespace + "/" + o.Metadata.Name
		if _, dup := objs[key]; dup {
			t.Fatalf("%s renders %s twice", dir, key)
		}
		objs[key] = o
	}
	return objs
}

const (
	k8sDeployment = "Deployment kube-system/coredns"
	k8sConfigMap  = "ConfigMap kube-system/coredns"
)

func k8sCorefileOf(t *testing.T, objs map[string]k8sObject) string {
	t.Helper()
	cm, ok := objs[k8sConfigMap]
	if !ok || cm.Data["Corefile"] == "" {
		t.Fatalf("no %s with a Corefile", k8sConfigMap)
	}
	return cm.Data["Corefile"]
}

func k8sImageOf(t *testing.T, objs map[string]k8sObject) (image, policy string) {
	t.Helper()
	d, ok := objs[k8sDeployment]
	if !ok {
		t.Fatalf("no %s", k8sDeployment)
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == "coredns" {
			if !slices.Equal(c.Args, []string{"-conf", "/etc/coredns/Corefile"}) {
				t.Errorf("coredns args %v", c.Args)
			}
			return c.Image, c.ImagePullPolicy
		}
	}
	t.Fatalf("%s has no coredns container", k8sDeployment)
	return "", ""
}

// k8sDirectives is a Corefile's lines without comments and blank lines.
func k8sDirectives(corefile string) []string {
	var out []string
	for _, l := range strings.Split(corefile, "\n") {
		if c := strings.TrimRight(k8sCode(l), " \t"); strings.TrimSpace(c) != "" {
			out = append(out, c)
		}
	}
	return out
}

const (
	k8sDnsdiagImage  = "dnsdiag/coredns:dev" // the Makefile's IMAGE
	k8sUpstreamImage = "registry.k8s.io/coredns/coredns:v1.12.1"
)

// TestK8sManifests renders the overlays: base is the cluster as it is,
// image swaps only the image, install adds the directive too, and uninstall
// is the cluster as it was. Each step changes exactly one thing.
func TestK8sManifests(t *testing.T) {
	t.Parallel()
	base, image, install, uninstall := k8sKustomize(t, "base"), k8sKustomize(t, "image"), k8sKustomize(t, "install"), k8sKustomize(t, "uninstall")

	for name, c := range map[string]struct {
		objs    map[string]k8sObject
		image   string
		dnsdiag bool
	}{
		"base":      {base, k8sUpstreamImage, false},
		"image":     {image, k8sDnsdiagImage, false},
		"install":   {install, k8sDnsdiagImage, true},
		"uninstall": {uninstall, k8sUpstreamImage, false},
	} {
		img, policy := k8sImageOf(t, c.objs)
		if img != c.image || policy != "IfNotPresent" {
			t.Errorf("%s: image %s (%s), want %s (IfNotPresent)", name, img, policy, c.image)
		}
		has := slices.Contains(k8sDirectives(k8sCorefileOf(t, c.objs)), "    dnsdiag")
		if has != c.dnsdiag {
			t.Errorf("%s: dnsdiag in the Corefile: %v, want %v", name, has, c.dnsdiag)
		}
		if len(c.objs) != len(base) {
			t.Errorf("%s renders %d objects, base %d", name, len(c.objs), len(base))
		}
	}

	// install's Corefile is the base one plus the one dnsdiag line, and it is
	// corefile-examples/kube-system.Corefile.
	b, i := k8sDirectives(k8sCorefileOf(t, base)), k8sDirectives(k8sCorefileOf(t, install))
	at := slices.Index(i, "    dnsdiag")
	if at < 0 || !slices.Equal(slices.Delete(slices.Clone(i), at, at+1), b) {
		t.Errorf("install's Corefile is not base's plus `dnsdiag`:\n%s\nvs\n%s", strings.Join(i, "\n"), strings.Join(b, "\n"))
	}
	if ex := k8sReadExample(t, "kube-system.Corefile"); k8sCorefileOf(t, install) != ex {
		t.Errorf("install's Corefile differs from corefile-examples/kube-system.Corefile:\n%s\nvs\n%s", k8sCorefileOf(t, install), ex)
	}
	if k8sCorefileOf(t, image) != k8sCorefileOf(t, base) || k8sCorefileOf(t, uninstall) != k8sCorefileOf(t, base) {
		t.Error("image and uninstall must keep the base Corefile")
	}
	// uninstall is the cluster as it was, whole.
	for key, o := range base {
		ob, _ := json.Marshal(o)
		ou, _ := json.Marshal(uninstall[key])
		if string(ob) != string(ou) {
			t.Errorf("uninstall's %s differs from base's", key)
		}
	}
}

// TestK8sInstallCorefileRuns runs the Corefile the install overlay renders,
// as the ConfigMap has it: the binary starts on it and serves the cluster.
func TestK8sInstallCorefileRuns(t *testing.T) {
	t.Parallel()
	corefile := k8sCorefileOf(t, k8sKustomize(t, "install"))
	api, up := newK8sAPI(t), newK8sUpstream(t)
	s := Start(t, k8sCorefile(t, corefile, api.URL, up.Addr), nil)
	k8sWaitHTTP(t, "http://"+s.Addr("READY")+"/ready", "OK")
	k8sWantAnswers(t, Query(t, "udp", s.Addr("P53"), "kubernetes.default.svc.cluster.local", dns.TypeA, k8sTimeout), dns.RcodeSuccess, k8sAPIIP)
	k8sWaitMetric(t, s.Addr("METRICS"), "coredns_dnsdiag_sessions_total", map[string]string{"status": "Succeeded", "bitmap": "3"}, 1)
}
