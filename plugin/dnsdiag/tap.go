package dnsdiag

import (
	"time"

	"github.com/coredns/coredns/plugin/dnstap"

	tap "github.com/dnstap/golang-dnstap"
)

// newTap builds the *dnstap.Dnstap that dnsdiag hands to forward. forward
// calls it synchronously, on the query's goroutine, once per upstream
// attempt: FORWARDER_QUERY, then FORWARDER_RESPONSE if a reply came back.
//
// dnstap's sink is set to an in-process one (setDnstapSink, internals.go):
// nothing is encoded, queued or sent.
// ExtraFormat makes dnstap evaluate the session id from the query's context
// into each message's Extra field, which correlates the leg exactly.
// IncludeRawMessage makes forward pack the query and reply: the only way to
// see the upstream's own rcode.
func newTap(sink *tapSink) (*dnstap.Dnstap, error) {
	t := &dnstap.Dnstap{IncludeRawMessage: true, ExtraFormat: "{/" + sessionLabel + "}"}
	if err := setDnstapSink(t, sink); err != nil {
		return nil, err
	}
	return t, nil
}

// tapSink receives forward's taps for one dnsdiag instance.
type tapSink struct{ d *Dnsdiag }

// Dnstap implements dnstap's sink interface.
func (t *tapSink) Dnstap(p *tap.Dnstap) {
	m := p.GetMessage()
	if m == nil {
		return
	}
	l := leg{tap: m}
	switch m.GetType() {
	case tap.Message_FORWARDER_QUERY:
		l.kind, l.at = legFQ, time.Now()
	case tap.Message_FORWARDER_RESPONSE:
		// forward stamps the response as it taps it: the same instant,
		// without reading the clock again.
		l.kind = legFR
		if m.ResponseTimeSec != nil && m.ResponseTimeNsec != nil {
			l.at = tapResponseTime(m)
		} else {
			l.at = time.Now()
		}
	default:
		return
	}
	id, ok := parseID(p.GetExtra())
	switch {
	case ok && id == 0:
		dropped(reasonUntrackedTap) // its query was shed at the in-flight limit
	case ok && sessions.addLeg(id, l):
	default:
		// No client session is waiting: a prefetch or serve_stale refresh
		// (no id), or a verify that outlived its client session (stale id).
		t.d.bg.add(t.d, id, l)
	}
}

// parseID reads a decimal session id; the metadata placeholder evaluates to
// "-" when the query carried no id.
func parseID(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var id uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		id = id*10 + uint64(c-'0')
	}
	return id, true
}
