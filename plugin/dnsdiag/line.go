package dnsdiag

import (
	"net/netip"
	"strconv"
	"time"

	tap "github.com/dnstap/golang-dnstap"
	"github.com/miekg/dns"
)

// keepMessages copies the messages of a held session while the goroutine
// ending it still owns them: its line is rendered when the detector
// releases it, on another goroutine (see conclude).
func (s *session) keepMessages() {
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
// message in RFC 8427 form. It notes in at where Messages and each leg are
// in b, for bound.
func appendLine(b []byte, s *session, at *lineLayout) []byte {
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
		b = appendAddrField(b, "Client", s.client)
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
	b = appendTimeField(b, "Time", s.start)
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
	at.messages = len(b)
	for i := range s.legs {
		if i > 0 {
			b = append(b, ',')
		}
		at.legs[i].start = len(b)
		b = s.appendLeg(b, &s.legs[i], s.full)
		at.legs[i].end = len(b)
	}
	return append(b, "]}"...)
}

// lineLayout is where appendLine put the parts of a line that bound may
// shorten: the start of Messages' members, and each leg.
type lineLayout struct {
	messages int
	legs     [maxLegs]span
}

// span is b[start:end] of a rendered line.
type span struct{ start, end int }

func (p span) len() int { return p.end - p.start }

// lineBuf is the rendering state of a line, reused from line to line
// (renderBufs).
type lineBuf struct {
	line   []byte // the line as the policy asks for it
	at     lineLayout
	heads  []byte // bound: each leg with only its header and question
	headAt [maxLegs]span
	cut    []byte // bound: the line cut to its limit
}

// maxKeptLine is the most buffer a lineBuf keeps for the next line: one
// long line (max_line off) does not pin its memory.
const maxKeptLine = 64 << 10

// trim lets go of buffers longer than maxKeptLine.
func (lb *lineBuf) trim() {
	for _, b := range []*[]byte{&lb.line, &lb.heads, &lb.cut} {
		if cap(*b) > maxKeptLine {
			*b = nil
		}
	}
}

// renderFor renders s for the log as it is now (text or JSON, the standard
// logger's flags), within its line bound. The result is valid until the
// next render.
func (lb *lineBuf) renderFor(s *session) (sinkMode, []byte) {
	mode := currentMode()
	return mode, lb.render(s, lineLimit(s.maxLine, mode, stdHeader()))
}

// render renders s, at most limit bytes long if limit > 0 (see bound). The
// result is valid until the next render.
func (lb *lineBuf) render(s *session, limit int) []byte {
	lb.line = appendLine(lb.line[:0], s, &lb.at)
	if limit <= 0 || len(lb.line) <= limit {
		return lb.line
	}
	return lb.bound(s, limit)
}

// truncatedMax is the longest MessagesTruncated member: at most maxLegs
// messages of at most 3 * 65535 records (by their header counts).
const truncatedMax = len(`,"MessagesTruncated":{"Records":12582720,"Messages":64,"Omitted":64}`)

// bound shortens lb.line, longer than limit, to fit it. Everything before
// Messages (the summary, hints and upstreams) is kept as it is: only the
// legs give way. Every leg is first given its header and question only
// (the `messages header` form, whose counts still say how many records
// the message had); legs are left out from the last one while even that
// does not fit; then, in order, each leg whose whole message still fits
// gets it back. A MessagesTruncated member closes the line: the Records
// left out (by the header counts of the messages cut or left out), the
// Messages shown without their records, the legs Omitted. The line stays
// longer than limit only if the part before Messages alone is.
func (lb *lineBuf) bound(s *session, limit int) []byte {
	n := len(s.legs)
	if n == 0 {
		return lb.line // nothing to cut
	}
	budget := limit - lb.at.messages - len(`]`) - truncatedMax - len(`}`)

	lb.heads = lb.heads[:0]
	cost := -1 // the commas between legs
	for i := range n {
		lb.headAt[i].start = len(lb.heads)
		lb.heads = s.appendLeg(lb.heads, &s.legs[i], false)
		lb.headAt[i].end = len(lb.heads)
		cost += lb.headAt[i].len() + 1
	}
	kept := n
	for kept > 0 && cost > budget {
		kept--
		cost -= lb.headAt[kept].len() + 1
	}
	var whole [maxLegs]bool
	for i := range kept {
		if grow := lb.at.legs[i].len() - lb.headAt[i].len(); cost+grow <= budget {
			whole[i] = true
			cost += grow
		}
	}

	b := append(lb.cut[:0], lb.line[:lb.at.messages]...)
	var records, cut int
	for i := range n {
		switch {
		case i >= kept:
			records += s.legRecords(&s.legs[i])
			continue
		case i > 0:
			b = append(b, ',')
		}
		if whole[i] {
			b = append(b, lb.line[lb.at.legs[i].start:lb.at.legs[i].end]...)
			continue
		}
		b = append(b, lb.heads[lb.headAt[i].start:lb.headAt[i].end]...)
		if r := s.legRecords(&s.legs[i]); r > 0 {
			records += r
			cut++
		}
	}
	b = append(b, `],"MessagesTruncated":{"Records":`...)
	b = strconv.AppendInt(b, int64(records), 10)
	b = append(b, `,"Messages":`...)
	b = strconv.AppendInt(b, int64(cut), 10)
	b = append(b, `,"Omitted":`...)
	b = strconv.AppendInt(b, int64(n-kept), 10)
	lb.cut = append(b, "}}"...)
	return lb.cut
}

// legRecords is how many answer, authority and additional records the
// message of leg l has in a line, by its header's counts: none when lines
// carry only headers (`messages header`).
func (s *session) legRecords(l *leg) int {
	if !s.full {
		return 0
	}
	m, raw := s.legMessage(l)
	if m != nil {
		return len(m.Answer) + len(m.Ns) + len(m.Extra)
	}
	c, _ := wireCounts(raw)
	return c[1] + c[2] + c[3]
}

// appendLeg renders one leg like a dnstap message: its type, when dnsdiag
// saw it, who sent the query to whom, and the DNS message, whole if full is
// set, else only its header and question.
func (s *session) appendLeg(b []byte, l *leg, full bool) []byte {
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
	b = appendTimeField(b, "Time", l.at)
	if l.tap != nil {
		b = appendAddrField(b, "QueryAddress", tapAddrPort(l.tap.GetQueryAddress(), l.tap.GetQueryPort()))
		b = appendAddrField(b, "ResponseAddress", tapAddrPort(l.tap.GetResponseAddress(), l.tap.GetResponsePort()))
		b = appendField(b, "Protocol", tapProto(l.tap))
	} else {
		b = appendAddrField(b, "QueryAddress", s.client)
		b = appendAddrField(b, "ResponseAddress", s.local)
		b = appendField(b, "Protocol", s.proto)
	}
	b = append(b, `,"Message":`...)
	if m, raw := s.legMessage(l); m != nil {
		b = appendMsgJSON(b, m, full)
	} else {
		b = appendRawMsgJSON(b, raw, full)
	}
	if l.err != nil {
		b = appendField(b, "WriteError", l.err.Error())
	}
	return append(b, '}')
}

// legMessage is the DNS message of leg l: parsed, or else in wire format
// (possibly empty).
func (s *session) legMessage(l *leg) (*dns.Msg, []byte) {
	switch {
	case l.kind == legCQ:
		return s.req, nil
	case l.msg != nil:
		return l.msg, nil
	case l.raw != nil:
		return nil, l.raw
	case l.kind == legFQ:
		return nil, l.tap.GetQueryMessage()
	}
	return nil, l.tap.GetResponseMessage()
}

func appendField(b []byte, name, value string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendJSONString(b, value)
}

// appendTimeField appends t in UTC as RFC 3339 with nanoseconds, which has
// nothing JSON must escape, without the string Format would allocate.
func appendTimeField(b []byte, name string, t time.Time) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':', '"')
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendAddrField appends ap as addrString writes it, without the string.
func appendAddrField(b []byte, name string, ap netip.AddrPort) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':', '"')
	if ap.Addr().IsValid() {
		b = ap.AppendTo(b)
	}
	return append(b, '"')
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
