package hints

import (
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var privateZone = netip.MustParseAddrPort("100.100.2.136:53")

// forwarded ends a session of id at end after the given attempts.
func forwarded(id uint64, tcp bool, start, end float64, rcode int, attempts ...Attempt) *Session {
	s := q{id: id, from: "10.0.0.1:" + strconv.Itoa(40000+int(id)), tcp: tcp, dnsID: uint16(id), name: "api.vpc-proxy.example.", qtype: dns.TypeA, start: start}.session()
	s.Attempts = attempts
	return answered(s, end, rcode, 0)
}

func TestUpstreamTCPAfterUDPAnswers(t *testing.T) {
	d, _ := newDetector(t, Config{})
	observe(t, d, forwarded(1, false, 0, 0.01, dns.RcodeSuccess, Attempt{Upstream: privateZone, Answered: true}))
	hs := observe(t, d, forwarded(2, true, 10, 15, dns.RcodeServerFailure, Attempt{Upstream: privateZone, TCP: true}))
	wantCodes(t, "TCP attempt", hs, UpstreamTCPFailed)
	if h := hs[0]; h.Evidence != EvidenceUDPAnswered || h.Upstream != privateZone || h.UDPAgo != 14990*time.Millisecond {
		t.Errorf("hint %+v, want udp_answered by %v 14.99s before", h, privateZone)
	}
	// A UDP client whose query forward sent over TCP (force_tcp) counts too.
	wantCodes(t, "force_tcp", observe(t, d, forwarded(3, false, 20, 25, dns.RcodeServerFailure, Attempt{Upstream: privateZone, TCP: true})), UpstreamTCPFailed)
}

// NodeLocal DNSCache asks over TCP: forward follows, with nothing known of UDP.
func TestUpstreamTCPClientTCP(t *testing.T) {
	d, _ := newDetector(t, Config{})
	hs := observe(t, d, forwarded(1, true, 0, 5, dns.RcodeServerFailure, Attempt{Upstream: privateZone, TCP: true}, Attempt{Upstream: privateZone, TCP: true}))
	wantCodes(t, "TCP client", hs, UpstreamTCPFailed)
	if hs[0].Evidence != EvidenceClientTCP {
		t.Errorf("evidence %q, want %q", hs[0].Evidence, EvidenceClientTCP)
	}
}

func TestUpstreamTCPNotFired(t *testing.T) {
	tcpFail := Attempt{Upstream: privateZone, TCP: true}
	cases := []struct {
		what   string
		before *Session
		s      *Session
	}{
		{"TCP answered", forwarded(1, false, 0, 0.01, dns.RcodeSuccess, Attempt{Upstream: privateZone, Answered: true}),
			forwarded(2, true, 1, 1.01, dns.RcodeSuccess, Attempt{Upstream: privateZone, TCP: true, Answered: true})},
		{"UDP client, nothing known of UDP", nil, forwarded(2, false, 1, 6, dns.RcodeServerFailure, tcpFail)},
		{"UDP answer too old", forwarded(1, false, 0, 0.01, dns.RcodeSuccess, Attempt{Upstream: privateZone, Answered: true}),
			forwarded(2, false, 61, 66, dns.RcodeServerFailure, tcpFail)},
		{"UDP fails too (dead upstream), UDP client", forwarded(1, false, 0, 5, dns.RcodeServerFailure, Attempt{Upstream: privateZone}),
			forwarded(2, false, 6, 11, dns.RcodeServerFailure, tcpFail)},
		{"UDP fails too (dead upstream), TCP client", forwarded(1, false, 0, 5, dns.RcodeServerFailure, Attempt{Upstream: privateZone}),
			forwarded(2, true, 6, 11, dns.RcodeServerFailure, tcpFail)},
		{"another upstream answered UDP", forwarded(1, false, 0, 0.01, dns.RcodeSuccess, Attempt{Upstream: netip.MustParseAddrPort("8.8.8.8:53"), Answered: true}),
			forwarded(2, false, 1, 6, dns.RcodeServerFailure, tcpFail)},
	}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			d, _ := newDetector(t, Config{})
			if c.before != nil {
				observe(t, d, c.before)
			}
			wantCodes(t, c.what, observe(t, d, c.s))
		})
	}
}

func TestUpstreamsBounded(t *testing.T) {
	d, c := newDetector(t, Config{Upstreams: 4})
	for i := range 10 {
		up := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, 0, byte(i)}), 53)
		observe(t, d, forwarded(uint64(i+1), false, float64(i), float64(i)+0.01, dns.RcodeSuccess, Attempt{Upstream: up, Answered: true}))
	}
	if n := int(d.ups.n.Load()); n != 4 {
		t.Errorf("%d upstreams tracked, want 4", n)
	}
	if got := c.get(ReasonUpstreamsFull); got != 6 {
		t.Errorf("%d counted %s, want 6", got, ReasonUpstreamsFull)
	}
}
