package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// cpuProfile is where one variant's CoreDNS spends its CPU at saturation:
// a separate run after the measured rounds, with the pprof plugin (an HTTP
// listener, not a handler in the query chain) added to its Corefile.
type cpuProfile struct {
	Variant     string
	QPS         float64
	CPUPerQuery float64            // µs
	Cum         map[string]float64 // % of samples, by the keys of profileKeys
	Top         []profileRow       // the heaviest functions by flat samples
	Error       string
}

type profileRow struct {
	Func      string
	Flat, Cum float64 // %
}

// profileKeys name the functions whose cumulative share explains the
// differences between variants.
var profileKeys = []struct{ key, fn string }{
	{"newstack", "runtime.newstack"},                       // goroutine stack growth (copystack)
	{"mallocgc", "runtime.mallocgc"},                       // allocation
	{"gc", "runtime.gcBgMarkWorker"},                       // background GC
	{"syscall", "internal/runtime/syscall/linux.Syscall6"}, // socket reads and writes (and log writes)
	{"dnsdiag", "github.com/dnsdiag/dnsdiag/plugin/dnsdiag.(*Dnsdiag).ServeDNS"},
	{"finish", "github.com/dnsdiag/dnsdiag/plugin/dnsdiag.(*Dnsdiag).finish"},
	{"logwriter", "github.com/dnsdiag/dnsdiag/plugin/dnsdiag.(*lineWriter).run"},
	{"dnstapio", "github.com/coredns/coredns/plugin/dnstap.(*dio).serve"},
	{"taps", "github.com/coredns/coredns/plugin/dnstap.(*Dnstap).TapMessageWithMetadata"},
}

func profileRun(cfg *config, v variant, upPID int) (pr cpuProfile) {
	pr.Variant = v.Name
	b, err := os.ReadFile(corefile(cfg, v.Corefile))
	if err != nil {
		pr.Error = err.Error()
		return pr
	}
	conf := filepath.Join(cfg.work, "pprof-"+v.Corefile)
	text := strings.Replace(string(b), "    bind 127.0.0.1\n", "    bind 127.0.0.1\n    pprof 127.0.0.1:{$BENCH_PPROF_PORT}\n", 1)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		pr.Error = err.Error()
		return pr
	}
	in, _, err := warmStart(cfg, v, upPID, "pprof", conf)
	if err != nil {
		pr.Error = err.Error()
		return pr
	}
	defer in.close()
	prof := filepath.Join(cfg.work, "cpu-"+strings.ReplaceAll(v.Name, "/", "-")+".pprof")
	var ferr error
	p, cpu, err := in.saturate(cfg.profSeconds+1, func(<-chan struct{}) {
		time.Sleep(500 * time.Millisecond) // into the steady state
		ferr = fetch(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%g", cfg.port+3, cfg.profSeconds), prof)
	})
	if err != nil || ferr != nil {
		pr.Error = fmt.Sprint(err, ferr)
		return pr
	}
	pr.QPS, pr.CPUPerQuery = p.QPS, perQuery(cpu, p.Completed)
	out, err := exec.Command("go", "tool", "pprof", "-top", "-cum", "-nodecount=100000", cfg.coredns, prof).CombinedOutput()
	if err != nil {
		pr.Error = fmt.Sprintf("pprof: %v %s", err, tail(out, 500))
		return pr
	}
	rows := parseProfileTop(out)
	pr.Cum = map[string]float64{}
	for _, k := range profileKeys {
		for _, r := range rows {
			if r.Func == k.fn {
				pr.Cum[k.key] = r.Cum
			}
		}
	}
	// The heaviest leaves.
	byFlat := append([]profileRow(nil), rows...)
	for i := 1; i < len(byFlat); i++ {
		for j := i; j > 0 && byFlat[j].Flat > byFlat[j-1].Flat; j-- {
			byFlat[j], byFlat[j-1] = byFlat[j-1], byFlat[j]
		}
	}
	pr.Top = byFlat[:min(8, len(byFlat))]
	return pr
}

func fetch(url, path string) error {
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// parseProfileTop reads `pprof -top` rows as shares of the samples.
func parseProfileTop(out []byte) []profileRow {
	var rows []profileRow
	for _, f := range pprofTopRows(out) {
		flat, err1 := strconv.ParseFloat(strings.TrimSuffix(f[1], "%"), 64)
		cum, err2 := strconv.ParseFloat(strings.TrimSuffix(f[4], "%"), 64)
		if err1 != nil || err2 != nil {
			continue
		}
		rows = append(rows, profileRow{Func: strings.Join(f[5:], " "), Flat: flat, Cum: cum})
	}
	return rows
}
