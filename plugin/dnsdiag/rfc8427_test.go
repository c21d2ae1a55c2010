package dnsdiag

import (
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

func rrHdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: 300}
}

func queryMsg(name string, t uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, t)
	m.Id = 4660
	return m
}

func aAnswer() *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(queryMsg("example.org.", dns.TypeA))
	m.RecursionAvailable = true
	m.Answer = []dns.RR{&dns.A{Hdr: rrHdr("example.org.", dns.TypeA), A: net.IPv4(192, 0, 2, 1)}}
	return m
}

func nxdomain() *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(queryMsg("nope.example.org.", dns.TypeAAAA), dns.RcodeNameError)
	m.Authoritative = true
	m.Ns = []dns.RR{&dns.SOA{
		Hdr: rrHdr("example.org.", dns.TypeSOA),
		Ns:  "ns.example.org.", Mbox: "hostmaster.example.org.",
		Serial: 2024010101, Refresh: 7200, Retry: 3600, Expire: 1209600, Minttl: 300,
	}}
	return m
}

// ednsCookie is a BADCOOKIE response: its RCODE needs the OPT's extended bits.
func ednsCookie() *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(queryMsg("example.org.", dns.TypeA), dns.RcodeBadCookie)
	opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	opt.SetUDPSize(1232)
	opt.SetDo()
	opt.SetExtendedRcode(dns.RcodeBadCookie)
	opt.Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}}
	m.Extra = []dns.RR{opt}
	return m
}

func txtAnswer() *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(queryMsg("txt.example.org.", dns.TypeTXT))
	m.Answer = []dns.RR{&dns.TXT{Hdr: rrHdr("txt.example.org.", dns.TypeTXT), Txt: []string{"say \"hi\"\x00\n", "x\xff"}}}
	return m
}

// binaryName has labels that are not UTF-8 (and a quote), as a peer may send.
func binaryName() *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(queryMsg("\xff\xfe\"x.example.", dns.TypeCNAME))
	m.Answer = []dns.RR{&dns.CNAME{Hdr: rrHdr("\xff\xfe\"x.example.", dns.TypeCNAME), Target: "t\x80.example."}}
	return m
}

// updateDelete holds RRs without RDATA and of an unknown type.
func updateDelete() *dns.Msg {
	m := new(dns.Msg)
	m.SetUpdate("example.org.")
	m.Id = 4660
	m.Ns = []dns.RR{
		&dns.RR_Header{Name: "old.example.org.", Rrtype: dns.TypeA, Class: dns.ClassANY},
		&dns.RFC3597{Hdr: rrHdr("new.example.org.", 65280), Rdata: "c0ffee"},
	}
	return m
}

func twoQuestions() *dns.Msg {
	m := queryMsg("a.example.", dns.TypeA)
	m.Question = append(m.Question, dns.Question{Name: "b.example.", Qtype: dns.TypeMX, Qclass: dns.ClassCHAOS})
	return m
}

const (
	aAnswerHeader = `{"ID":4660,"QR":1,"Opcode":0,"AA":0,"TC":0,"RD":1,"RA":1,"AD":0,"CD":0,"RCODE":0,` +
		`"QDCOUNT":1,"ANCOUNT":1,"NSCOUNT":0,"ARCOUNT":0,` +
		`"QNAME":"example.org.","QTYPE":1,"QTYPEname":"A","QCLASS":1,"QCLASSname":"IN"`
	aAnswerRRs = `,"answerRRs":[{"NAME":"example.org.","TYPE":1,"TYPEname":"A","CLASS":1,"CLASSname":"IN","TTL":300,"rdataA":"192.0.2.1"}],` +
		`"authorityRRs":[],"additionalRRs":[]`
)

