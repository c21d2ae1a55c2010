package dnsdiag

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metadata"
	"github.com/coredns/coredns/plugin/test"
	tap "github.com/dnstap/golang-dnstap"
	"github.com/miekg/dns"
)

// Fuzz targets for everything that reads a DNS message or a dnstap payload
// from outside dnsdiag, and for the session line built from them. The
// renderers alone are fuzzed by FuzzRawMsgJSON and FuzzAppendJSONString.
//
//	make fuzz                       each target for FUZZTIME (20s)
//	go test -run '^$' -fuzz '^FuzzTapSink$' -fuzztime 60s ./plugin/dnsdiag/
//
// A plain `go test` runs the seeds below and testdata/fuzz as regular tests.

// fuzzLines flushes the log writer and returns the session lines written
// since the last call, failing on any dnsdiag line that is not valid JSON.
func fuzzLines(t *testing.T, logs *logCapture) []line {
	t.Helper()
	// lines.flush polls every 5 ms; yielding instead keeps fuzzing fast.
	for deadline := time.Now().Add(5 * time.Second); lines.pending.Load() > 0 && time.Now().Before(deadline); {
		runtime.Gosched()
	}
	return parseSessionLines(t, logs.Take())
}

// fuzzTap builds a dnstap payload from fuzzed fields. Bits of shape leave
// fields out, as a producer other than forward might.
func fuzzTap(shape uint8, typ int32, extra, qaddr, raddr []byte, qport, rport uint32, proto int32, qmsg, rmsg []byte, sec uint64, nsec uint32) *tap.Dnstap {
	dt := tap.Dnstap_MESSAGE
	d := &tap.Dnstap{Type: &dt, Extra: extra}
	if shape&1 != 0 {
		return d // no Message at all
	}
	mt := tap.Message_Type(typ)
	m := &tap.Message{Type: &mt}
	if shape&2 == 0 {
		m.QueryAddress, m.ResponseAddress = qaddr, raddr
		m.QueryPort, m.ResponsePort = &qport, &rport
	}
	if shape&4 == 0 {
		p := tap.SocketProtocol(proto)
		m.SocketProtocol = &p
	}
	if shape&8 == 0 {
		m.QueryMessage = qmsg
	}
	if shape&16 == 0 {
		m.ResponseMessage = rmsg
	}
	if shape&32 == 0 {
		m.QueryTimeSec, m.QueryTimeNsec = &sec, &nsec
	}
	d.Message = m
	return d
}

// closeBackgrounds ends every background session still waiting for an
// answer, as its timer would, so that none outlives the iteration.
func closeBackgrounds(d *Dnsdiag) {
	d.bg.mu.Lock()
	open := make(map[backgroundKey]*session, len(d.bg.open))
	for k, s := range d.bg.open {
		open[k] = s
		s.timer.Stop()
	}
	d.bg.mu.Unlock()
	for k, s := range open {
		d.bg.close(d, k, s)
	}
}

// packedExchange is a query for example.org A with id, and its reply with
// rcode, as messages and packed.
func packedExchange(tb testing.TB, id uint16, rcode int) (q, r *dns.Msg, qb, rb []byte) {
	q = query("example.org", dns.TypeA)
	q.Id = id
	r = new(dns.Msg)
	r.SetRcode(q, rcode)
	return q, r, packed(tb, q), packed(tb, r)
}

