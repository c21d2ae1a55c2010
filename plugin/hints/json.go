package hints

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/miekg/dns"
)

// AppendJSON appends h to b as one JSON object: Code, Text, then the
// details of its code. quote appends a string as a JSON string literal
// (quotes included) valid for any bytes: the caller's own, so that the
// line it builds has one escaper.
func (h *Hint) AppendJSON(b []byte, quote func(b []byte, s string) []byte) []byte {
	b = append(b, `{"Code":`...)
	b = quote(b, string(h.Code))
	b = append(b, `,"Text":`...)
	b = quote(b, h.Text)
	switch h.Code {
	case RetransmitAfterAnswer:
		b = appendUint(b, "EarlierSession", h.Earlier)
		b = appendBool(b, "SamePort", h.SamePort)
		b = append(b, `,"EarlierRcode":"`...)
		b = appendRcode(b, h.EarlierRcode)
		b = append(b, '"')
		b = appendMs(b, "AgoMs", h.Ago)
	case RetransmitUnanswered:
		b = appendUint(b, "EarlierSession", h.Earlier)
		b = appendBool(b, "SamePort", h.SamePort)
		b = appendBool(b, "InFlight", h.InFlight)
		b = appendMs(b, "RunningMs", h.Running)
		if h.Waiting != "" {
			b = append(b, `,"Waiting":`...)
			b = quote(b, h.Waiting)
		}
		b = appendUint(b, "Attempts", uint64(h.Attempts))
		b = appendAddr(b, h.Upstream)
	case ParallelAAAAA:
		b = append(b, `,"Lost":`...)
		b = quote(b, h.Lost)
		b = appendUint(b, "OtherSession", h.Other)
	case SearchExpansion:
		b = appendUint(b, "Count", uint64(h.Count))
		b = append(b, `,"Suffixes":[`...)
		for i, s := range h.Suffixes {
			if i > 0 {
				b = append(b, ',')
			}
			b = quote(b, s)
		}
		b = append(b, ']')
	case TruncatedNoTCPRetry:
		b = appendMs(b, "WindowMs", h.Window)
	case UpstreamTCPFailed:
		b = appendAddr(b, h.Upstream)
		b = append(b, `,"Evidence":`...)
		b = quote(b, h.Evidence)
		if h.Evidence == EvidenceUDPAnswered {
			b = appendMs(b, "UDPAnsweredAgoMs", h.UDPAgo)
		}
	}
	return append(b, '}')
}

func appendUint(b []byte, name string, v uint64) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendUint(b, v, 10)
}

func appendBool(b []byte, name string, v bool) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendBool(b, v)
}

// appendMs appends d in milliseconds with microsecond precision, like the
// durations of the session line.
func appendMs(b []byte, name string, d time.Duration) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendFloat(b, float64(d.Microseconds())/1000, 'f', -1, 64)
}

// appendAddr appends "Upstream" if a is set. An address without a zone
// needs no escaping.
func appendAddr(b []byte, a netip.AddrPort) []byte {
	if !a.IsValid() {
		return b
	}
	b = append(b, `,"Upstream":"`...)
	b = a.AppendTo(b)
	return append(b, '"')
}

func appendRcode(b []byte, rcode int) []byte {
	if name, ok := dns.RcodeToString[rcode]; ok {
		return append(b, name...)
	}
	return strconv.AppendInt(append(b, "RCODE"...), int64(rcode), 10)
}
