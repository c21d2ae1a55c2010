package e2e

import (
	"net"
	"strconv"
	"testing"
	"time"

	dnstap "github.com/dnstap/golang-dnstap"
	"github.com/miekg/dns"
	"google.golang.org/protobuf/proto"
)

// tapReceiver is a dnstap collector: a frame stream listener on 127.0.0.1
// that decodes every frame it gets.
type tapReceiver struct {
	ln     net.Listener
	frames chan []byte
}

func newTapReceiver(t *testing.T) *tapReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &tapReceiver{ln: ln, frames: make(chan []byte, 1024)}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			in, err := dnstap.NewFrameStreamInputTimeout(conn, true, 5*time.Second)
			if err != nil {
				conn.Close()
				continue
			}
			go in.ReadInto(r.frames)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return r
}

func (r *tapReceiver) port() int { return r.ln.Addr().(*net.TCPAddr).Port }

// collect gathers decoded dnstap messages until done says it has enough,
// at most 10 s.
func (r *tapReceiver) collect(t *testing.T, msgs []*dnstap.Dnstap, done func([]*dnstap.Dnstap) bool) []*dnstap.Dnstap {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !done(msgs) {
		select {
		case b := <-r.frames:
			d := new(dnstap.Dnstap)
			if err := proto.Unmarshal(b, d); err != nil {
				t.Fatalf("bad dnstap frame: %v", err)
			}
			msgs = append(msgs, d)
		case <-deadline:
			t.Fatalf("timed out collecting dnstap messages; got %d", len(msgs))
		}
	}
	return msgs
}

// A user's own dnstap next to dnsdiag: it still receives every message
// once, and its extra field can carry dnsdiag's session id on all four
// message types, matching the Session of the logged line.
func TestUserDnstapCarriesSessionID(t *testing.T) {
	t.Parallel()
	rx := newTapReceiver(t)
	s := Start(t, `
.:{{PORT}} {
    bind 127.0.0.1
    `+logAll+`
    dnstap tcp://127.0.0.1:{{DT}} full {
        extra "{/dnsdiag/session}"
    }
    forward . 127.0.0.1:{{UP}}
}
`+richUpstream, map[string]int{"DT": rx.port()})

	names := map[string]int{"d1.ok.test": dns.RcodeSuccess, "d2.nx.test": dns.RcodeNameError, "d3.fail.test": dns.RcodeServerFailure}
	sessions := map[string]string{} // session id -> qname
	for name, rcode := range names {
		r := Query(t, "udp", s.Addr("PORT"), name, dns.TypeA, qTimeout)
		r.MustAnswer(t, rcode)
		l := s.WaitClient(r)
		check(t, l, want{BitMap: 15, QName: name + ".", Types: legs15, Upstreams: 1})
		sessions[strconv.FormatUint(l.Session, 10)] = name + "."
	}

	count := func(msgs []*dnstap.Dnstap) map[string]map[dnstap.Message_Type]int {
		by := map[string]map[dnstap.Message_Type]int{}
		for _, d := range msgs {
			id := string(d.GetExtra())
			if by[id] == nil {
				by[id] = map[dnstap.Message_Type]int{}
			}
			by[id][d.GetMessage().GetType()]++
		}
		return by
	}
	msgs := rx.collect(t, nil, func(msgs []*dnstap.Dnstap) bool { return len(msgs) >= 4*len(names) })
	// Give a duplicate the chance to show up.
	time.Sleep(300 * time.Millisecond)
	msgs = rx.collect(t, msgs, func(msgs []*dnstap.Dnstap) bool { return len(rx.frames) == 0 })

	by := count(msgs)
	for id, name := range sessions {
		got := by[id]
		for _, typ := range []dnstap.Message_Type{dnstap.Message_CLIENT_QUERY, dnstap.Message_CLIENT_RESPONSE, dnstap.Message_FORWARDER_QUERY, dnstap.Message_FORWARDER_RESPONSE} {
			if got[typ] != 1 {
				t.Errorf("%s (session %s): user dnstap got %d %v messages with the session id, want 1 (all: %v)", name, id, got[typ], typ, got)
			}
		}
	}
	if len(msgs) != 4*len(names) {
		t.Errorf("user dnstap got %d messages for %d queries, want %d; by extra: %v", len(msgs), len(names), 4*len(names), by)
	}
}
