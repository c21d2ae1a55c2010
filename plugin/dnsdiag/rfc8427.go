package dnsdiag

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// DNS messages in the session log are rendered as RFC 8427 ("Representing
// DNS Messages in JSON") objects, so that existing tooling can read them.
// Member names follow the RFC exactly. Beyond the RFC, a message that could
// not be decoded faithfully carries two extra members:
//
//   - "error": why the message is not fully represented (the unpack error,
//     or a note that the header counts exceed what the message contains);
//   - "messageOctetsTruncated": 1 when "messageOctetsHEX" holds only the
//     first maxMessageOctetsHEX octets of the message.

// maxMessageOctetsHEX caps the octets copied into "messageOctetsHEX", so one
// oversized (e.g. TCP) message cannot blow up a log line.
const maxMessageOctetsHEX = 4096

var errCountsExceedContent = errors.New("header counts exceed message content")

// Member names of the fields a question shares with a resource record: the
// first question is inlined in the message object with "Q" names (RFC 8427
// section 2.1), the RRs use the plain names (section 2.2).
var (
	firstQuestionMembers = [5]string{"QNAME", "QTYPE", "QTYPEname", "QCLASS", "QCLASSname"}
	rrMembers            = [5]string{"NAME", "TYPE", "TYPEname", "CLASS", "CLASSname"}
)

// appendMsgJSON appends m as an RFC 8427 message object: the header and the
// first question always, the answer, authority and additional RRs only when
// full is set. The counts are those of m, also when the RRs are left out.
// A nil m is appended as null.
func appendMsgJSON(b []byte, m *dns.Msg, full bool) []byte {
	if m == nil {
		return append(b, "null"...)
	}
	counts := [4]int{len(m.Question), len(m.Answer), len(m.Ns), len(m.Extra)}
	b = append(b, '{')
	b = appendMsgMembers(b, m, counts, full)
	return append(b, '}')
}

// appendRawMsgJSON is appendMsgJSON for a message in wire format, which may
// be anything a peer sent. The counts are those of the wire header. When the
// message does not unpack, or holds fewer records than its header counts,
// the object carries what could be decoded (the header if it is complete, and the sections read before the fault) plus "messageOctetsHEX" and
// "error", so the log still shows exactly what was on the wire. An empty raw
// is appended as null.
func appendRawMsgJSON(b []byte, raw []byte, full bool) []byte {
	if len(raw) == 0 {
		return append(b, "null"...)
	}
	var m dns.Msg
	err := m.Unpack(raw)
	b = append(b, '{')
	if counts, ok := wireCounts(raw); ok {
		b = appendMsgMembers(b, &m, counts, full)
		if err == nil && (len(m.Question) < counts[0] || len(m.Answer) < counts[1] ||
			len(m.Ns) < counts[2] || len(m.Extra) < counts[3]) {
			err = errCountsExceedContent
		}
	}
	if err != nil {
		octets := raw[:min(len(raw), maxMessageOctetsHEX)]
		b = appendHexMember(b, "messageOctetsHEX", octets)
		if len(octets) < len(raw) {
			b = appendUintMember(b, "messageOctetsTruncated", 1)
		}
		b = appendStringMember(b, "error", err.Error())
	}
	return append(b, '}')
}

