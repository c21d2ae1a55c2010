package hints

import (
	"slices"
	"strconv"
	"testing"

	"github.com/miekg/dns"
)

// kubelet's search list for a pod in namespace default, plus a node suffix.
var searchList = []string{"default.svc.cluster.local.", "svc.cluster.local.", "cluster.local.", "node.internal."}

// walkRun replays a getaddrinfo walk like the one in clients.md (glibc with
// single-request-reopen: a new port and new IDs per query): every candidate
// NXDOMAIN, then the final pair. It returns the hints of the final A and
// AAAA.
func walkRun(t *testing.T, d *Detector, from string, base string, final string, aaaaAnswers int) (a, aaaa []Hint) {
	t.Helper()
	id, port, start := uint64(1), 49942, 0.868
	next := func(n string, qt uint16) *Session {
		s := q{id: id, from: from + ":" + strconv.Itoa(port), dnsID: uint16(17560 + id), name: n, qtype: qt, start: start}.session()
		id, port, start = id+1, port+1, start+0.0001
		d.Begin(s)
		return s
	}
	for _, sfx := range searchList {
		cand := base + "." + sfx
		if cand == final {
			break
		}
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
			s := next(cand, qt)
			if hs := observe(t, d, answered(s, start, dns.RcodeNameError, 0)); len(hs) != 0 {
				t.Fatalf("candidate %s: hints %v", cand, codes(hs))
			}
		}
	}
	sa, saaaa := next(final, dns.TypeA), next(final, dns.TypeAAAA)
	return observe(t, d, answered(sa, start+0.01, dns.RcodeSuccess, 1)), observe(t, d, answered(saaaa, start+0.01, dns.RcodeSuccess, aaaaAnswers))
}

func TestSearchExternal(t *testing.T) {
	d, _ := newDetector(t, Config{})
	a, aaaa := walkRun(t, d, "10.0.0.1", "www.example.com", "www.example.com.", 0)
	wantCodes(t, "final A", a, SearchExpansion)
	wantCodes(t, "final AAAA (NODATA)", aaaa)
	h := a[0]
	want := []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local", "node.internal"}
	if h.Count != 8 || !slices.Equal(h.Suffixes, want) {
		t.Errorf("count %d suffixes %q, want 8 %q", h.Count, h.Suffixes, want)
	}
}

// When both halves of the final pair have answers, the walk is counted
// once, by whichever ends first.
func TestSearchCountedOnce(t *testing.T) {
	d, _ := newDetector(t, Config{})
	a, aaaa := walkRun(t, d, "10.0.0.1", "www.example.com", "www.example.com.", 1)
	wantCodes(t, "final A", a, SearchExpansion)
	wantCodes(t, "final AAAA", aaaa)
}

// A Service of another namespace by its short name: web.other is tried in
// default.svc.cluster.local first, then answers in svc.cluster.local.
func TestSearchInternal(t *testing.T) {
	d, _ := newDetector(t, Config{})
	a, _ := walkRun(t, d, "10.0.0.1", "web.other", "web.other.svc.cluster.local.", 0)
	wantCodes(t, "final A", a, SearchExpansion)
	if h := a[0]; h.Count != 2 || !slices.Equal(h.Suffixes, []string{"default.svc.cluster.local"}) {
		t.Errorf("count %d suffixes %q, want 2 [default.svc.cluster.local]", h.Count, h.Suffixes)
	}
}

func TestSearchNotFired(t *testing.T) {
	neg := func(d *Detector, id uint64, from, n string, start float64) {
		s := q{id: id, from: from, dnsID: uint16(id), name: n, qtype: dns.TypeA, start: start}.session()
		d.Begin(s)
		d.Observe(answered(s, start+0.001, dns.RcodeNameError, 0), nil)
	}
	final := func(t *testing.T, d *Detector, rcode, answers int) []Hint {
		s := q{id: 99, from: "10.0.0.1:50056", dnsID: 99, name: "www.example.com.", qtype: dns.TypeA, start: 3}.session()
		d.Begin(s)
		return observe(t, d, answered(s, 3.01, rcode, answers))
	}
	cases := []struct {
		what          string
		from, cand    string
		start         float64
		rcode, answer int
	}{
		{"candidates of another client", "10.0.0.2:4000", "www.example.com.cluster.local.", 2.5, dns.RcodeSuccess, 1},
		{"candidates older than the window", "10.0.0.1:4000", "www.example.com.cluster.local.", 0.9, dns.RcodeSuccess, 1},
		{"another name", "10.0.0.1:4000", "www.example.org.cluster.local.", 2.5, dns.RcodeSuccess, 1},
		{"same first label only", "10.0.0.1:4000", "www.other.com.", 2.5, dns.RcodeSuccess, 1},
		{"a longer label", "10.0.0.1:4000", "www.example.community.", 2.5, dns.RcodeSuccess, 1},
		{"walk ends in NXDOMAIN", "10.0.0.1:4000", "www.example.com.cluster.local.", 2.5, dns.RcodeNameError, 0},
		{"walk ends in NODATA", "10.0.0.1:4000", "www.example.com.cluster.local.", 2.5, dns.RcodeSuccess, 0},
		{"walk ends in SERVFAIL", "10.0.0.1:4000", "www.example.com.cluster.local.", 2.5, dns.RcodeServerFailure, 0},
		{"candidate after the answer", "10.0.0.1:4000", "www.example.com.cluster.local.", 3.001, dns.RcodeSuccess, 1},
	}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			d, _ := newDetector(t, Config{})
			neg(d, 1, c.from, c.cand, c.start)
			wantCodes(t, c.what, final(t, d, c.rcode, c.answer))
		})
	}
}

func TestSearchSuffix(t *testing.T) {
	cases := []struct {
		cand, final, suffix string
		ok                  bool
	}{
		{"www.example.com.default.svc.cluster.local.", "www.example.com.", "default.svc.cluster.local", true},
		{"www.example.com.node.internal", "www.example.com", "node.internal", true},
		{"WWW.Example.com.cluster.local.", "www.example.COM.", "cluster.local", true},
		{"web.other.default.svc.cluster.local.", "web.other.svc.cluster.local.", "default.svc.cluster.local", true},
		{"kubernetes.default.default.svc.cluster.local.", "kubernetes.default.svc.cluster.local.", "default.svc.cluster.local", true},
		{"a.a.b.c.", "a.b.c.", "a.b.c", true},
		{"www.example.com.", "www.example.com.", "", false},
		{"www.example.community.", "www.example.com.", "", false},
		{"www.example.com.", "www.example.com.cluster.local.", "", false},
		{"web.default.svc.cluster.local.", "web.dev.svc.cluster.local.", "", false},
		{"www.google.com.cluster.local.", "www.example.com.", "", false},
		{"a.b.", "a.b.c.", "", false},
		{"x.", ".", "", false},
		{"", "", "", false},
	}
	for _, c := range cases {
		suffix, ok := searchSuffix(c.cand, c.final)
		if ok != c.ok || suffix != c.suffix {
			t.Errorf("searchSuffix(%q, %q) = %q, %v; want %q, %v", c.cand, c.final, suffix, ok, c.suffix, c.ok)
		}
	}
}
