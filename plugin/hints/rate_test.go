package hints

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// stream is one client socket asking names in turn, rate lookups a second,
// with random IDs from a deterministic PRNG (never avoid), as dnsperf or a
// resolver reusing its socket does. Each session lasts dur seconds; from
// "" gives each lookup a socket of its own.
type stream struct {
	from  string
	names []string
	rate  float64
	dur   float64
	seed  uint64
	avoid uint16
}

// sessions returns the stream's first n sessions, with ids from id on.
func (st stream) sessions(n int, id uint64) []*Session {
	ids := rand.New(rand.NewPCG(st.seed, 1))
	ss := make([]*Session, n)
	for i := range ss {
		dnsID := uint16(ids.Uint32())
		for dnsID == st.avoid {
			dnsID = uint16(ids.Uint32())
		}
		from := st.from
		if from == "" {
			from = "10.0.0.1:" + strconv.Itoa(20000+i%40000)
		}
		start := float64(i) / st.rate
		ss[i] = answered(q{id: id + uint64(i), from: from, dnsID: dnsID, name: st.names[i%len(st.names)], qtype: dns.TypeA, start: start}.session(),
			start+st.dur, dns.RcodeSuccess, 1)
	}
	return ss
}

// feed begins and observes ended sessions in order of arrival, each at
// once: a later arrival sees an earlier one in flight until its End. It
// returns the hints by session id.
func feed(t *testing.T, d *Detector, ss []*Session) map[uint64][]Hint {
	t.Helper()
	slices.SortStableFunc(ss, func(a, b *Session) int { return a.Start.Compare(b.Start) })
	got := map[uint64][]Hint{}
	for _, s := range ss {
		d.Begin(s)
		if hs := observe(t, d, s); len(hs) != 0 {
			got[s.ID] = hs
		}
	}
	return got
}

// A name asked 1000 times a second from one socket with random IDs, for 40
// s (across a bucket of the window): its IDs repeat by chance some 9600
// times within RetransmitWindow, and none is reported, whether the earlier
// copy was answered or still in flight.
func TestChanceRepeatsNotRetransmissions(t *testing.T) {
	for _, c := range []struct {
		what string
		dur  float64
	}{{"answered", 0.0003}, {"in flight", 2}} {
		t.Run(c.what, func(t *testing.T) {
			d, _ := newDetector(t, Config{})
			ss := stream{from: "10.0.0.1:40000", names: []string{name}, rate: 1000, dur: c.dur, seed: 1}.sessions(40000, 1)
			seen, repeats := map[uint16]time.Time{}, 0
			for _, s := range ss {
				if last, ok := seen[s.DNSID]; ok && s.Start.Sub(last) <= DefaultRetransmitWindow {
					repeats++
				}
				seen[s.DNSID] = s.Start
			}
			if repeats < 9000 {
				t.Fatalf("only %d IDs repeated within the window: the test does not exercise chance repeats", repeats)
			}
			if got := feed(t, d, ss); len(got) != 0 {
				t.Errorf("%d of %d lookups with hints", len(got), len(ss))
			}
		})
	}
}

// glibcResend is a glibc-like query from glibcPort at first (session 1),
// answered at once, and the same query again (same ID and port, session 2)
// gap seconds later, answered 100 ms after that.
func glibcResend(dnsID uint16, first, gap float64) []*Session {
	a := q{id: 1, from: glibcPort, dnsID: dnsID, name: name, qtype: dns.TypeA, start: first}.session()
	b := q{id: 2, from: glibcPort, dnsID: dnsID, name: name, qtype: dns.TypeA, start: first + gap}.session()
	return []*Session{answered(a, first+0.002, dns.RcodeSuccess, 1), answered(b, first+gap+0.1, dns.RcodeSuccess, 1)}
}

