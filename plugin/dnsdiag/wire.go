package dnsdiag

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// Reading a few header fields straight from packed messages spares
// unpacking a whole message on the query path: forward's taps and raw
// client writes carry their DNS messages in wire format.

// dnsHeaderLen is the size of the fixed DNS header (RFC 1035 section 4.1.1).
const dnsHeaderLen = 12

// wireID is the DNS id of a packed message, false when b is shorter than
// the id.
func wireID(b []byte) (uint16, bool) {
	if len(b) < 2 {
		return 0, false
	}
	return binary.BigEndian.Uint16(b), true
}

// wireTruncated reports whether the TC bit is set, false when b is shorter
// than the flags byte that holds it.
func wireTruncated(b []byte) bool { return len(b) > 2 && b[2]&0x02 != 0 }

// wireRcode is the 4-bit header rcode, noRcode unless the whole header is
// there: a fragment is not counted as an answer.
func wireRcode(b []byte) int {
	if len(b) < dnsHeaderLen {
		return noRcode
	}
	return int(b[3] & 0x0f)
}

// wireCounts are the header's QDCOUNT, ANCOUNT, NSCOUNT and ARCOUNT, false
// unless the whole header is there.
func wireCounts(b []byte) (counts [4]int, ok bool) {
	if len(b) < dnsHeaderLen {
		return counts, false
	}
	for i := range counts {
		counts[i] = int(binary.BigEndian.Uint16(b[4+2*i:]))
	}
	return counts, true
}

// tapAddrPort is one end of a tapped exchange. Its Addr is invalid when the
// tap carries no address of 4 or 16 bytes (forward always sets one).
func tapAddrPort(ip []byte, port uint32) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), uint16(port))
}

// addrPortOf is a's address and port, as net.Addr's String would write
// them (an IPv4 address as such, not IPv4-mapped); invalid for an address
// that is neither UDP nor TCP nor parses as ip:port.
func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	case nil:
		return ap
	default:
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// addrString is ap as ip:port, "" when it has no valid address: every
// address in a session line and in the upstream label is written by it.
func addrString(ap netip.AddrPort) string {
	if !ap.Addr().IsValid() {
		return ""
	}
	return ap.String()
}
