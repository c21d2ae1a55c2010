package e2e

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// tpZone is the upstream's zone: fixed TTLs, every common type, a TXT set
// bigger than 512 bytes and a wildcard that answers odd labels.
func tpZone() string {
	chunk := strings.Repeat("x", 200)
	return `$ORIGIN test.
@        3600 IN SOA ns.test. admin.test. 1 7200 3600 1209600 300
@        3600 IN NS  ns.test.
ns       3600 IN A   192.0.2.53
host      300 IN A   192.0.2.10
host      300 IN A   192.0.2.11
host      300 IN AAAA 2001:db8::10
host      300 IN MX  10 mail.test.
host      300 IN MX  20 mail2.test.
mail      300 IN A   192.0.2.25
_sip._udp 300 IN SRV 10 60 5060 host.test.
txt       300 IN TXT "hello world" "second \"quoted\" string"
alias     300 IN CNAME host.test.
big       300 IN TXT "1` + chunk + `"
big       300 IN TXT "2` + chunk + `"
big       300 IN TXT "3` + chunk + `"
big       300 IN TXT "4` + chunk + `"
*.odd     300 IN A   192.0.2.99
*.odd     300 IN TXT "wild"
`
}

// tpCorefile is two front server blocks that differ only in dnsdiag: DIAG
// has `dnsdiag { log all rate 0 }`, PLAIN has nothing. Both answer
// local.test themselves (template: an answer, and a SERVFAIL the server
// writes) and forward the rest to UP, which serves the zone file, PTR from
// hosts, and SERVFAIL for fail.test.
//
// There is no cache in the chain: every answer is built from fixed TTLs
// (template, hosts, file), so replies can be compared byte for byte with
// only the 2-byte ID zeroed, and nothing depends on which port was asked
// first.
func tpCorefile(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	zone := filepath.Join(dir, "test.zone")
	if err := os.WriteFile(zone, []byte(tpZone()), 0o644); err != nil {
		t.Fatal(err)
	}
	front := func(port, diag string) string {
		return `
.:{{` + port + `}} {
	bind 127.0.0.1
` + diag + `
	template IN ANY lfail.local.test {
		rcode SERVFAIL
	}
	template IN A local.test {
		answer "{{ .Name }} 120 IN A 198.51.100.7"
	}
	forward . 127.0.0.1:{{UP}}
}
`
	}
	return front("DIAG", "\tdnsdiag {\n\t\tlog all\n\t\trate 0\n\t}") + front("PLAIN", "") + `
.:{{UP}} {
	bind 127.0.0.1
	template IN ANY fail.test {
		rcode SERVFAIL
	}
	hosts {
		192.0.2.10 h.hosts.test
		2001:db8::10 h.hosts.test
		fallthrough
	}
	file ` + zone + ` test
}
`
}