// A glibc retransmission 5 s after its first copy is reported amid other
// lookups of the same name and type from the same address, 2 a second from
// new sockets, and amid 4000 lookups a second of four other names from the
// same address and socket (none of which is reported either). The
// retransmit table is made large enough to keep the first copy through
// 40000 sessions in 10 s.
func TestRetransmitAmidTraffic(t *testing.T) {
	const glibcID = 18882
	for _, c := range []struct {
		what string
		st   stream
		n    int
	}{
		{"same name, low rate", stream{names: []string{name}, rate: 2}, 40},
		{"other names, high rate", stream{from: glibcPort, names: []string{"a.example.", "b.example.", "c.example.", "d.example."}, rate: 4000}, 40000},
	} {
		t.Run(c.what, func(t *testing.T) {
			d, _ := newDetector(t, Config{RetransmitEntries: 1 << 17})
			c.st.dur, c.st.seed, c.st.avoid = 0.0003, 3, glibcID
			got := feed(t, d, append(c.st.sessions(c.n, 3), glibcResend(glibcID, 3, 5)...))
			hs := got[2]
			wantCodes(t, "resent copy", hs, RetransmitAfterAnswer)
			if h := hs[0]; h.Earlier != 1 || !h.SamePort || h.Ago != 4998*time.Millisecond {
				t.Errorf("hint %+v, want earlier 1, same port, 4.998s ago", h)
			}
			if len(got) != 1 {
				t.Errorf("%d sessions with hints, want only the resent copy", len(got))
			}
		})
	}
}

// Where the line lies: n distinct lookups of the question in the gap (at
// least minRetryInterval) repeat an ID by chance n/65536 times; up to
// maxChanceRepeat (655 lookups) the copy is reported. The other lookups come
// from one socket with sequential IDs, so they repeat none.
func TestRetransmitRateThreshold(t *testing.T) {
	for _, c := range []struct {
		rate, gap float64
		want      bool
	}{
		{100, 5, true},       // 500 lookups in the gap: 0.8%
		{200, 5, false},      // 1000: 1.5%
		{100, 0.01, true},    // musl resends a SERVFAIL at once: 100 over the floor of 1 s
		{1000, 0.01, false},  // 1000 over the floor: 1.5%, although 10 in the gap itself
		{1000, 0.5, false},   // likewise
		{0.1, 29.9, true},    // 3 in the gap
		{20000, 0.05, false}, // 20000 over the floor
	} {
		t.Run(strconv.FormatFloat(c.rate, 'f', -1, 64)+"/s,gap "+strconv.FormatFloat(c.gap, 'f', -1, 64)+"s", func(t *testing.T) {
			d, _ := newDetector(t, Config{})
			const first = 10
			ss := glibcResend(65535, first, c.gap)
			for i := range int(c.rate * (first + c.gap + 1)) {
				start := float64(i) / c.rate
				s := q{id: uint64(i + 3), from: "10.0.0.1:40000", dnsID: uint16(i % 65535), name: name, qtype: dns.TypeA, start: start}.session()
				ss = append(ss, answered(s, start+0.0003, dns.RcodeSuccess, 1))
			}
			got := feed(t, d, ss)
			if c.want {
				wantCodes(t, "resent copy", got[2], RetransmitAfterAnswer)
			} else {
				wantCodes(t, "resent copy", got[2])
			}
			if len(got[2]) != len(got) {
				t.Errorf("%d sessions with hints, want at most the resent copy", len(got))
			}
		})
	}
}

// A flood of copies of one query (one ID) counts one lookup: every copy is
// still reported (TestFloodOfOneQuery), and the question's count stays that
// of its distinct lookups.
func TestRepeatsNotCounted(t *testing.T) {
	d, _ := newDetector(t, Config{})
	var ss []*Session
	for i := range 100 {
		s := q{id: uint64(i + 1), from: glibcPort, dnsID: 7, name: name, qtype: dns.TypeA, start: float64(i) * 0.01}.session()
		ss = append(ss, answered(s, float64(i)*0.01+0.06, dns.RcodeSuccess, 1))
	}
	if got := feed(t, d, ss); len(got) != 99 {
		t.Errorf("%d copies reported, want 99", len(got))
	}
	k := d.keysOf(ss[0])
	sh, base := d.rates.set(d.rateKey(&k, dns.TypeA, dns.ClassINET))
	for i := base; i < base+d.rates.ways; i++ {
		if e := sh.ent[i]; sh.at[i] != 0 && e.is(&k.ip, k.name, dns.TypeA, dns.ClassINET) && e.cur != 1 {
			t.Errorf("%d lookups counted, want 1", e.cur)
		}
	}
}
