package hints

import (
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Begin and Observe allocate nothing on the path of a session without a
// hint, nor for the hints of a retransmission; only search_expansion's
// Suffixes and a held session's release do.
func TestObserveAllocs(t *testing.T) {
	d, _ := newDetector(t, Config{})
	// Something held, so that TCP sessions look for truncated answers.
	truncatedRun(t, d)

	var attempts [1]Attempt
	cases := []struct {
		what  string
		setup func(s *Session, i int)
		want  Code // "" for no hint
	}{
		{"forwarded answer", func(s *Session, i int) {}, ""},
		{"NXDOMAIN candidate", func(s *Session, i int) {
			s.Name, s.Rcode, s.Answers = "api.example.com.svc.cluster.local.", dns.RcodeNameError, 0
		}, ""},
		{"upper-case name", func(s *Session, i int) { s.Name = "API.Example.COM.and.a.name.longer.than.sixty.four.bytes.example." }, ""},
		{"TCP query", func(s *Session, i int) { s.TCP = true }, ""},
		{"TCP attempt answered", func(s *Session, i int) { attempts[0].TCP = true }, ""},
		{"retransmission", func(s *Session, i int) {
			s.Client, s.DNSID, s.Qtype = netip.MustParseAddrPort("10.0.0.9:5353"), 1, dns.TypeMX
		}, RetransmitAfterAnswer},
	}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			out := make([]Hint, 0, 8)
			var s Session
			i := 1 << 20
			step := func() {
				benchSession(&s, &attempts, i, false)
				c.setup(&s, i)
				d.Begin(&s)
				hs, _ := d.Observe(&s, out[:0])
				if c.want == "" && len(hs) != 0 || c.want != "" && i > 1<<20 && (len(hs) != 1 || hs[0].Code != c.want) {
					t.Fatalf("hints %v, want %q", codes(hs), c.want)
				}
				i++
			}
			step() // the first of a kind may take an upstream slot
			if n := testing.AllocsPerRun(1000, step); n != 0 {
				t.Errorf("%v allocations per session", n)
			}
		})
	}
}

func TestDueAllocsWhenEmpty(t *testing.T) {
	d, _ := newDetector(t, Config{})
	fn := func(uint64, []Hint) { t.Fatal("released from an empty table") }
	if n := testing.AllocsPerRun(100, func() { d.Due(t0.Add(time.Hour), fn) }); n != 0 {
		t.Errorf("Due allocates %v with nothing held", n)
	}
	if n := testing.AllocsPerRun(100, func() { d.Begin(&Session{Client: netip.MustParseAddrPort("10.0.0.1:1"), TCP: true, Start: t0}) }); n != 0 {
		t.Errorf("Begin of a TCP query allocates %v", n)
	}
}