// appendMsgMembers appends the members of the message object, without braces.
func appendMsgMembers(b []byte, m *dns.Msg, counts [4]int, full bool) []byte {
	b = appendUintMember(b, "ID", uint64(m.Id))
	b = appendBitMember(b, "QR", m.Response)
	b = appendUintMember(b, "Opcode", uint64(m.Opcode&0xf))
	b = appendBitMember(b, "AA", m.Authoritative)
	b = appendBitMember(b, "TC", m.Truncated)
	b = appendBitMember(b, "RD", m.RecursionDesired)
	b = appendBitMember(b, "RA", m.RecursionAvailable)
	b = appendBitMember(b, "AD", m.AuthenticatedData)
	b = appendBitMember(b, "CD", m.CheckingDisabled)
	// RCODE is the 4-bit header field, as in RFC 8427; the extended bits
	// stay in the OPT RR's TTL.
	b = appendUintMember(b, "RCODE", uint64(m.Rcode&0xf))
	b = appendUintMember(b, "QDCOUNT", uint64(counts[0]))
	b = appendUintMember(b, "ANCOUNT", uint64(counts[1]))
	b = appendUintMember(b, "NSCOUNT", uint64(counts[2]))
	b = appendUintMember(b, "ARCOUNT", uint64(counts[3]))
	if len(m.Question) > 0 {
		q := m.Question[0]
		b = appendNameTypeClass(b, &firstQuestionMembers, q.Name, q.Qtype, q.Qclass)
	}
	if len(m.Question) > 1 {
		b = appendMember(b, "questionRRs")
		b = append(b, '[')
		for i, q := range m.Question {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			b = appendNameTypeClass(b, &rrMembers, q.Name, q.Qtype, q.Qclass)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if full {
		b = appendRRArray(b, "answerRRs", m.Answer)
		b = appendRRArray(b, "authorityRRs", m.Ns)
		b = appendRRArray(b, "additionalRRs", m.Extra)
	}
	return b
}

func appendRRArray(b []byte, member string, rrs []dns.RR) []byte {
	b = appendMember(b, member)
	b = append(b, '[')
	for i, rr := range rrs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendRRJSON(b, rr)
	}
	return append(b, ']')
}

// appendRRJSON appends rr as an RFC 8427 resource record object.
func appendRRJSON(b []byte, rr dns.RR) []byte {
	if rr == nil {
		return append(b, "null"...)
	}
	h := rr.Header()
	b = append(b, '{')
	b = appendNameTypeClass(b, &rrMembers, h.Name, h.Rrtype, h.Class)
	b = appendUintMember(b, "TTL", uint64(h.Ttl))
	b = appendRdata(b, rr)
	return append(b, '}')
}

// appendRdata appends the RDATA of rr as "rdata"+TYPEname holding the
// presentation format (RFC 8427 section 2.3), or as "RDATAHEX" for the types
// miekg/dns has no one-line presentation of: OPT and TSIG (pseudo-sections),
// NULL, and unknown types (RFC 3597 text is no more readable than hex).
func appendRdata(b []byte, rr dns.RR) []byte {
	switch rr.(type) {
	case *dns.RR_Header:
		// miekg/dns returns the bare header for an RR without RDATA,
		// e.g. a deletion in an UPDATE message.
		return appendHexMember(b, "RDATAHEX", nil)
	case *dns.OPT, *dns.RFC3597:
		return appendRdataHex(b, rr)
	}
	if out, ok := appendRdataCommon(b, rr); ok {
		return out
	}
	return appendRdataText(b, rr)
}

// appendRdataText appends the RDATA of any type from its presentation
// format: RR.String() is the header followed by the RDATA, except for the
// pseudo-RRs, which do not start with the header.
func appendRdataText(b []byte, rr dns.RR) []byte {
	if text, ok := strings.CutPrefix(rr.String(), rr.Header().String()); ok && text != "" {
		return appendStringMember(b, "rdata"+dns.Type(rr.Header().Rrtype).String(), text)
	}
	return appendRdataHex(b, rr)
}

// appendRdataCommon appends the RDATA of the types answers mostly hold
// exactly as appendRdata's String-based path writes it, without building
// the record's whole presentation string (and the member name) to cut the
// header off again: a logged line holds many records. It reports false for
// the other types, and for addresses miekg/dns would print oddly.
func appendRdataCommon(b []byte, rr dns.RR) ([]byte, bool) {
	switch r := rr.(type) {
	case *dns.A:
		ip := r.A.To4()
		if ip == nil {
			return b, false
		}
		b = append(appendMember(b, "rdataA"), '"')
		b = netip.AddrFrom4([4]byte(ip)).AppendTo(b)
	case *dns.AAAA:
		if len(r.AAAA) != net.IPv6len {
			return b, false
		}
		b = append(appendMember(b, "rdataAAAA"), '"')
		if ip := r.AAAA.To4(); ip != nil {
			// miekg/dns writes an IPv4-mapped address in this form.
			b = netip.AddrFrom4([4]byte(ip)).AppendTo(append(b, "::ffff:"...))
		} else {
			b = netip.AddrFrom16([16]byte(r.AAAA)).AppendTo(b)
		}
	case *dns.CNAME:
		b = appendJSONText(append(appendMember(b, "rdataCNAME"), '"'), dns.Name(r.Target).String())
	case *dns.NS:
		b = appendJSONText(append(appendMember(b, "rdataNS"), '"'), dns.Name(r.Ns).String())
	case *dns.PTR:
		b = appendJSONText(append(appendMember(b, "rdataPTR"), '"'), dns.Name(r.Ptr).String())
	case *dns.MX:
		b = strconv.AppendUint(append(appendMember(b, "rdataMX"), '"'), uint64(r.Preference), 10)
		b = appendJSONText(append(b, ' '), dns.Name(r.Mx).String())
	case *dns.SRV:
		b = strconv.AppendUint(append(appendMember(b, "rdataSRV"), '"'), uint64(r.Priority), 10)
		b = strconv.AppendUint(append(b, ' '), uint64(r.Weight), 10)
		b = strconv.AppendUint(append(b, ' '), uint64(r.Port), 10)
		b = appendJSONText(append(b, ' '), dns.Name(r.Target).String())
	default:
		return b, false
	}
	return append(b, '"'), true
}

// appendRdataHex appends "RDATAHEX" with the RDATA of rr packed to wire
// format. rr is copied first because dns.PackRR stores the RDLENGTH in the
// RR it packs, and rr may be shared with the goroutine answering the query.
// If rr cannot be packed the member is left out.
func appendRdataHex(b []byte, rr dns.RR) []byte {
	c := dns.Copy(rr)
	buf := make([]byte, dns.Len(c))
	end, err := dns.PackRR(c, buf, 0, nil, false)
	if err != nil {
		return b
	}
	return appendHexMember(b, "RDATAHEX", buf[end-int(c.Header().Rdlength):end])
}

func appendNameTypeClass(b []byte, members *[5]string, name string, t, class uint16) []byte {
	b = appendStringMember(b, members[0], dns.Name(name).String())
	b = appendUintMember(b, members[1], uint64(t))
	b = appendStringMember(b, members[2], dns.Type(t).String())
	b = appendUintMember(b, members[3], uint64(class))
	return appendStringMember(b, members[4], className(class))
}

// className is the IANA mnemonic of class c, or CLASSnnn (RFC 3597).
// dns.Class.String writes ANY as CLASS255 because "ANY" is ambiguous in zone
// files, which it is not here.
func className(c uint16) string {
	if s, ok := dns.ClassToString[c]; ok {
		return s
	}
	return dns.Class(c).String()
}

// appendMember appends the member name and colon, preceded by a comma unless
// it is the first member of the object. Member names are RFC 8427's and
// "rdata" with a type mnemonic: letters and digits, nothing to escape.
func appendMember(b []byte, name string) []byte {
	if b[len(b)-1] != '{' {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, name...)
	return append(b, '"', ':')
}

func appendUintMember(b []byte, name string, v uint64) []byte {
	return strconv.AppendUint(appendMember(b, name), v, 10)
}

// appendBitMember appends a header flag as 0 or 1, the way RFC 8427 writes
// the flags in its examples.
func appendBitMember(b []byte, name string, v bool) []byte {
	if v {
		return appendUintMember(b, name, 1)
	}
	return appendUintMember(b, name, 0)
}

func appendStringMember(b []byte, name, v string) []byte {
	return appendJSONString(appendMember(b, name), v)
}

// appendHexMember appends p in base16 with upper-case digits, the encoding
// RFC 8427 specifies for the members whose names end in "HEX".
func appendHexMember(b []byte, name string, p []byte) []byte {
	const digits = "0123456789ABCDEF"
	b = appendMember(b, name)
	b = append(b, '"')
	for _, c := range p {
		b = append(b, digits[c>>4], digits[c&0xf])
	}
	return append(b, '"')
}
