package report

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Names can hold any bytes: quotes, backslashes, control characters,
// invalid UTF-8. The report must stay one valid JSON object on one line,
// and decode back to the names (invalid UTF-8 as U+FFFD).
func TestJSONValidOddNames(t *testing.T) {
	odd := map[string]string{
		"quote\".example.":        "quote\".example.",
		`back\\slash.example.`:    `back\\slash.example.`,
		"nul\x00ctl\x1f.example.": "nul\x00ctl\x1f.example.",
		"new\nline\r.example.":    "new\nline\r.example.",
		"bad\xff\xfeutf8.":        "bad\ufffd\ufffdutf8.",
		"<html>&amp;.example.":    "<html>&amp;.example.",
		"ünïcødé.example.":        "ünïcødé.example.",
	}
	r := newTestReporter(Config{Instance: "pod \"x\"\n", MinFailures: 1, FailureShare: 0.01, MinSessions: 1, SearchShare: 0.01, MinAnswersLost: 1, MinDrops: 1, ThrottledShare: 0.01})
	for name := range odd {
		feed(r, 2, external(name, up2, dns.RcodeServerFailure, 10*time.Millisecond))
	}
	feed(r, 1, internal("nothing.example.", -1))
	feed(r, 1, Session{Hints: HintRetransmitAfterAnswer | HintSearchExpansion, SearchCandidates: 3})
	rep, ok := tick(r, System{
		Sockets: SocketFigures{Present: true, Drops: 2}, UDP: UDPFigures{Present: true},
		CPU: CPUFigures{Present: true, Periods: 10, ThrottledPeriods: 5, QuotaCores: math.NaN()},
	})
	if !ok {
		t.Fatal("no report")
	}
	b, err := rep.AppendJSON([]byte("prefix: "))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "prefix: ") {
		t.Fatalf("AppendJSON lost what it appended to: %q", b)
	}
	line := b[len("prefix: "):]
	if !json.Valid(line) {
		t.Fatalf("invalid JSON: %s", line)
	}
	if strings.ContainsAny(string(line), "\n\r") {
		t.Fatalf("report spans lines: %q", line)
	}
	// The only top-level member is "Report".
	var top map[string]json.RawMessage
	if err := json.Unmarshal(line, &top); err != nil || len(top) != 1 || top["Report"] == nil {
		t.Fatalf("top level %v (%v), want only Report", top, err)
	}
	var back struct{ Report Report }
	if err := json.Unmarshal(line, &back); err != nil {
		t.Fatal(err)
	}
	got := back.Report
	if got.Instance != "pod \"x\"\n" || got.Sessions != rep.Sessions || got.CPU.QuotaCores != 0 || len(got.Verdicts) != len(rep.Verdicts) {
		t.Errorf("decoded %+v", got)
	}
	seen := map[string]bool{}
	for _, f := range got.FailedNames {
		seen[f.Name] = true
		if f.Name == "nothing.example." {
			if f.Rcode != nil {
				t.Errorf("no-answer name decoded with Rcode %q", *f.Rcode)
			}
		} else if f.Rcode == nil || *f.Rcode != "SERVFAIL" || f.Count != 2 || f.External != 2 {
			t.Errorf("decoded name %+v", f)
		}
	}
	for _, want := range odd {
		if !seen[want] {
			t.Errorf("name %q did not survive: %v", want, seen)
		}
	}
	for _, v := range got.Verdicts {
		if v.Code == "" || v.Text == "" {
			t.Errorf("empty verdict %+v", v)
		}
	}
	// The members README.md documents are there.
	var members map[string]json.RawMessage
	if err := json.Unmarshal(top["Report"], &members); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"Instance", "Start", "End", "Seconds", "Sessions", "Failed", "FailureShare", "Internal", "External",
		"Upstreams", "FailedNames", "Hints", "SearchCandidates", "SearchShare", "Sockets", "UDP", "CPU", "PeakInFlight", "Verdicts"} {
		if members[m] == nil {
			t.Errorf("member %s missing", m)
		}
	}
}

func TestAppendJSONRefusesNaN(t *testing.T) {
	r := &Report{FailureShare: math.NaN()}
	b, err := r.AppendJSON([]byte("x"))
	if err == nil || string(b) != "x" {
		t.Errorf("NaN rendered: %q, %v", b, err)
	}
}