// tpRaw sends q over proto and returns the reply, or nil when none came
// within timeout (the connection was closed, or nothing was sent back).
func tpRaw(proto, addr string, q []byte, timeout time.Duration) ([]byte, error) {
	c := &dns.Client{Net: proto, Timeout: timeout}
	conn, err := c.Dial(addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if proto == "udp" {
		if _, err := conn.Conn.Write(q); err != nil {
			return nil, err
		}
		buf := make([]byte, 65535)
		n, err := conn.Conn.Read(buf)
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
	framed := append([]byte{byte(len(q) >> 8), byte(len(q))}, q...)
	if _, err := conn.Conn.Write(framed); err != nil {
		return nil, err
	}
	var l [2]byte
	if _, err := readFull(conn.Conn, l[:]); err != nil {
		return nil, err
	}
	buf := make([]byte, int(l[0])<<8|int(l[1]))
	if _, err := readFull(conn.Conn, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

func readFull(c interface{ Read([]byte) (int, error) }, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := c.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// zeroID copies a packed message with its ID zeroed.
func zeroID(b []byte) []byte {
	c := append([]byte(nil), b...)
	if len(c) >= 2 {
		c[0], c[1] = 0, 0
	}
	return c
}

// tpQuery is one query of the transparency matrix.
type tpQuery struct {
	name  string
	qtype uint16
	rcode int
}

// TestTransparencyByteForByte sends the same packed query to a server
// block with dnsdiag and to an identical one without, over UDP and TCP,
// without EDNS, with EDNS0 (4096, no DO) and with EDNS0 DO (1232), and
// requires byte-identical replies (ID zeroed).
func TestTransparencyByteForByte(t *testing.T) {
	t.Parallel()
	s := Start(t, tpCorefile(t), nil)
	diag, plain := s.Addr("DIAG"), s.Addr("PLAIN")

	label63 := strings.Repeat("l", 63)
	queries := []tpQuery{
		{"host.test.", dns.TypeA, dns.RcodeSuccess},
		{"host.test.", dns.TypeAAAA, dns.RcodeSuccess},
		{"host.test.", dns.TypeMX, dns.RcodeSuccess},
		{"_sip._udp.test.", dns.TypeSRV, dns.RcodeSuccess},
		{"txt.test.", dns.TypeTXT, dns.RcodeSuccess},
		{"alias.test.", dns.TypeA, dns.RcodeSuccess},
		{"host.test.", dns.TypePTR, dns.RcodeSuccess}, // NODATA, SOA in authority
		{"10.2.0.192.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess},
		{"0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", dns.TypePTR, dns.RcodeSuccess},
		{"h.hosts.test.", dns.TypeA, dns.RcodeSuccess},
		{"nope.test.", dns.TypeA, dns.RcodeNameError},
		{"x.fail.test.", dns.TypeA, dns.RcodeServerFailure},
		{"big.test.", dns.TypeTXT, dns.RcodeSuccess},
		{"test.", dns.TypeSOA, dns.RcodeSuccess},
		{"test.", dns.TypeNS, dns.RcodeSuccess},
		{"a-b_c.odd.test.", dns.TypeA, dns.RcodeSuccess},
		{`\032space.odd.test.`, dns.TypeA, dns.RcodeSuccess},
		{`we\.ird\"q.odd.test.`, dns.TypeTXT, dns.RcodeSuccess},
		{label63 + ".odd.test.", dns.TypeA, dns.RcodeSuccess},
		{"0123456789.odd.test.", dns.TypeA, dns.RcodeSuccess},
		{"MiXeD.OdD.TeSt.", dns.TypeA, dns.RcodeSuccess},
		{"x.local.test.", dns.TypeA, dns.RcodeSuccess},
		{"lfail.local.test.", dns.TypeA, dns.RcodeServerFailure},
	}
	type variant struct {
		name string
		edns func(*dns.Msg)
	}
	variants := []variant{
		{"noedns", func(*dns.Msg) {}},
		{"edns4096", func(m *dns.Msg) { m.SetEdns0(4096, false) }},
		{"edns1232do", func(m *dns.Msg) { m.SetEdns0(1232, true) }},
	}

	sent := 0
	truncatedUDP := false
	for _, q := range queries {
		for _, v := range variants {
			for _, proto := range []string{"udp", "tcp"} {
				m := new(dns.Msg)
				m.SetQuestion(q.name, q.qtype)
				m.Id = 0x4242
				v.edns(m)
				b, err := m.Pack()
				if err != nil {
					t.Fatalf("pack %s: %v", q.name, err)
				}
				desc := fmt.Sprintf("%s %s %s/%s", proto, v.name, q.name, dns.TypeToString[q.qtype])
				withDiag, err := tpRaw(proto, diag, b, 3*time.Second)
				if err != nil {
					t.Errorf("%s: dnsdiag server: %v", desc, err)
					continue
				}
				sent++
				without, err := tpRaw(proto, plain, b, 3*time.Second)
				if err != nil {
					t.Errorf("%s: plain server: %v", desc, err)
					continue
				}
				if !bytes.Equal(zeroID(withDiag), zeroID(without)) {
					t.Errorf("%s: replies differ\nwith dnsdiag:\n%s\nwithout:\n%s", desc, hex.Dump(withDiag), hex.Dump(without))
					continue
				}
				r := new(dns.Msg)
				if err := r.Unpack(withDiag); err != nil {
					t.Errorf("%s: reply does not unpack: %v", desc, err)
					continue
				}
				if r.Rcode != q.rcode {
					t.Errorf("%s: rcode %s, want %s", desc, dns.RcodeToString[r.Rcode], dns.RcodeToString[q.rcode])
				}
				if r.Id != 0x4242 {
					t.Errorf("%s: id %#x", desc, r.Id)
				}
				// The big TXT set: truncated over UDP without EDNS, whole
				// with a 4096 buffer and over TCP.
				if q.name == "big.test." {
					switch {
					case proto == "udp" && v.name == "noedns":
						truncatedUDP = r.Truncated
						if !r.Truncated || len(withDiag) > 512 {
							t.Errorf("%s: want TC and at most 512 bytes, got TC=%v %d bytes", desc, r.Truncated, len(withDiag))
						}
					case proto == "tcp" || v.name == "edns4096":
						if r.Truncated || len(r.Answer) != 4 || len(withDiag) <= 512 {
							t.Errorf("%s: want the 4 TXT records untruncated, got TC=%v %d answers %d bytes", desc, r.Truncated, len(r.Answer), len(withDiag))
						}
					}
				}
				if v.name == "edns1232do" {
					if o := r.IsEdns0(); o == nil || !o.Do() {
						t.Errorf("%s: DO bit not echoed: %v", desc, r)
					}
				}
			}
		}
	}
	if !truncatedUDP {
		t.Errorf("big.test TXT over UDP without EDNS was not truncated")
	}

	// dnsdiag logged every query it served, as valid JSON (Lines fails the
	// test otherwise), each with a client query and the client's answer.
	ls := s.WaitLines("one per query", sent, func(Line) bool { return true })
	if len(ls) != sent {
		t.Errorf("%d session lines for %d queries", len(ls), sent)
	}
	for _, l := range ls {
		check(t, l, want{Server: s.ServerLabel("DIAG"), Upstreams: -1})
		// A SERVFAIL the server writes after the chain returns is not seen
		// as a leg; the line says ServerGenerated instead.
		if n := l.Count("CLIENT_RESPONSE"); n != 1 && !(n == 0 && l.ServerGenerated && l.RcodeString() == "SERVFAIL") {
			t.Errorf("session with %d CLIENT_RESPONSE legs: %s", n, l.Raw)
		}
	}
	t.Logf("%d queries compared byte for byte over UDP and TCP", sent)
}