var msgCases = []struct {
	name    string
	msg     func() *dns.Msg
	full    bool
	want    string
	members map[string]any // checked on the decoded object
}{
	{
		name: "A answer", msg: aAnswer, full: true,
		want:    aAnswerHeader + aAnswerRRs + `}`,
		members: map[string]any{"ID": 4660.0, "QR": 1.0, "RA": 1.0, "QNAME": "example.org.", "QTYPEname": "A", "ANCOUNT": 1.0},
	},
	{
		name: "A answer summary", msg: aAnswer, full: false,
		want:    aAnswerHeader + `}`,
		members: map[string]any{"ANCOUNT": 1.0, "QTYPE": 1.0},
	},
	{
		name: "NXDOMAIN with SOA", msg: nxdomain, full: true,
		want: `{"ID":4660,"QR":1,"Opcode":0,"AA":1,"TC":0,"RD":1,"RA":0,"AD":0,"CD":0,"RCODE":3,` +
			`"QDCOUNT":1,"ANCOUNT":0,"NSCOUNT":1,"ARCOUNT":0,` +
			`"QNAME":"nope.example.org.","QTYPE":28,"QTYPEname":"AAAA","QCLASS":1,"QCLASSname":"IN",` +
			`"answerRRs":[],"authorityRRs":[{"NAME":"example.org.","TYPE":6,"TYPEname":"SOA","CLASS":1,"CLASSname":"IN","TTL":300,` +
			`"rdataSOA":"ns.example.org. hostmaster.example.org. 2024010101 7200 3600 1209600 300"}],"additionalRRs":[]}`,
		members: map[string]any{"RCODE": 3.0, "AA": 1.0, "NSCOUNT": 1.0},
	},
	{
		name: "EDNS0 OPT", msg: ednsCookie, full: true,
		want: `{"ID":4660,"QR":1,"Opcode":0,"AA":0,"TC":0,"RD":1,"RA":0,"AD":0,"CD":0,"RCODE":7,` +
			`"QDCOUNT":1,"ANCOUNT":0,"NSCOUNT":0,"ARCOUNT":1,` +
			`"QNAME":"example.org.","QTYPE":1,"QTYPEname":"A","QCLASS":1,"QCLASSname":"IN",` +
			`"answerRRs":[],"authorityRRs":[],"additionalRRs":[{"NAME":".","TYPE":41,"TYPEname":"OPT","CLASS":1232,"CLASSname":"CLASS1232",` +
			`"TTL":16809984,"RDATAHEX":"000A00080102030405060708"}]}`,
		members: map[string]any{"RCODE": 7.0, "ARCOUNT": 1.0},
	},
	{
		name: "EDNS0 OPT summary", msg: ednsCookie, full: false,
		want: `{"ID":4660,"QR":1,"Opcode":0,"AA":0,"TC":0,"RD":1,"RA":0,"AD":0,"CD":0,"RCODE":7,` +
			`"QDCOUNT":1,"ANCOUNT":0,"NSCOUNT":0,"ARCOUNT":1,` +
			`"QNAME":"example.org.","QTYPE":1,"QTYPEname":"A","QCLASS":1,"QCLASSname":"IN"}`,
		members: map[string]any{"ARCOUNT": 1.0},
	},
	{
		name: "TXT with quotes and control bytes", msg: txtAnswer, full: true,
		want: `{"ID":4660,"QR":1,"Opcode":0,"AA":0,"TC":0,"RD":1,"RA":0,"AD":0,"CD":0,"RCODE":0,` +
			`"QDCOUNT":1,"ANCOUNT":1,"NSCOUNT":0,"ARCOUNT":0,` +
			`"QNAME":"txt.example.org.","QTYPE":16,"QTYPEname":"TXT","QCLASS":1,"QCLASSname":"IN",` +
			`"answerRRs":[{"NAME":"txt.example.org.","TYPE":16,"TYPEname":"TXT","CLASS":1,"CLASSname":"IN","TTL":300,` +
			`"rdataTXT":"\"say \\\"hi\\\"\\000\\010\" \"x\\255\""}],"authorityRRs":[],"additionalRRs":[]}`,
		members: map[string]any{"QTYPEname": "TXT"},
	},
	{
		name: "non-UTF-8 label bytes", msg: binaryName, full: true,
		want: `{"ID":4660,"QR":1,"Opcode":0,"AA":0,"TC":0,"RD":1,"RA":0,"AD":0,"CD":0,"RCODE":0,` +
			`"QDCOUNT":1,"ANCOUNT":1,"NSCOUNT":0,"ARCOUNT":0,` +
			`"QNAME":"\\255\\254\\\"x.example.","QTYPE":5,"QTYPEname":"CNAME","QCLASS":1,"QCLASSname":"IN",` +
			`"answerRRs":[{"NAME":"\\255\\254\\\"x.example.","TYPE":5,"TYPEname":"CNAME","CLASS":1,"CLASSname":"IN","TTL":300,` +
			`"rdataCNAME":"t\\128.example."}],"authorityRRs":[],"additionalRRs":[]}`,
		members: map[string]any{"QNAME": `\255\254\"x.example.`},
	},
	{
		name: "RRs without RDATA or of unknown type", msg: updateDelete, full: true,
		want: `{"ID":4660,"QR":0,"Opcode":5,"AA":0,"TC":0,"RD":0,"RA":0,"AD":0,"CD":0,"RCODE":0,` +
			`"QDCOUNT":1,"ANCOUNT":0,"NSCOUNT":2,"ARCOUNT":0,` +
			`"QNAME":"example.org.","QTYPE":6,"QTYPEname":"SOA","QCLASS":1,"QCLASSname":"IN",` +
			`"answerRRs":[],"authorityRRs":[` +
			`{"NAME":"old.example.org.","TYPE":1,"TYPEname":"A","CLASS":255,"CLASSname":"ANY","TTL":0,"RDATAHEX":""},` +
			`{"NAME":"new.example.org.","TYPE":65280,"TYPEname":"TYPE65280","CLASS":1,"CLASSname":"IN","TTL":300,"RDATAHEX":"C0FFEE"}` +
			`],"additionalRRs":[]}`,
		members: map[string]any{"Opcode": 5.0, "NSCOUNT": 2.0},
	},
	{
		name: "two questions", msg: twoQuestions, full: false,
		want: `{"ID":4660,"QR":0,"Opcode":0,"AA":0,"TC":0,"RD":1,"RA":0,"AD":0,"CD":0,"RCODE":0,` +
			`"QDCOUNT":2,"ANCOUNT":0,"NSCOUNT":0,"ARCOUNT":0,` +
			`"QNAME":"a.example.","QTYPE":1,"QTYPEname":"A","QCLASS":1,"QCLASSname":"IN",` +
			`"questionRRs":[{"NAME":"a.example.","TYPE":1,"TYPEname":"A","CLASS":1,"CLASSname":"IN"},` +
			`{"NAME":"b.example.","TYPE":15,"TYPEname":"MX","CLASS":3,"CLASSname":"CH"}]}`,
		members: map[string]any{"QDCOUNT": 2.0, "QNAME": "a.example."},
	},
	{
		name: "no question", msg: func() *dns.Msg { return &dns.Msg{MsgHdr: dns.MsgHdr{Id: 7, Response: true, Rcode: dns.RcodeRefused}} }, full: true,
		want: `{"ID":7,"QR":1,"Opcode":0,"AA":0,"TC":0,"RD":0,"RA":0,"AD":0,"CD":0,"RCODE":5,` +
			`"QDCOUNT":0,"ANCOUNT":0,"NSCOUNT":0,"ARCOUNT":0,"answerRRs":[],"authorityRRs":[],"additionalRRs":[]}`,
		members: map[string]any{"RCODE": 5.0},
	},
}

