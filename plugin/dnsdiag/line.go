package dnsdiag

import (
	"net/netip"
	"strconv"
	"time"

	tap "github.com/dnstap/golang-dnstap"
	"github.com/miekg/dns"
)

// prepareLog copies what the line needs out of the query's messages while
// the query goroutine still owns them; the line is rendered later, on the
// writer's goroutine. Only logged sessions pay for this.
func (s *session) prepareLog() {
	if s.req != nil {
		s.req = s.req.Copy()
	}
	for i := range s.legs {
		if m := s.legs[i].msg; m != nil {
			s.legs[i].msg = m.Copy()
		}
	}
}

// appendLine renders the session as one JSON object: the summary first,
// then the upstream attempts, then every leg with its DNS message in
// RFC 8427 form.
func appendLine(b []byte, s *session) []byte {
	b = append(b, `{"Status":`...)
	b = appendJSONString(b, s.status().String())
	b = append(b, `,"BitMap":`...)
	b = strconv.AppendUint(b, uint64(s.bits), 10)
	b = append(b, `,"Session":`...)
	b = strconv.AppendUint(b, s.id, 10)
	if s.background {
		b = append(b, `,"Background":true`...)
		if s.origin != 0 {
			b = append(b, `,"ClientSession":`...)
			b = strconv.AppendUint(b, s.origin, 10)
		}
	}
	b = appendField(b, "Server", s.server)
	if !s.background {
		b = appendField(b, "Client", s.client)
		b = appendField(b, "Protocol", s.proto)
	}
	q := s.question()
	b = appendField(b, "QName", q.Name)
	b = appendField(b, "QType", dns.Type(q.Qtype).String())
	b = append(b, `,"Rcode":`...)
	b = appendRcode(b, s.rcode)
	if s.serverWrote {
		b = append(b, `,"ServerGenerated":true`...)
	}
	if s.panicked {
		b = append(b, `,"Panic":true`...)
	}
	if c := s.cause(); c != "" {
		b = appendField(b, "Cause", c)
	}
	if s.err != nil {
		b = appendField(b, "Error", s.err.Error())
	}
	b = appendField(b, "Time", s.start.UTC().Format(time.RFC3339Nano))
	b = append(b, `,"DurationMs":`...)
	b = appendMs(b, s.end.Sub(s.start))

	b = append(b, `,"Upstreams":[`...)
	first := true
	for a := range s.attempts {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, `{"Address":`...)
		b = appendJSONString(b, a.upstream().String())
		b = appendField(b, "Protocol", tapProto(a.q.tap))
		b = append(b, `,"Rcode":`...)
		b = appendRcode(b, a.rcode())
		b = append(b, `,"DurationMs":`...)
		b = appendMs(b, a.duration())
		b = append(b, '}')
	}

	b = append(b, `],"Messages":[`...)
	for i := range s.legs {
		if i > 0 {
			b = append(b, ',')
		}
		b = s.appendLeg(b, &s.legs[i])
	}
	return append(b, "]}"...)
}

