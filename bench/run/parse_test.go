package main

import (
	"strings"
	"testing"

	tap "github.com/dnstap/golang-dnstap"
	"github.com/miekg/dns"
	"google.golang.org/protobuf/proto"
)

// A `pprof -top` output as the bench reads it: header lines, then rows
// whose name may contain spaces.
const topSample = `File: dnsdiag.test
Type: alloc_objects
Showing nodes accounting for 6767, 97.07% of 6971 total
Dropped 124 nodes (cum <= 34)
      flat  flat%   sum%        cum   cum%
      4402 63.15% 63.15%       6603 94.72%  github.com/dnsdiag/dnsdiag/plugin/dnsdiag.benchFixed.ServeDNS
      2201 31.57% 94.72%       2201 31.57%  github.com/miekg/dns.(*Msg).SetReply (inline)
        47  0.67% 95.40%         47  0.67%  strings.genSplit
`

func TestParseTop(t *testing.T) {
	sites := parseTop([]byte(topSample), 2000)
	// 47/2000 per op is under the 0.05 floor: dropped as setup.
	if len(sites) != 2 {
		t.Fatalf("got %d sites, want 2: %+v", len(sites), sites)
	}
	if s := sites[1]; s.Func != "github.com/miekg/dns.(*Msg).SetReply (inline)" || s.PerOp < 1.1 || s.PerOp > 1.11 {
		t.Errorf("second site = %+v, want SetReply (inline) at 1.1005 per op", s)
	}
}

func TestParseProfileTop(t *testing.T) {
	rows := parseProfileTop([]byte(topSample))
	if len(rows) != 3 {
		t.Fatalf("got %d rows, want 3 (the header lines are not rows): %+v", len(rows), rows)
	}
	if r := rows[0]; r.Flat != 63.15 || r.Cum != 94.72 {
		t.Errorf("first row = %+v, want flat 63.15%%, cum 94.72%%", r)
	}
}

func TestParseBench(t *testing.T) {
	out := []byte(`goos: linux
BenchmarkCacheHit/plain          1000000   734 ns/op   488 B/op   9 allocs/op
BenchmarkCacheHit/plain          1000000   750 ns/op   488 B/op   9 allocs/op
BenchmarkCacheHit/plain          1000000   724 ns/op   488 B/op   9 allocs/op
BenchmarkCacheHit/dnsdiag        1000000  1407 ns/op   584 B/op  11 allocs/op
PASS
`)
	got := parseBench(out)
	if len(got) != 2 || got[0].Name != "CacheHit/plain" || got[1].Name != "CacheHit/dnsdiag" {
		t.Fatalf("benchmarks = %+v, want CacheHit/plain then CacheHit/dnsdiag", got)
	}
	if p := got[0]; p.NsOp != 734 || p.MinNsOp != 724 || p.MaxNsOp != 750 || p.Runs != 3 || p.AllocsOp != 9 {
		t.Errorf("plain = %+v, want median 734 of 3 runs (724–750), 9 allocs", p)
	}
}

// What the analyser's /metrics holds, as the bench reads it.
const metricsSample = `# HELP coredns_dnsdiag_sessions_total Client sessions by Status and BitMap (CQ=1, CR=2, FQ=4, FR=8).
# TYPE coredns_dnsdiag_sessions_total counter
coredns_dnsdiag_sessions_total{bitmap="15",server="dnstap",status="Succeeded"} 1200
coredns_dnsdiag_sessions_total{bitmap="3",server="dnstap",status="Succeeded"} 3.5e+06
coredns_dnsdiag_sessions_total{bitmap="1",server="dnstap",status="SampleLoss"} 7
coredns_dnsdiag_sessions_total_extra{status="Succeeded"} 99
coredns_dnsdiag_analyser_frames_total 7.0012e+06
coredns_dnsdiag_analyser_frames_shed_total 0 1700000000000
coredns_dnsdiag_analyser_sessions_dropped_total{reason="a \"quoted\" } reason"} 2
`

func TestPromSum(t *testing.T) {
	text := []byte(metricsSample)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"coredns_dnsdiag_sessions_total", nil, 3_501_207},
		{"coredns_dnsdiag_sessions_total", map[string]string{"status": "SampleLoss"}, 7},
		{"coredns_dnsdiag_sessions_total", map[string]string{"status": "Succeeded", "bitmap": "15"}, 1200},
		{"coredns_dnsdiag_sessions_total", map[string]string{"status": "Failed"}, 0},
		{"coredns_dnsdiag_analyser_frames_total", nil, 7_001_200},
		{"coredns_dnsdiag_analyser_frames_shed_total", nil, 0},
		{"coredns_dnsdiag_analyser_sessions_dropped_total", map[string]string{"reason": `a \"quoted\" } reason`}, 2},
		{"coredns_dnsdiag_analyser_unpaired_total", nil, 0},
	} {
		if got := promSum(text, c.name, c.labels); got != c.want {
			t.Errorf("promSum(%s, %v) = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func TestAnalyserSelected(t *testing.T) {
	names := func(vs []analyserVariant) (out []string) {
		for _, v := range vs {
			out = append(out, v.Name)
		}
		return out
	}
	all := "cache forward cache/logall replay replay/logall"
	for sel, want := range map[string]string{"1": all, "": all, "0": "",
		"forward": "forward", "cache/logall,cache": "cache cache/logall", "nosuch": ""} {
		if got := strings.Join(names(analyserSelected(sel)), " "); got != want {
			t.Errorf("ANALYSER=%q runs %q, want %q", sel, got, want)
		}
	}
}

// The replayed frames, with a session's port and id written in, are the
// dnstap messages CoreDNS would send for it.
func TestReplayFrames(t *testing.T) {
	tpl, err := replayTemplates([]string{"n01.bench.test", "n02.bench.test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 5, 4*65535 + 3} {
		port, id := replaySession(i)
		pair := &tpl[i/replayPorts%len(tpl)]
		for k, typ := range []tap.Message_Type{tap.Message_CLIENT_QUERY, tap.Message_CLIENT_RESPONSE} {
			var d tap.Dnstap
			if err := proto.Unmarshal(pair[k].fill(port, id), &d); err != nil {
				t.Fatalf("session %d frame %d: %v", i, k, err)
			}
			m := d.GetMessage()
			wire := m.GetQueryMessage()
			if k == 1 {
				wire = m.GetResponseMessage()
			}
			var msg dns.Msg
			if err := msg.Unpack(wire); err != nil {
				t.Fatalf("session %d frame %d: %v", i, k, err)
			}
			if m.GetType() != typ || m.GetQueryPort() != port || msg.Id != id || msg.Question[0].Name != []string{"n01.bench.test.", "n02.bench.test."}[i/replayPorts%2] ||
				msg.Response != (k == 1) {
				t.Errorf("session %d frame %d: %v port %d id %d %v, want %v port %d id %d", i, k, m.GetType(), m.GetQueryPort(), msg.Id, msg.Question, typ, port, id)
			}
		}
	}
	if p, id := replaySession(4*65536 + 1); p != replayPortBase+1 || id != 0 {
		t.Errorf("session 4*65536+1: port %d id %d, want the second port's id 0 again", p, id)
	}
}
