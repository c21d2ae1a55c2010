package hints

import (
	"encoding/json"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// t0 is the tests' clock origin; times are offsets from it.
var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

// drops counts the reasons a Detector passes to Config.Dropped.
type drops struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *drops) add(reason string) {
	c.mu.Lock()
	c.n[reason]++
	c.mu.Unlock()
}

func (c *drops) get(reason string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[reason]
}

func newDetector(t testing.TB, cfg Config) (*Detector, *drops) {
	t.Helper()
	c := &drops{n: map[string]int{}}
	cfg.Dropped = c.add
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d, c
}

// q is a client query as the tests write it: who sent what when.
type q struct {
	id    uint64
	from  string // ip:port
	tcp   bool
	dnsID uint16
	name  string
	qtype uint16
	start float64 // seconds after t0
}

func (x q) session() *Session {
	return &Session{ID: x.id, Client: netip.MustParseAddrPort(x.from), TCP: x.tcp, DNSID: x.dnsID, Name: x.name,
		Qtype: x.qtype, Qclass: dns.ClassINET, Start: at(x.start)}
}

// answered ends s at end with rcode and n answer records.
func answered(s *Session, end float64, rcode, n int) *Session {
	s.End, s.Answered, s.Rcode, s.Answers = at(end), true, rcode, n
	return s
}

// dropped ends s at end without a response to the client.
func dropped(s *Session, end float64) *Session {
	s.End = at(end)
	return s
}

// observe runs Observe and fails the test if it holds the session.
func observe(t *testing.T, d *Detector, s *Session) []Hint {
	t.Helper()
	hs, held := d.Observe(s, nil)
	if held {
		t.Fatalf("session %d held", s.ID)
	}
	return hs
}

// codes lists the hints' codes.
func codes(hs []Hint) []Code {
	var c []Code
	for _, h := range hs {
		c = append(c, h.Code)
	}
	return c
}

func wantCodes(t *testing.T, what string, hs []Hint, want ...Code) {
	t.Helper()
	got := codes(hs)
	if len(got) != len(want) {
		t.Fatalf("%s: hints %v, want %v", what, got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: hints %v, want %v", what, got, want)
		}
	}
}

func find(hs []Hint, c Code) *Hint {
	for i := range hs {
		if hs[i].Code == c {
			return &hs[i]
		}
	}
	return nil
}

// releases collects what Due hands back.
type releases map[uint64][]Hint

func (r releases) due(t *testing.T, d *Detector, now time.Time) {
	t.Helper()
	d.Due(now, func(id uint64, hs []Hint) {
		if _, ok := r[id]; ok {
			t.Fatalf("session %d released twice", id)
		}
		r[id] = append([]Hint(nil), hs...)
	})
}

// jsonQuote is a JSON string escaper for the tests; the plugin passes its own.
func jsonQuote(b []byte, s string) []byte {
	q, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return append(b, q...)
}
