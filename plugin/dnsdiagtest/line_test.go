package dnsdiagtest

import (
	"strings"
	"testing"
)

// realLine is a session line the built binary logged for one A query
// forwarded to a template upstream (dnsdiag { log all }).
const realLine = `[INFO] plugin/dnsdiag: {"Status":"Succeeded","BitMap":15,"Session":1,"Server":"dns://127.0.0.1:25353","Client":"127.0.0.1:54708","Protocol":"udp","QName":"www.ok.test.","QType":"A","Rcode":"NOERROR","Time":"2026-12-01T19:48:26.854368263Z","DurationMs":0.651,"Upstreams":[{"Address":"127.0.0.1:25354","Protocol":"udp","Rcode":"NOERROR","DurationMs":0.629}],"Messages":[{"Type":"CLIENT_QUERY","Time":"2026-12-01T19:48:26.854368263Z","QueryAddress":"127.0.0.1:54708","ResponseAddress":"127.0.0.1:25353","Protocol":"udp","Message":{"ID":7019,"QR":0,"Opcode":0,"AA":0,"TC":0,"RD":1,"RA":0,"AD":0,"CD":0,"RCODE":0,"QDCOUNT":1,"ANCOUNT":0,"NSCOUNT":0,"ARCOUNT":0,"QNAME":"www.ok.test.","QTYPE":1,"QTYPEname":"A","QCLASS":1,"QCLASSname":"IN","answerRRs":[],"authorityRRs":[],"additionalRRs":[]}},{"Type":"FORWARDER_QUERY","Time":"2026-12-01T19:48:26.855004611Z","QueryAddress":"127.0.0.1:60635","ResponseAddress":"127.0.0.1:25354","Protocol":"udp","Message":{"ID":7019,"QR":0,"Opcode":0,"AA":0,"TC":0,"RD":1,"RA":0,"AD":0,"CD":0,"RCODE":0,"QDCOUNT":1,"ANCOUNT":0,"NSCOUNT":0,"ARCOUNT":0,"QNAME":"www.ok.test.","QTYPE":1,"QTYPEname":"A","QCLASS":1,"QCLASSname":"IN","answerRRs":[],"authorityRRs":[],"additionalRRs":[]}},{"Type":"FORWARDER_RESPONSE","Time":"2026-12-01T19:48:26.855007276Z","QueryAddress":"127.0.0.1:60635","ResponseAddress":"127.0.0.1:25354","Protocol":"udp","Message":{"ID":7019,"QR":1,"Opcode":0,"AA":1,"TC":0,"RD":1,"RA":0,"AD":0,"CD":0,"RCODE":0,"QDCOUNT":1,"ANCOUNT":1,"NSCOUNT":0,"ARCOUNT":0,"QNAME":"www.ok.test.","QTYPE":1,"QTYPEname":"A","QCLASS":1,"QCLASSname":"IN","answerRRs":[{"NAME":"www.ok.test.","TYPE":1,"TYPEname":"A","CLASS":1,"CLASSname":"IN","TTL":60,"rdataA":"192.0.2.1"}],"authorityRRs":[],"additionalRRs":[]}},{"Type":"CLIENT_RESPONSE","Time":"2026-12-01T19:48:26.855018887Z","QueryAddress":"127.0.0.1:54708","ResponseAddress":"127.0.0.1:25353","Protocol":"udp","Message":{"ID":7019,"QR":1,"Opcode":0,"AA":1,"TC":0,"RD":1,"RA":0,"AD":0,"CD":0,"RCODE":0,"QDCOUNT":1,"ANCOUNT":1,"NSCOUNT":0,"ARCOUNT":0,"QNAME":"www.ok.test.","QTYPE":1,"QTYPEname":"A","QCLASS":1,"QCLASSname":"IN","answerRRs":[{"NAME":"www.ok.test.","TYPE":1,"TYPEname":"A","CLASS":1,"CLASSname":"IN","TTL":60,"rdataA":"192.0.2.1"}],"authorityRRs":[],"additionalRRs":[]}}]}`

func TestParseRealLine(t *testing.T) {
	l, ok, err := Parse(realLine)
	if !ok || err != nil {
		t.Fatalf("Parse: ok %v, err %v", ok, err)
	}
	if l.Status != "Succeeded" || l.BitMap != 15 || l.Session != 1 || l.QName != "www.ok.test." || l.QType != "A" ||
		l.RcodeString() != "NOERROR" || l.Protocol != "udp" || l.Client != "127.0.0.1:54708" || l.DurationMs != 0.651 {
		t.Errorf("fields: %s", l.Summary())
	}
	if len(l.Upstreams) != 1 || l.Upstreams[0].Address != "127.0.0.1:25354" || RcodeString(l.Upstreams[0].Rcode) != "NOERROR" {
		t.Errorf("Upstreams: %+v", l.Upstreams)
	}
	if got := strings.Join(l.Types(), ","); got != "CLIENT_QUERY,FORWARDER_QUERY,FORWARDER_RESPONSE,CLIENT_RESPONSE" || l.Count("FORWARDER_QUERY") != 1 {
		t.Errorf("legs %s", got)
	}
	if h := l.Messages[3].Header(t); h.ID != 7019 || h.QR != 1 || h.ANCOUNT != 1 || h.QNAME != "www.ok.test." {
		t.Errorf("CLIENT_RESPONSE header %+v", h)
	}
	if l.Raw != strings.TrimPrefix(realLine, LinePrefix) {
		t.Errorf("Raw is not the JSON as logged: %s", l.Raw)
	}
	if l.Hints != nil {
		t.Errorf("Hints %+v: the line has none", l.Hints)
	}
}

// A line with members Line does not know and with hints still parses: the
// schema can grow on either side.
func TestParseHintsAndUnknownMembers(t *testing.T) {
	l, ok, err := Parse(LinePrefix + `{"Status":"Failed","Future":[1,2],"Hints":[{"Code":"retransmit_after_answer","Text":"the client sent this query again","EarlierSession":7,"SamePort":true}]}`)
	if !ok || err != nil {
		t.Fatalf("Parse: ok %v, err %v", ok, err)
	}
	if l.Status != "Failed" || len(l.Hints) != 1 || l.Hints[0].Code != "retransmit_after_answer" ||
		l.Hints[0].Details["EarlierSession"] != 7.0 || l.Hints[0].Details["SamePort"] != true || len(l.Hints[0].Details) != 2 {
		t.Errorf("got %+v", l)
	}
}

func TestParseOtherOutput(t *testing.T) {
	for _, s := range []string{
		"CoreDNS-1.15.0",
		"[WARNING] plugin/dnsdiag: rate limit: suppressed 3 session lines",
		"[INFO] plugin/dnsdiag: not a session",
	} {
		if _, ok, err := Parse(s); ok || err != nil {
			t.Errorf("Parse(%q): ok %v, err %v; want neither", s, ok, err)
		}
	}
	if _, ok, err := Parse(LinePrefix + `{"Status":`); !ok || err == nil {
		t.Errorf("truncated session line: ok %v, err %v; want ok and an error", ok, err)
	}
}