// decodeObject checks that out is valid JSON for one object and returns it.
func decodeObject(t *testing.T, out []byte) map[string]any {
	t.Helper()
	if !json.Valid(out) {
		t.Fatalf("not valid JSON: %s", out)
	}
	var obj map[string]any
	if err := json.Unmarshal(out, &obj); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return obj
}

func checkMembers(t *testing.T, obj map[string]any, want map[string]any) {
	t.Helper()
	for k, v := range want {
		if obj[k] != v {
			t.Errorf("member %q = %#v, want %#v", k, obj[k], v)
		}
	}
}

var rrArrays = []string{"answerRRs", "authorityRRs", "additionalRRs"}

func TestRFC8427MsgJSON(t *testing.T) {
	for _, tc := range msgCases {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.msg()
			out := appendMsgJSON([]byte("x"), m, tc.full)[1:]
			if string(out) != tc.want {
				t.Errorf("got\n%s\nwant\n%s", out, tc.want)
			}
			obj := decodeObject(t, out)
			checkMembers(t, obj, tc.members)
			for _, k := range rrArrays {
				if _, ok := obj[k]; ok != tc.full {
					t.Errorf("full=%v, but member %q present=%v", tc.full, k, ok)
				}
			}
			if !tc.full {
				return
			}
			// Each RR object decodes to its own header values.
			for i, rrs := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
				arr := obj[rrArrays[i]].([]any)
				if len(arr) != len(rrs) {
					t.Fatalf("%s has %d RRs, want %d", rrArrays[i], len(arr), len(rrs))
				}
				for j, rr := range rrs {
					checkMembers(t, arr[j].(map[string]any), map[string]any{
						"TYPE": float64(rr.Header().Rrtype), "CLASS": float64(rr.Header().Class), "TTL": float64(rr.Header().Ttl),
					})
				}
			}
		})
	}
}