func packed(tb testing.TB, m *dns.Msg) []byte {
	b, err := m.Pack()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzTapSink feeds arbitrary dnstap payloads to an instance's sink: on
// their own (background sessions, untracked or stale ids) and, with the id
// of a client session in flight, into that session. Nothing may panic,
// every line must be valid JSON, the client session must still be logged
// exactly once, and no session may stay in flight.
func FuzzTapSink(f *testing.F) {
	_, _, qb, rb := packedExchange(f, 4242, dns.RcodeServerFailure)
	lo4, lo6 := []byte(net.IPv4(127, 0, 0, 1).To4()), []byte(net.IPv6loopback)
	now := uint64(time.Now().Unix())
	fq, fr := int32(tap.Message_FORWARDER_QUERY), int32(tap.Message_FORWARDER_RESPONSE)
	udp, tcp := int32(tap.SocketProtocol_UDP), int32(tap.SocketProtocol_TCP)
	// shape, mode, type, extra, addresses, ports, protocol, messages, time
	f.Add(uint8(0), uint8(0), fq, []byte("-"), lo4, lo4, uint32(5353), uint32(53), udp, qb, []byte(nil), now, uint32(1))
	f.Add(uint8(0), uint8(0), fr, []byte("-"), lo4, lo4, uint32(5353), uint32(53), udp, qb, rb, now, uint32(1))
	f.Add(uint8(0), uint8(1), fq, []byte(""), lo6, lo6, uint32(5353), uint32(853), tcp, qb, []byte(nil), now, uint32(1))
	f.Add(uint8(0), uint8(3), fr, []byte(""), lo6, lo4, uint32(0), uint32(65535), int32(tap.SocketProtocol_DOH), qb, rb, now, uint32(999999999))
	f.Add(uint8(0), uint8(1), fr, []byte(""), []byte{1, 2, 3}, []byte{}, uint32(1<<31), uint32(1<<20), int32(99), qb[:5], rb[:13], uint64(1<<63), uint32(1<<31))
	f.Add(uint8(0), uint8(0), fr, []byte("0"), lo4, lo4, uint32(1), uint32(2), udp, []byte{}, []byte{0xff, 0xff}, uint64(0), uint32(0))
	f.Add(uint8(0), uint8(0), fq, []byte("18446744073709551615"), lo4, lo4, uint32(1), uint32(2), udp, qb, rb, now, uint32(0))
	f.Add(uint8(0), uint8(0), int32(tap.Message_CLIENT_QUERY), []byte("-"), lo4, lo4, uint32(1), uint32(2), udp, qb, rb, now, uint32(0))
	f.Add(uint8(1), uint8(0), fq, []byte("-"), lo4, lo4, uint32(1), uint32(2), udp, qb, rb, now, uint32(0))
	f.Add(uint8(62), uint8(1), fq, []byte("x"), []byte(nil), []byte(nil), uint32(0), uint32(0), int32(0), []byte(nil), []byte(nil), uint64(0), uint32(0))
	f.Add(uint8(0), uint8(5), fr, []byte("-"), lo4, lo4, uint32(1), uint32(2), udp, qb, rb, now, uint32(0))

	logs := captureLog(f)
	f.Fuzz(func(t *testing.T, shape, mode uint8, typ int32, extra, qaddr, raddr []byte, qport, rport uint32, proto int32, qmsg, rmsg []byte, sec uint64, nsec uint32) {
		p := fuzzTap(shape, typ, extra, qaddr, raddr, qport, rport, proto, qmsg, rmsg, sec, nsec)
		conf := "dnsdiag {\n log all\n rate 0\n}"
		if mode&4 != 0 {
			conf = "dnsdiag {\n log all\n rate 0\n messages header\n}"
		}
		inflight := sessions.inflight()

		// On its own: a background session, an untracked tap, or nothing.
		// Twice, so a query leg can meet its response leg.
		var d *Dnsdiag
		d = newTestDiag(t, conf, plugin.HandlerFunc(func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
			// In flight: what dnstap does for forward, with the Extra
			// replaced by this session's id (mode bit 0) or left fuzzed.
			pp := &tap.Dnstap{Type: p.Type, Message: p.Message, Extra: p.Extra}
			if mode&1 != 0 {
				pp.Extra = []byte(metadata.ValueFunc(ctx, sessionLabel)())
			}
			for range 1 + int(mode>>4&3) {
				(&tapSink{d: d}).Dnstap(pp)
			}
			return answer(dns.RcodeSuccess)(ctx, w, r)
		}))
		sink := &tapSink{d: d}
		sink.Dnstap(p)
		sink.Dnstap(p)
		closeBackgrounds(d)
		for _, l := range fuzzLines(t, logs) {
			if !l.Background {
				t.Fatalf("a tap alone made a client session line: %+v", l)
			}
		}

		// Into a live client session.
		d.hasForwards.Store(true)
		rw := &test.ResponseWriter{TCP: mode&2 != 0}
		if _, err := d.ServeDNS(context.Background(), rw, query("example.org", dns.TypeA)); err != nil {
			t.Fatalf("ServeDNS: %v", err)
		}
		closeBackgrounds(d)
		client := 0
		for _, l := range fuzzLines(t, logs) {
			if l.Background {
				continue
			}
			client++
			if l.QName != "example.org." || l.BitMap&3 != 3 || l.Messages[0].Type != "CLIENT_QUERY" {
				t.Errorf("client session line lost its client legs: %+v", l)
			}
		}
		if client != 1 {
			t.Fatalf("%d client session lines, want 1", client)
		}
		if got := sessions.inflight(); got != inflight {
			t.Fatalf("%d sessions in flight after the query, want %d", got, inflight)
		}
	})
}

