package dnsdiag

import (
	"strconv"

	"github.com/coredns/coredns/plugin"
	"github.com/dnsdiag/dnsdiag/plugin/hints"
	"github.com/miekg/dns"
)

// status is a session's Status, as in the dnstap analyser.
type status uint8

const (
	statusSucceeded status = iota
	statusFailed
	statusSampleLoss
	statusCount
)

var statusNames = [statusCount]string{"Succeeded", "Failed", "SampleLoss"}

func (st status) String() string { return statusNames[st] }

// verdict is what classify concludes about a finished session. Metrics,
// the log policy and the line renderer read it; none of them decides
// anything about the session themselves.
type verdict struct {
	status status
	// rcode is what the client received, noRcode if nothing; for a
	// background session, what the upstream last answered.
	rcode       int
	serverWrote bool // the server, not the chain, wrote the client's answer
	panicked    bool // a plugin below panicked; the server answered SERVFAIL
	truncated   bool // the client's last answer had the TC bit
	cause       cause
	question    dns.Question

	// The upstream attempts: how many were sent and answered, and the
	// rcode of the last answer (noRcode if none).
	asked, answered int
	upstreamRcode   int

	// hints are the cross-session detectors' findings, set by diagnose
	// after classify (and on release, for a held session).
	hints []hints.Hint
}

// cause is why a session did not succeed, pointing at the leg where it went
// wrong; causeNone for a plain success. Its words are in causeText.
type cause uint8

const (
	causeNone cause = iota
	causePanic
	causeLost
	causeNoUpstreamAnswer
	causeUpstreamRcode
	causeDropped
	causeSecondAnswer
	causeServerAnswered
	causeInternalRcode
)

// classify leaves s's verdict. It runs once, when the session has ended
// and no tap or write can reach it any more, on the goroutine that ended
// it. It allocates nothing: the words of the cause are only put together
// for a logged line (causeText).
func classify(s *session) {
	v := verdict{rcode: s.rcode, upstreamRcode: noRcode}
	switch {
	case s.background:
		v.rcode = s.lastUpstreamRcode()
	case !s.returned:
		// The server recovers the panic and answers SERVFAIL itself.
		v.panicked, v.serverWrote, v.rcode = true, true, dns.RcodeServerFailure
	case !plugin.ClientWrite(s.chainRcode):
		// The server writes this rcode to the client after the chain
		// returns, on its own writer: the wrapper never sees it. If the
		// chain had answered already, the client keeps that first answer.
		v.serverWrote = true
		if s.bits&legCR == 0 {
			v.rcode = s.chainRcode
		}
	}

	// SampleLoss when dnsdiag knows it missed a leg, Succeeded when the
	// client got NOERROR or NXDOMAIN (for a background session: when the
	// upstream answered so), Failed otherwise.
	switch {
	case s.lost:
		v.status = statusSampleLoss
	case succeeded(v.rcode):
		v.status = statusSucceeded
	default:
		v.status = statusFailed
	}

	for a := range s.attempts {
		v.asked++
		if a.r != nil {
			v.answered++
			v.upstreamRcode = a.rcode()
		}
	}
	v.truncated = s.truncated()
	v.question = s.question()
	v.cause = v.causeOf(s)
	s.verdict = v
}

func succeeded(rcode int) bool { return rcode == dns.RcodeSuccess || rcode == dns.RcodeNameError }

func (v *verdict) causeOf(s *session) cause {
	switch {
	case v.panicked:
		return causePanic
	case s.lost:
		return causeLost
	case v.asked > 0 && v.answered == 0:
		return causeNoUpstreamAnswer
	case v.upstreamRcode != noRcode && !succeeded(v.upstreamRcode):
		return causeUpstreamRcode
	case s.background:
		return causeNone
	case s.bits&legCR == 0 && !v.serverWrote:
		return causeDropped
	case v.serverWrote && s.bits&legCR != 0:
		return causeSecondAnswer
	case v.serverWrote:
		return causeServerAnswered
	case !succeeded(v.rcode) && v.asked == 0:
		return causeInternalRcode
	}
	return causeNone
}

// causeText says the verdict's cause in words, with the TC note; "" for a
// plain success. chainRcode is the rcode the chain returned.
func (v *verdict) causeText(chainRcode int) string {
	var c string
	switch v.cause {
	case causePanic:
		c = "a plugin panicked; the server answered SERVFAIL"
	case causeLost:
		c = "incomplete session: dnsdiag dropped a leg under load"
	case causeNoUpstreamAnswer:
		c = "upstream did not answer (" + strconv.Itoa(v.asked) + " attempts)"
		if v.serverWrote {
			c += "; the server answered " + rcodeName(v.rcode)
		}
	case causeUpstreamRcode:
		c = "upstream answered " + rcodeName(v.upstreamRcode)
	case causeDropped:
		c = "CoreDNS sent no response: a plugin dropped the query (e.g. acl)"
	case causeSecondAnswer:
		c = "the plugin chain answered but returned " + rcodeName(chainRcode) + ", so the server sent a second answer"
	case causeServerAnswered:
		c = "the plugin chain returned " + rcodeName(v.rcode) + " without answering; the server answered it"
	case causeInternalRcode:
		c = "answered internally with " + rcodeName(v.rcode)
	}
	if v.truncated {
		if c != "" {
			c += "; "
		}
		c += "response truncated (TC): the client must retry over TCP"
	}
	return c
}

// question is the session's question: the client's, or for a background
// session the one forward sent upstream.
func (s *session) question() dns.Question {
	if s.req != nil && len(s.req.Question) > 0 {
		return s.req.Question[0]
	}
	for _, l := range s.legs {
		if l.kind == legFQ {
			m := new(dns.Msg)
			if m.Unpack(l.tap.GetQueryMessage()) == nil && len(m.Question) > 0 {
				return m.Question[0]
			}
		}
	}
	return dns.Question{}
}

// truncated reports whether the client's last answer had the TC bit.
func (s *session) truncated() bool {
	if l := s.lastAnswer(); l != nil {
		if l.msg != nil {
			return l.msg.Truncated
		}
		return wireTruncated(l.raw)
	}
	return false
}

// lastAnswer is the client's last CLIENT_RESPONSE leg, nil if none.
func (s *session) lastAnswer() *leg {
	for i := len(s.legs) - 1; i >= 0; i-- {
		if s.legs[i].kind == legCR {
			return &s.legs[i]
		}
	}
	return nil
}

// lastUpstreamRcode is the rcode of the last forwarder response, noRcode if
// none came back.
func (s *session) lastUpstreamRcode() int {
	for i := len(s.legs) - 1; i >= 0; i-- {
		if s.legs[i].kind == legFR {
			return wireRcode(s.legs[i].tap.GetResponseMessage())
		}
	}
	return noRcode
}
