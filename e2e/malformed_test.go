package e2e

import (
	"bytes"
	encbin "encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// mfHeader is a 12-byte DNS header.
func mfHeader(id uint16, flags uint16, qd, an, ns, ar uint16) []byte {
	b := make([]byte, 12)
	encbin.BigEndian.PutUint16(b[0:], id)
	encbin.BigEndian.PutUint16(b[2:], flags)
	encbin.BigEndian.PutUint16(b[4:], qd)
	encbin.BigEndian.PutUint16(b[6:], an)
	encbin.BigEndian.PutUint16(b[8:], ns)
	encbin.BigEndian.PutUint16(b[10:], ar)
	return b
}

// mfQuestion is a question for the wire-format name given as labels.
func mfQuestion(qtype, qclass uint16, labels ...[]byte) []byte {
	var b []byte
	for _, l := range labels {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	b = append(b, 0)
	b = encbin.BigEndian.AppendUint16(b, qtype)
	return encbin.BigEndian.AppendUint16(b, qclass)
}

func mfCat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// mfCase is one malformed or odd packet.
type mfCase struct {
	name  string
	pkt   []byte
	tcp   bool // also send it over TCP
	chain bool // it is a valid query: it reaches the plugin chain and must be answered
}

func mfCases() []mfCase {
	const rd = 0x0100
	okQ := mfQuestion(dns.TypeA, dns.ClassINET, []byte("m"), []byte("ok"), []byte("test"))
	rng := rand.New(rand.NewSource(42))
	garbage := make([]byte, 4000)
	rng.Read(garbage)
	garbage[2], garbage[3] = 0x01, 0x00 // a query header, so it is not ignored as a response
	many := mfHeader(7, rd, 40, 0, 0, 0)
	for i := range 40 {
		many = append(many, mfQuestion(dns.TypeA, dns.ClassINET, []byte(fmt.Sprintf("q%d", i)), []byte("ok"), []byte("test"))...)
	}
	var labels [][]byte
	for range 127 { // 127 one-byte labels: a 255-byte name, the maximum
		labels = append(labels, []byte("a"))
	}
	return []mfCase{
		{name: "empty", pkt: []byte{}},
		{name: "truncated header", pkt: []byte{0x12, 0x34, 0x01, 0x00, 0x00}, tcp: true},
		{name: "header only, zero questions", pkt: mfHeader(1, rd, 0, 0, 0, 0), tcp: true},
		{name: "one question promised, none sent", pkt: mfHeader(2, rd, 1, 0, 0, 0), tcp: true},
		{name: "question cut short", pkt: mfCat(mfHeader(3, rd, 1, 0, 0, 0), okQ[:len(okQ)-3]), tcp: true},
		{name: "compression pointer loop", pkt: mfCat(mfHeader(4, rd, 1, 0, 0, 0), []byte{0xc0, 0x0c, 0, 1, 0, 1}), tcp: true},
		{name: "pointer to a pointer loop", pkt: mfCat(mfHeader(5, rd, 1, 0, 0, 0), []byte{1, 'x', 0xc0, 0x0c, 0, 1, 0, 1}), tcp: true},
		{name: "forward pointer", pkt: mfCat(mfHeader(6, rd, 1, 0, 0, 0), []byte{0xc0, 0x40, 0, 1, 0, 1}), tcp: true},
		{name: "40 questions", pkt: many, tcp: true},
		{name: "two questions", pkt: mfCat(mfHeader(8, rd, 2, 0, 0, 0), okQ, okQ), tcp: true},
		{name: "label longer than 63", pkt: mfCat(mfHeader(9, rd, 1, 0, 0, 0), []byte{64}, bytes.Repeat([]byte("z"), 64), []byte{0, 0, 1, 0, 1}), tcp: true},
		{name: "name longer than 255", pkt: mfCat(mfHeader(10, rd, 1, 0, 0, 0), mfQuestion(dns.TypeA, dns.ClassINET, append(labels, []byte("b"))...)), tcp: true},
		{name: "additional count without records", pkt: mfCat(mfHeader(11, rd, 1, 0, 0, 3), okQ), tcp: true},
		{name: "bad OPT rdata", pkt: mfCat(mfHeader(12, rd, 1, 0, 0, 1), okQ, []byte{0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 5, 0, 10, 0, 9, 1}), tcp: true},
		{name: "EDNS version 1", pkt: mfCat(mfHeader(13, rd, 1, 0, 0, 1), okQ, []byte{0, 0, 41, 0x10, 0, 0, 1, 0, 0, 0, 0}), tcp: true},
		{name: "two OPT records", pkt: mfCat(mfHeader(14, rd, 1, 0, 0, 2), okQ, []byte{0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0}, []byte{0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0}), tcp: true},
		{name: "a response (QR set)", pkt: mfCat(mfHeader(15, 0x8100, 1, 0, 0, 0), okQ), tcp: true},
		{name: "opcode UPDATE", pkt: mfCat(mfHeader(16, 5<<11, 1, 0, 0, 0), okQ), tcp: true},
		{name: "opcode 15", pkt: mfCat(mfHeader(17, 15<<11, 1, 0, 0, 0), okQ), tcp: true},
		{name: "trailing garbage", pkt: mfCat(mfHeader(18, rd, 1, 0, 0, 0), okQ, garbage[:50]), tcp: true},
		{name: "oversized garbage", pkt: garbage, tcp: true},
		{name: "oversized zeroes", pkt: make([]byte, 3000)},
		// Odd but well-formed queries: they reach dnsdiag and are logged.
		{name: "qtype 0", pkt: mfCat(mfHeader(20, rd, 1, 0, 0, 0), mfQuestion(0, dns.ClassINET, []byte("m"), []byte("ok"), []byte("test"))), tcp: true, chain: true},
		{name: "qtype 65535 class 65535", pkt: mfCat(mfHeader(21, rd, 1, 0, 0, 0), mfQuestion(65535, 65535, []byte("m"), []byte("ok"), []byte("test"))), tcp: true, chain: true},
		{name: "root ANY", pkt: mfCat(mfHeader(22, rd, 1, 0, 0, 0), mfQuestion(dns.TypeANY, dns.ClassINET)), tcp: true, chain: true},
		{name: "255-byte name", pkt: mfCat(mfHeader(23, rd, 1, 0, 0, 0), mfQuestion(dns.TypeA, dns.ClassINET, labels[:126]...)), tcp: true, chain: true},
		{name: "binary label", pkt: mfCat(mfHeader(24, rd, 1, 0, 0, 0), mfQuestion(dns.TypeA, dns.ClassINET, []byte{'"', '\\', 0x00, 0x01, 0x1f, 0x7f, 0xc3, 0xa9, 0xff, '<', '>', '&', '\'', ' ', '.', '/'}, []byte("ok"), []byte("test"))), tcp: true, chain: true},
		{name: "answer section in a query", pkt: mfCat(mfHeader(25, rd, 1, 1, 0, 0), okQ, []byte{0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1}), tcp: true, chain: true},
		{name: "TC and Z bits in a query", pkt: mfCat(mfHeader(26, rd|0x0200|0x0040, 1, 0, 0, 0), okQ), tcp: true, chain: true},
		{name: "unknown EDNS option", pkt: mfCat(mfHeader(27, rd, 1, 0, 0, 1), okQ, []byte{0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 8, 0xfd, 0xe9, 0, 4, 1, 2, 3, 4}), tcp: true, chain: true},
	}
}

// mfCorefile: DIAG and PLAIN differ only in dnsdiag; both forward to UP.
const mfCorefile = `
.:{{DIAG}} {
	bind 127.0.0.1
	dnsdiag {
		log all
		rate 0
	}
	forward . 127.0.0.1:{{UP}}
}
.:{{PLAIN}} {
	bind 127.0.0.1
	forward . 127.0.0.1:{{UP}}
}
.:{{UP}} {
	bind 127.0.0.1
	template ANY ANY ok.test {
		answer "{{ .Name }} 60 IN A 192.0.2.1"
	}
	template ANY ANY . {
		rcode NXDOMAIN
	}
}
`

// TestMalformedPackets sends malformed and odd packets to a server with
// `dnsdiag { log all rate 0 }` and to the same server without dnsdiag, over
// UDP and TCP: the replies (or the lack of one) must be the same, byte for
// byte after the ID; after each packet a normal query is answered and
// logged; every line dnsdiag writes is valid JSON.
func TestMalformedPackets(t *testing.T) {
	t.Parallel()
	s := Start(t, mfCorefile, nil)
	diag, plain := s.Addr("DIAG"), s.Addr("PLAIN")

	const noReply = 400 * time.Millisecond
	answered := 0
	for _, c := range mfCases() {
		protos := []string{"udp"}
		if c.tcp {
			protos = append(protos, "tcp")
		}
		for _, proto := range protos {
			desc := fmt.Sprintf("%s over %s", c.name, proto)
			type res struct {
				b   []byte
				err error
			}
			ch := make(chan res, 1)
			go func() {
				b, err := tpRaw(proto, plain, c.pkt, noReply)
				ch <- res{b, err}
			}()
			withDiag, errDiag := tpRaw(proto, diag, c.pkt, noReply)
			p := <-ch
			without, errPlain := p.b, p.err
			switch {
			case withDiag == nil && without == nil:
				if c.chain {
					t.Errorf("%s: no reply from either server (%v / %v)", desc, errDiag, errPlain)
				}
			case withDiag == nil || without == nil:
				t.Errorf("%s: with dnsdiag: %d bytes (%v); without: %d bytes (%v)", desc, len(withDiag), errDiag, len(without), errPlain)
			case !bytes.Equal(zeroID(withDiag), zeroID(without)):
				t.Errorf("%s: replies differ\nwith dnsdiag:\n%s\nwithout:\n%s", desc, hex.Dump(withDiag), hex.Dump(without))
			default:
				answered++
				r := new(dns.Msg)
				if err := r.Unpack(withDiag); err == nil {
					t.Logf("%s: both answered %s (%d bytes)", desc, dns.RcodeToString[r.Rcode], len(withDiag))
				} else {
					t.Logf("%s: both answered %d bytes that do not unpack: %v", desc, len(withDiag), err)
				}
			}

			// The server is still up, answers and logs a normal query.
			r := Query(t, proto, diag, "alive.ok.test.", dns.TypeA, 3*time.Second)
			if r.Err != nil || r.Msg == nil || r.Msg.Rcode != dns.RcodeSuccess {
				t.Fatalf("after %s: normal query failed: %v %v", desc, r.Err, r.Msg)
			}
			l := s.WaitClient(r)
			check(t, l, want{Status: "Succeeded", BitMap: 15, Rcode: "NOERROR", QName: "alive.ok.test.", Protocol: proto, Upstreams: 1})
			checkClientLegs(t, l, r)
		}
	}

	// Every line is valid JSON (Lines fails the test otherwise); the odd
	// but valid queries were logged too.
	time.Sleep(100 * time.Millisecond)
	ls := s.Lines()
	odd := 0
	for _, l := range ls {
		if l.QName != "alive.ok.test." {
			odd++
			check(t, l, want{Upstreams: -1})
		}
	}
	wantOdd := 0
	for _, c := range mfCases() {
		if c.chain {
			wantOdd += 2
		}
	}
	if odd < wantOdd {
		t.Errorf("%d session lines for the odd queries, want at least %d (one per valid query sent)", odd, wantOdd)
	}
	t.Logf("%d packets answered identically, %d session lines (%d for odd queries)", answered, len(ls), odd)
}