// FuzzSessionLine runs a fuzzed client query through ServeDNS, in front of
// a next plugin that answers with fuzzed raw bytes (Write), a reply
// (WriteMsg), both or neither, returns a fuzzed rcode and error, or panics.
// Nothing but the deliberate panic may escape, the session is logged
// exactly once as valid JSON, and it says what the client got.
func FuzzSessionLine(f *testing.F) {
	_, r, qb, rb := packedExchange(f, 7, dns.RcodeNameError)
	e := query("example.org", dns.TypeTXT)
	e.SetEdns0(1232, true)
	e.Question = append(e.Question, dns.Question{Name: ".", Qtype: dns.TypeNS, Qclass: dns.ClassCHAOS})
	eb := packed(f, e)
	tc := r.Copy()
	tc.Truncated = true
	// query, raw response, mode, rcode
	f.Add(qb, rb, uint8(1), 0)
	f.Add(qb, rb, uint8(2), 0)
	f.Add(qb, rb, uint8(3), 0)
	f.Add(qb, []byte(nil), uint8(0), dns.RcodeServerFailure)
	f.Add(qb, rb[:11], uint8(1), dns.RcodeRefused)
	f.Add(eb, packed(f, tc), uint8(1|4), 0)
	f.Add(eb, []byte{}, uint8(8), 0)
	f.Add(qb, rb, uint8(16|1), 4096)
	f.Add(qb, rb, uint8(1), -1)
	f.Add([]byte{0, 7, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}, []byte{0, 7, 0x81, 0x83}, uint8(1), 0)

	logs := captureLog(f)
	d := newTestDiag(f, "dnsdiag {\n log all\n rate 0\n}", nil)
	f.Fuzz(func(t *testing.T, qraw, resp []byte, mode uint8, rcode int) {
		req := new(dns.Msg)
		if req.Unpack(qraw) != nil {
			t.Skip("query does not unpack: the server would not have served it")
		}
		inflight := sessions.inflight()
		d.Next = plugin.HandlerFunc(func(_ context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
			if mode&1 != 0 {
				w.Write(resp)
			}
			if mode&2 != 0 {
				m := new(dns.Msg)
				m.SetReply(r)
				m.Rcode = rcode & 0xfff
				w.WriteMsg(m)
			}
			if mode&8 != 0 {
				panic("fuzzed panic")
			}
			var err error
			if mode&4 != 0 {
				err = errors.New("fuzzed error " + strconv.Quote(string(resp)))
			}
			return rcode, err
		})
		panicked := func() (p bool) {
			defer func() { p = recover() != nil }()
			d.ServeDNS(context.Background(), &test.ResponseWriter{TCP: mode&16 != 0}, req)
			return false
		}()
		if panicked != (mode&8 != 0) {
			t.Fatalf("ServeDNS panicked=%v, want %v", panicked, mode&8 != 0)
		}
		// The seeds repeat one query from one address: retransmissions,
		// which the detectors may hold for the other half of a pair.
		d.diag.releaseAll(d.release)
		ls := fuzzLines(t, logs)
		if len(ls) != 1 {
			t.Fatalf("%d session lines, want 1", len(ls))
		}
		l := ls[0]
		if l.Panic != panicked || (l.BitMap&2 != 0) != (mode&3 != 0) || l.Messages[0].Type != "CLIENT_QUERY" {
			t.Fatalf("session line does not match what happened (mode %#x): %+v", mode, l)
		}
		if got := sessions.inflight(); got != inflight {
			t.Fatalf("%d sessions in flight after the query, want %d", got, inflight)
		}
	})
}