// appendLeg renders one leg like a dnstap message: its type, when dnsdiag
// saw it, who sent the query to whom, and the DNS message.
func (s *session) appendLeg(b []byte, l *leg) []byte {
	full := s.diag.policy.fullMessages()
	b = append(b, `{"Type":`...)
	switch l.kind {
	case legCQ:
		b = appendJSONString(b, "CLIENT_QUERY")
	case legCR:
		b = appendJSONString(b, "CLIENT_RESPONSE")
	case legFQ:
		b = appendJSONString(b, "FORWARDER_QUERY")
	case legFR:
		b = appendJSONString(b, "FORWARDER_RESPONSE")
	}
	b = appendField(b, "Time", l.at.UTC().Format(time.RFC3339Nano))
	if l.tap != nil {
		b = appendField(b, "QueryAddress", tapAddr(l.tap.GetQueryAddress(), l.tap.GetQueryPort()))
		b = appendField(b, "ResponseAddress", tapAddr(l.tap.GetResponseAddress(), l.tap.GetResponsePort()))
		b = appendField(b, "Protocol", tapProto(l.tap))
	} else {
		b = appendField(b, "QueryAddress", s.client)
		b = appendField(b, "ResponseAddress", s.local)
		b = appendField(b, "Protocol", s.proto)
	}
	b = append(b, `,"Message":`...)
	switch {
	case l.kind == legCQ:
		b = appendMsgJSON(b, s.req, full)
	case l.msg != nil:
		b = appendMsgJSON(b, l.msg, full)
	case l.raw != nil:
		b = appendRawMsgJSON(b, l.raw, full)
	case l.kind == legFQ:
		b = appendRawMsgJSON(b, l.tap.GetQueryMessage(), full)
	default:
		b = appendRawMsgJSON(b, l.tap.GetResponseMessage(), full)
	}
	if l.err != nil {
		b = appendField(b, "WriteError", l.err.Error())
	}
	return append(b, '}')
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

// cause says in words why a session did not succeed, pointing at the leg
// where it went wrong. It is empty for a plain success.
func (s *session) cause() string {
	asked, answered := 0, 0
	upstreamRcode := noRcode
	for a := range s.attempts {
		asked++
		if a.r != nil {
			answered++
			upstreamRcode = a.rcode()
		}
	}
	var c string
	switch {
	case s.panicked:
		c = "a plugin panicked; the server answered SERVFAIL"
	case s.lost:
		c = "incomplete session: dnsdiag dropped a leg under load"
	case asked > 0 && answered == 0:
		c = "upstream did not answer (" + strconv.Itoa(asked) + " attempts)"
		if s.serverWrote {
			c += "; the server answered " + rcodeName(s.rcode)
		}
	case upstreamRcode != noRcode && upstreamRcode != dns.RcodeSuccess && upstreamRcode != dns.RcodeNameError:
		c = "upstream answered " + rcodeName(upstreamRcode)
	case s.background:
	case s.bits&legCR == 0 && !s.serverWrote:
		c = "CoreDNS sent no response: a plugin dropped the query (e.g. acl)"
	case s.serverWrote && s.bits&legCR != 0:
		c = "the plugin chain answered but returned " + rcodeName(s.chainRcode) + ", so the server sent a second answer"
	case s.serverWrote:
		c = "the plugin chain returned " + rcodeName(s.rcode) + " without answering; the server answered it"
	case s.rcode != dns.RcodeSuccess && s.rcode != dns.RcodeNameError && asked == 0:
		c = "answered internally with " + rcodeName(s.rcode)
	}
	if s.truncated() {
		if c != "" {
			c += "; "
		}
		c += "response truncated (TC): the client must retry over TCP"
	}
	return c
}

// truncated reports whether the client's last answer had the TC bit.
func (s *session) truncated() bool {
	for i := len(s.legs) - 1; i >= 0; i-- {
		l := &s.legs[i]
		if l.kind != legCR {
			continue
		}
		if l.msg != nil {
			return l.msg.Truncated
		}
		return len(l.raw) > 2 && l.raw[2]&0x02 != 0
	}
	return false
}

func appendField(b []byte, name, value string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendJSONString(b, value)
}

func appendRcode(b []byte, rcode int) []byte {
	if rcode == noRcode {
		return append(b, "null"...)
	}
	return appendJSONString(b, rcodeName(rcode))
}

func rcodeName(rcode int) string {
	if name, ok := dns.RcodeToString[rcode]; ok {
		return name
	}
	return "RCODE" + strconv.Itoa(rcode)
}

// appendMs appends d in milliseconds with microsecond precision.
func appendMs(b []byte, d time.Duration) []byte {
	return strconv.AppendFloat(b, float64(d.Microseconds())/1000, 'f', -1, 64)
}

func tapAddr(ip []byte, port uint32) string {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return ""
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port)).String()
}

// tapProto names the transport forward used; DoT reports as tcp and DoQ as
// udp in forward's taps.
func tapProto(m *tap.Message) string {
	switch m.GetSocketProtocol() {
	case tap.SocketProtocol_UDP:
		return "udp"
	case tap.SocketProtocol_TCP:
		return "tcp"
	case tap.SocketProtocol_DOT:
		return "dot"
	case tap.SocketProtocol_DOH:
		return "doh"
	}
	return ""
}
