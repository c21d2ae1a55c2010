package dnsdiag

import (
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

// appendLine renders the session and its verdict as one JSON object: the
// summary first, then the upstream attempts, then every leg with its DNS
// message in RFC 8427 form.
func appendLine(b []byte, s *session) []byte {
	v := &s.verdict
	b = append(b, `{"Status":`...)
	b = appendJSONString(b, v.status.String())
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
	b = appendField(b, "QName", v.question.Name)
	b = appendField(b, "QType", dns.Type(v.question.Qtype).String())
	b = append(b, `,"Rcode":`...)
	b = appendRcode(b, v.rcode)
	if v.serverWrote {
		b = append(b, `,"ServerGenerated":true`...)
	}
	if v.panicked {
		b = append(b, `,"Panic":true`...)
	}
	if s.ambiguous {
		b = append(b, `,"Ambiguous":true`...)
	}
	if c := v.causeText(s.chainRcode); c != "" {
		b = appendField(b, "Cause", c)
	}
	if len(v.hints) > 0 {
		b = append(b, `,"Hints":[`...)
		for i := range v.hints {
			if i > 0 {
				b = append(b, ',')
			}
			b = v.hints[i].AppendJSON(b, appendJSONString)
		}
		b = append(b, ']')
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
		b = appendJSONString(b, addrString(a.upstream()))
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
	full := s.full
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
		b = appendField(b, "QueryAddress", addrString(tapAddrPort(l.tap.GetQueryAddress(), l.tap.GetQueryPort())))
		b = appendField(b, "ResponseAddress", addrString(tapAddrPort(l.tap.GetResponseAddress(), l.tap.GetResponsePort())))
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
