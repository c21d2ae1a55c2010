// Command dnsdiag-analyser is dnsdiag for a CoreDNS whose image cannot be
// swapped: stock CoreDNS streams `dnstap tcp://HOST:6000 full` to it, and
// it writes the plugin's session lines and serves its metrics from the
// stream. README.md beside this file documents it.
package main

import (
	"errors"
	"flag"
	"fmt"
	golog "log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/dnsdiag/dnsdiag/plugin/dnsdiag"

	clog "github.com/coredns/coredns/plugin/pkg/log"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// listFlag is a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "dnsdiag-analyser:", err)
		os.Exit(1)
	}
}

func run() error {
	// A flag set of its own: CoreDNS's packages register theirs (-conf,
	// -dns.port, ...) on the default one, and none of them applies here.
	flag := flag.NewFlagSet("dnsdiag-analyser", flag.ExitOnError)
	cfg := dnsdiag.DefaultAnalyserConfig()
	var listen listFlag
	flag.Var(&listen, "listen", "where senders connect, tcp://HOST:PORT or unix:///PATH; repeatable (default tcp://:6000)")
	metricsAddr := flag.String("metrics", "", "serve the Prometheus metrics on HOST:PORT at /metrics (default: none)")
	logFormat := flag.String("log-format", "text", "log format: text or json, as CoreDNS's -log-format")
	// The plugin's log policy, one flag per option of the dnsdiag block,
	// with the same words (plugin/dnsdiag/README.md).
	policy := []struct{ name, usage string }{
		{"log", "all|failed|none: which sessions are logged (plugin default: failed)"},
		{"status", "Status list, e.g. \"Failed SampleLoss\": the finer form of -log"},
		{"bitmap", "BitMap list, e.g. \"1 5\": log only these BitMaps"},
		{"slow", "DURATION: also log sessions slower than it"},
		{"sample", "N: also log 1 in N Succeeded sessions"},
		{"rate", "N: at most N lines per second, 0 for no limit (default 20)"},
		{"hints", "all|none|codes: sessions with these hints are logged"},
		{"messages", "full|header: whole DNS messages or only headers and questions"},
		{"report", "DURATION|off: the periodic report's window (default off: the report's system figures would be the analyser's own)"},
	}
	values := make([]*string, len(policy))
	for i, p := range policy {
		values[i] = flag.String(p.name, "", p.usage)
	}
	var thresholds listFlag
	flag.Var(&thresholds, "threshold", "\"NAME VALUE\": a report threshold, as the plugin's; repeatable")
	flag.DurationVar(&cfg.Window, "window", cfg.Window, "how long a session waits for its legs after its client query")
	flag.IntVar(&cfg.MaxSessions, "max-sessions", cfg.MaxSessions, "cap on open sessions, all senders together")
	flag.IntVar(&cfg.Queue, "queue", cfg.Queue, "frames each connection may have waiting; beyond it frames are shed and counted")
	flag.DurationVar(&cfg.Idle, "idle", cfg.Idle, "close a connection silent for that long")
	flag.Parse(os.Args[1:])
	if flag.NArg() > 0 {
		return fmt.Errorf("extra arguments: %s", strings.Join(flag.Args(), " "))
	}

	report := false
	for i, p := range policy {
		if *values[i] != "" {
			cfg.Options = append(cfg.Options, p.name+" "+*values[i])
			report = report || p.name == "report"
		}
	}
	if !report {
		cfg.Options = append(cfg.Options, "report off")
	}
	for _, t := range thresholds {
		cfg.Options = append(cfg.Options, "threshold "+t)
	}

	clog.SetOutput(os.Stdout)
	golog.SetFlags(0)
	if *logFormat != "text" {
		if err := clog.Configure(*logFormat, os.Stdout); err != nil {
			return err
		}
	}

	a, err := dnsdiag.NewAnalyser(cfg)
	if err != nil {
		return err
	}
	if len(listen) == 0 {
		listen = listFlag{"tcp://:6000"}
	}
	var lns []net.Listener
	for _, l := range listen {
		ln, err := listenOn(l)
		if err != nil {
			return err
		}
		lns = append(lns, ln)
	}
	if *metricsAddr != "" {
		ln, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.Handler())
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
	}
	errc := make(chan error, len(lns))
	for _, ln := range lns {
		go func() { errc <- a.Serve(ln) }()
		clog.Infof("analyser: listening on %s", ln.Addr())
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case s := <-sig:
		clog.Infof("analyser: %s: shutting down", s)
	case err = <-errc:
	}
	a.Close()
	return err
}

// listenOn opens a listener on tcp://HOST:PORT or unix:///PATH.
func listenOn(addr string) (net.Listener, error) {
	switch {
	case strings.HasPrefix(addr, "tcp://"):
		return net.Listen("tcp", strings.TrimPrefix(addr, "tcp://"))
	case strings.HasPrefix(addr, "unix://"):
		path := strings.TrimPrefix(addr, "unix://")
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return net.Listen("unix", path)
	}
	return nil, fmt.Errorf("-listen %q: want tcp://HOST:PORT or unix:///PATH", addr)
}
