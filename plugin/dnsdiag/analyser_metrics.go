package dnsdiag

import (
	"sync"
	"sync/atomic"

	"github.com/coredns/coredns/plugin"
	"github.com/prometheus/client_golang/prometheus"
)

// analyserMetrics are the analyser's own series, beside the plugin's
// coredns_dnsdiag_* ones. They are registered by the first NewAnalyser,
// not at init, so that the CoreDNS build never exports them; like the
// plugin's they are process-wide.
type analyserMetrics struct {
	frames      prometheus.Counter
	undecodable *prometheus.CounterVec
	shed        prometheus.Counter
	dropped     *prometheus.CounterVec
	unpaired    *prometheus.CounterVec
	ambiguous   prometheus.Counter
	conns       prometheus.Gauge
}

// analyserOpen is the number of open sessions of every analyser in the
// process; MaxSessions caps it.
var analyserOpen atomic.Int64

var analyserStats = sync.OnceValue(newAnalyserMetrics)

// Reasons of frames_undecodable_total and sessions_dropped_total.
const (
	undecodableProtobuf  = "protobuf"   // not a dnstap.Dnstap
	undecodableNoMessage = "no_message" // a Dnstap without a message of the four types
	undecodableDNS       = "dns"        // its DNS message does not unpack
	undecodableTruncated = "truncated"  // the connection broke off inside a frame

	droppedSessionCap = "session_cap" // client query beyond MaxSessions
	droppedShed       = "shed"        // session open when its connection shed frames (SampleLoss)
)

func newAnalyserMetrics() *analyserMetrics {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: plugin.Namespace, Subsystem: "dnsdiag_analyser", Name: name, Help: help}
	}
	m := &analyserMetrics{
		frames: prometheus.NewCounter(prometheus.CounterOpts(opts("frames_total", "Frames received from every sender."))),
		undecodable: prometheus.NewCounterVec(prometheus.CounterOpts(opts("frames_undecodable_total",
			"Frames that could not be used, by reason: protobuf, no_message, dns, truncated.")), []string{"reason"}),
		shed: prometheus.NewCounter(prometheus.CounterOpts(opts("frames_shed_total",
			"Frames dropped because their connection's queue was full; the sender never waits."))),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts(opts("sessions_dropped_total",
			"Sessions the analyser could not track (session_cap) or knows incomplete because frames were shed (shed).")), []string{"reason"}),
		unpaired: prometheus.NewCounterVec(prometheus.CounterOpts(opts("unpaired_total",
			"Responses whose query was never seen, by type; each becomes a SampleLoss session.")), []string{"type"}),
		ambiguous: prometheus.NewCounter(prometheus.CounterOpts(opts("ambiguous_total",
			"Forwarder legs that matched more than one open session (the same question from two clients at once)."))),
		conns: prometheus.NewGauge(prometheus.GaugeOpts(opts("connections", "Sender connections open."))),
	}
	open := prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("open_sessions", "Sessions waiting for more legs.")),
		func() float64 { return float64(analyserOpen.Load()) })
	prometheus.MustRegister(m.frames, m.undecodable, m.shed, m.dropped, m.unpaired, m.ambiguous, m.conns, open)
	return m
}