// A wire message that unpacks renders exactly as the unpacked message.
func TestRFC8427RawMatchesMsg(t *testing.T) {
	for _, tc := range msgCases {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := tc.msg().Pack()
			if err != nil {
				t.Fatal(err)
			}
			if got := appendRawMsgJSON(nil, raw, tc.full); string(got) != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestRFC8427Nil(t *testing.T) {
	for _, out := range [][]byte{
		appendMsgJSON(nil, nil, true),
		appendRawMsgJSON(nil, nil, true),
		appendRawMsgJSON(nil, []byte{}, false),
	} {
		if string(out) != "null" {
			t.Errorf("got %s, want null", out)
		}
	}
}

func header(id, flags, qd, an, ns, ar uint16) []byte {
	b := make([]byte, 0, 12)
	for _, v := range []uint16{id, flags, qd, an, ns, ar} {
		b = append(b, byte(v>>8), byte(v))
	}
	return b
}

func TestRFC8427RawMalformed(t *testing.T) {
	question := []byte{7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0, 0, 1, 0, 1}
	random := make([]byte, 300)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	big := append(header(9, 0x8180, 0, 1, 0, 0), make([]byte, 5000)...)
	for i := 12; i < len(big); i++ {
		big[i] = 0xc0 // pointers everywhere
	}
	for _, tc := range []struct {
		name    string
		raw     []byte
		members map[string]any // nil: the header could not be read
	}{
		{"truncated header", []byte{0x12, 0x34, 0x81}, nil},
		{"eleven octets", header(1, 0, 1, 0, 0, 0)[:11], nil},
		{"compression pointer loop", append(header(0x1234, 0x0100, 1, 0, 0, 0), 0xc0, 12, 0, 1, 0, 1),
			map[string]any{"ID": 4660.0, "QR": 0.0, "RD": 1.0, "QDCOUNT": 1.0}},
		{"pointer past the end", append(header(2, 0x8183, 1, 0, 0, 0), 0xc0, 0xff),
			map[string]any{"QR": 1.0, "RCODE": 3.0}},
		{"question count larger than content", header(3, 0x8180, 2, 0, 0, 0),
			map[string]any{"QDCOUNT": 2.0, "error": errCountsExceedContent.Error()}},
		{"answer count larger than content", append(header(4, 0x8580, 1, 3, 0, 0), question...),
			map[string]any{"ANCOUNT": 3.0, "AA": 1.0, "QNAME": "example.", "QTYPEname": "A"}},
		{"truncated RR", append(append(header(5, 0x8180, 1, 1, 0, 0), question...), 0xc0, 12, 0, 1, 0, 1, 0, 0),
			map[string]any{"ID": 5.0, "ANCOUNT": 1.0}},
		{"random bytes", random, map[string]any{}},
		{"oversized", big, map[string]any{"ID": 9.0, "ANCOUNT": 1.0, "messageOctetsTruncated": 1.0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, full := range []bool{false, true} {
				obj := decodeObject(t, appendRawMsgJSON(nil, tc.raw, full))
				octets := tc.raw[:min(len(tc.raw), maxMessageOctetsHEX)]
				checkMembers(t, obj, map[string]any{"messageOctetsHEX": strings.ToUpper(hex.EncodeToString(octets))})
				if msg, _ := obj["error"].(string); msg == "" {
					t.Errorf("no error member: %v", obj)
				}
				if _, ok := obj["messageOctetsTruncated"]; ok != (len(octets) < len(tc.raw)) {
					t.Errorf("messageOctetsTruncated present=%v for %d octets", ok, len(tc.raw))
				}
				if _, ok := obj["ID"]; ok != (tc.members != nil) {
					t.Errorf("ID present=%v, want %v", ok, tc.members != nil)
				}
				checkMembers(t, obj, tc.members)
			}
		})
	}
}

// Rendering must not write to the message: the plugin renders messages that
// other goroutines still hold. Run with -race.
func TestRFC8427ConcurrentRender(t *testing.T) {
	m := ednsCookie()
	m.Answer = txtAnswer().Answer
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				appendMsgJSON(nil, m, true)
			}
		})
	}
	wg.Wait()
}

