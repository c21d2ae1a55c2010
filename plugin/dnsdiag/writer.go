package dnsdiag

import (
	"time"

	"github.com/coredns/coredns/plugin"
	"github.com/miekg/dns"
)

// responseWriter records every answer written to the client as a
// CLIENT_RESPONSE leg of session id. It reaches the session through the
// registry, not a pointer: a plugin may keep the writer past the end of the
// query (serve_stale's verify does), and the pooled session may by then
// belong to another query.
type responseWriter struct {
	dns.ResponseWriter
	id uint64
	// next is the name of the plugin after dnsdiag when dnsdiag called it
	// directly (see serveNext): the writer then does what CoreDNS's
	// pluginWriter would have done for it.
	next string
}

// track tells the writer below, if it tracks which plugin wrote the
// response (plugin.PluginTracker, as the prometheus plugin's recorder
// does), that the plugin after dnsdiag did: what plugin.NextOrFailure's
// wrapper does on every write.
func (w *responseWriter) track() {
	if w.next == "" {
		return
	}
	if t, ok := w.ResponseWriter.(plugin.PluginTracker); ok {
		t.SetPlugin(w.next)
	}
}

// WriteMsg implements dns.ResponseWriter. The detectors are told of the
// answer before it leaves (see session.answered): the client's next query
// can arrive the moment it does.
func (w *responseWriter) WriteMsg(m *dns.Msg) error {
	now, tc := time.Now(), m.Truncated
	sessions.answering(w.id, clientAnswer{at: now, rcode: m.Rcode, records: len(m.Answer), truncated: tc})
	w.track()
	err := w.ResponseWriter.WriteMsg(m)
	if m.Truncated && !tc {
		// The server's writer truncated an answer too big for UDP.
		sessions.truncatedOnWrite(w.id)
	}
	w.record(leg{kind: legCR, at: now, msg: m, rcode: m.Rcode, err: err})
	return err
}

// Write implements dns.ResponseWriter. The buffer belongs to the caller, so
// the rare plugin that writes raw bytes pays for a copy.
func (w *responseWriter) Write(b []byte) (int, error) {
	now := time.Now()
	c, _ := wireCounts(b)
	sessions.answering(w.id, clientAnswer{at: now, rcode: wireRcode(b), records: c[1], truncated: wireTruncated(b)})
	w.track()
	n, err := w.ResponseWriter.Write(b)
	w.record(leg{kind: legCR, at: now, raw: append([]byte(nil), b...), rcode: wireRcode(b), err: err})
	return n, err
}

func (w *responseWriter) record(l leg) {
	if !sessions.addLeg(w.id, l) {
		dropped(reasonLateWrite)
	}
}
