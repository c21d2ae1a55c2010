package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// microResult is the Go microbenchmarks of plugin/dnsdiag/bench_test.go.
type microResult struct {
	Benchmarks []microBench
	Profiles   []allocProfile
	ProfileOps int // operations each profiled benchmark ran
	Raw        string
}

// microBench is one benchmark's medians over MICROCOUNT runs.
type microBench struct {
	Name                string
	NsOp, BOp, AllocsOp float64
	Runs                int
	MinNsOp, MaxNsOp    float64
}

// allocProfile attributes the extra allocations of a dnsdiag variant over
// its plain chain: pprof -sample_index=alloc_objects -diff_base, per op.
type allocProfile struct {
	Bench, Base, With string
	Sites             []allocSite
	Error             string
}

type allocSite struct {
	Func  string
	PerOp float64
}

// profiled are the (plain, dnsdiag) pairs whose allocations are attributed.
var profiled = []struct{ bench, base, with string }{
	{"InternalAnswer", "plain", "dnsdiag"},
	{"CacheHit", "plain", "dnsdiag"},
	{"Forwarded", "plain", "dnsdiag"},
	{"LoggedFailure", "plain", "dnsdiag-logall"},
}

// profileN is the -benchtime of profiled runs. The testing package runs a
// benchmark once with b.N=1 before b.N=profileN, and benchServe warms up with
// 100 queries each time: profileOps queries in all, the same for both sides
// of a diff.
const (
	profileN   = 20000
	profileOps = profileN + 1 + 2*100
)

func microbench(cfg *config) (*microResult, error) {
	m := &microResult{ProfileOps: profileOps}
	bin := filepath.Join(cfg.work, "dnsdiag.test")
	if out, err := exec.Command("go", "test", "-c", "-o", bin, "./plugin/dnsdiag/").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go test -c: %v\n%s", err, out)
	}
	out, _, err := run(cfg.cpuCD, bin, "-test.run", "^$", "-test.bench", ".", "-test.benchmem", "-test.cpu", "1",
		"-test.benchtime", cfg.microTime, "-test.count", strconv.Itoa(cfg.microCount))
	m.Raw = string(out)
	if err != nil {
		return m, fmt.Errorf("benchmarks: %v\n%s", err, tail(out, 2000))
	}
	m.Benchmarks = parseBench(out)

	for _, p := range profiled {
		ap := allocProfile{Bench: p.bench, Base: p.base, With: p.with}
		profs := map[string]string{}
		for _, side := range []string{p.base, p.with} {
			prof := filepath.Join(cfg.work, p.bench+"-"+side+".memprof")
			if out, _, err := run(cfg.cpuCD, bin, "-test.run", "^$", "-test.bench", "^Benchmark"+p.bench+"$/^"+side+"$",
				"-test.benchmem", "-test.cpu", "1", "-test.benchtime", strconv.Itoa(profileN)+"x",
				"-test.memprofilerate", "1", "-test.memprofile", prof); err != nil {
				ap.Error = fmt.Sprintf("%s/%s: %v\n%s", p.bench, side, err, tail(out, 1000))
			}
			profs[side] = prof
		}
		if ap.Error == "" {
			out, err := exec.Command("go", "tool", "pprof", "-sample_index=alloc_objects", "-top", "-nodecount=200", "-nodefraction=0", "-edgefraction=0",
				"-diff_base="+profs[p.base], bin, profs[p.with]).CombinedOutput()
			if err != nil {
				ap.Error = fmt.Sprintf("pprof: %v\n%s", err, tail(out, 1000))
			} else {
				ap.Sites = parseTop(out, profileOps)
			}
		}
		m.Profiles = append(m.Profiles, ap)
	}
	return m, nil
}

// parseBench reads `go test -bench -benchmem` lines and keeps each
// benchmark's median over its runs.
func parseBench(out []byte) []microBench {
	type runs struct{ ns, b, allocs []float64 }
	var order []string
	all := map[string]*runs{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 || !strings.HasPrefix(f[0], "Benchmark") || f[3] != "ns/op" || f[5] != "B/op" || f[7] != "allocs/op" {
			continue
		}
		ns, _ := strconv.ParseFloat(f[2], 64)
		b, _ := strconv.ParseFloat(f[4], 64)
		a, _ := strconv.ParseFloat(f[6], 64)
		name := strings.TrimPrefix(f[0], "Benchmark")
		r := all[name]
		if r == nil {
			r = &runs{}
			all[name] = r
			order = append(order, name)
		}
		r.ns, r.b, r.allocs = append(r.ns, ns), append(r.b, b), append(r.allocs, a)
	}
	var res []microBench
	for _, name := range order {
		r := all[name]
		res = append(res, microBench{Name: name, NsOp: median(r.ns), BOp: median(r.b), AllocsOp: median(r.allocs),
			Runs: len(r.ns), MinNsOp: slices.Min(r.ns), MaxNsOp: slices.Max(r.ns)})
	}
	return res
}

// parseTop reads `pprof -top` rows into allocations per op by function,
// dropping sites under 0.05 per op (one-off setup allocations).
func parseTop(out []byte, ops int) []allocSite {
	var sites []allocSite
	for _, f := range pprofTopRows(out) {
		flat, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		per := flat / float64(ops)
		if per < 0.05 && per > -0.05 {
			continue
		}
		sites = append(sites, allocSite{Func: strings.Join(f[5:], " "), PerOp: per})
	}
	return sites
}

func (m *microResult) find(name string) *microBench {
	for i := range m.Benchmarks {
		if m.Benchmarks[i].Name == name {
			return &m.Benchmarks[i]
		}
	}
	return nil
}