func FuzzRawMsgJSON(f *testing.F) {
	for _, m := range []*dns.Msg{aAnswer(), nxdomain(), ednsCookie(), txtAnswer(), binaryName(), updateDelete(), twoQuestions()} {
		raw, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
		f.Add(raw[:len(raw)-3])
	}
	f.Add([]byte{})
	f.Add(header(1, 0, 1, 0, 0, 0)[:7])
	f.Add(append(header(0x1234, 0x0100, 1, 0, 0, 0), 0xc0, 12, 0, 1, 0, 1))
	f.Add(header(3, 0x8180, 2, 9, 9, 9))
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, full := range []bool{false, true} {
			out := appendRawMsgJSON(nil, raw, full)
			if !json.Valid(out) {
				t.Fatalf("full=%v: not valid JSON: %s", full, out)
			}
			if len(raw) == 0 {
				continue
			}
			var obj map[string]any
			if err := json.Unmarshal(out, &obj); err != nil {
				t.Fatalf("full=%v: not an object: %v: %s", full, err, out)
			}
			if _, ok := obj["answerRRs"]; ok != (full && len(raw) >= dnsHeaderLen) {
				t.Fatalf("full=%v: answerRRs present=%v: %s", full, ok, out)
			}
		}
	})
}

// TestRdataCommonMatchesText: the fast path for common types writes exactly
// what the path through RR.String() writes, for random records, names that
// need escaping and odd address lengths included.
func TestRdataCommonMatchesText(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{".", "example.org.", "a.b.c.", `we\.ird.`, `sp\032ace.example.`, "\\\"q.", `\200\201.x.`, "x\\\\y.", "UPPER.Case."}
	name := func() string { return names[rng.IntN(len(names))] }
	ip := func(n int) net.IP {
		b := make(net.IP, n)
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		if n == 16 && rng.IntN(4) == 0 { // IPv4-mapped
			copy(b, net.IPv4(b[12], b[13], b[14], b[15]))
		}
		if n == 16 && rng.IntN(4) == 0 { // runs of zeros
			clear(b[rng.IntN(8) : rng.IntN(8)+8])
		}
		return b
	}
	h := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name(), Rrtype: t, Class: dns.ClassINET, Ttl: 30}
	}
	common := 0
	for range 3000 {
		var rr dns.RR
		switch rng.IntN(7) {
		case 0:
			rr = &dns.A{Hdr: h(dns.TypeA), A: ip([]int{4, 16, 16, 3}[rng.IntN(4)])}
		case 1:
			rr = &dns.AAAA{Hdr: h(dns.TypeAAAA), AAAA: ip([]int{16, 16, 4}[rng.IntN(3)])}
		case 2:
			rr = &dns.CNAME{Hdr: h(dns.TypeCNAME), Target: name()}
		case 3:
			rr = &dns.NS{Hdr: h(dns.TypeNS), Ns: name()}
		case 4:
			rr = &dns.PTR{Hdr: h(dns.TypePTR), Ptr: name()}
		case 5:
			rr = &dns.MX{Hdr: h(dns.TypeMX), Preference: uint16(rng.IntN(65536)), Mx: name()}
		case 6:
			rr = &dns.SRV{Hdr: h(dns.TypeSRV), Priority: uint16(rng.IntN(65536)), Weight: uint16(rng.IntN(65536)), Port: uint16(rng.IntN(65536)), Target: name()}
		}
		fast, ok := appendRdataCommon([]byte("{"), rr)
		if !ok {
			continue
		}
		common++
		if slow := appendRdataText([]byte("{"), rr); string(fast) != string(slow) {
			t.Errorf("%s:\nfast %s\ntext %s", rr, fast, slow)
		}
	}
	if common < 2000 {
		t.Errorf("only %d of 3000 records took the fast path", common)
	}
}
