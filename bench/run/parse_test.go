package main

import "testing"

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
