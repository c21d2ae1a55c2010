package hints

import (
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// A million distinct clients within the windows: the tables shed their
// oldest entries, count each live one shed, and the heap does not grow.
// Under -race, 100000: still three times the largest table.
func TestMillionClients(t *testing.T) {
	d, c := newDetector(t, Config{})
	n := 1_000_000
	if raceDetector {
		n = 100_000
	}
	out := make([]Hint, 0, 8)
	s := &Session{Name: "www.example.com.", Qclass: dns.ClassINET}
	before := heapAlloc()
	for i := range n {
		*s = Session{ID: uint64(i + 1), Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 40000),
			DNSID: uint16(i), Name: s.Name, Qtype: dns.TypeA, Qclass: dns.ClassINET, Start: t0.Add(time.Duration(i) * time.Microsecond)}
		if i%2 == 1 {
			s.Name = "www.example.com.cluster.local." // NXDOMAIN candidates fill the search table
		} else {
			s.Name = "www.example.com."
		}
		// Observe alone inserts the session in every table (Begin is
		// tested elsewhere), which keeps this test short under -race.
		s.End, s.Answered, s.Answers = s.Start.Add(time.Millisecond), true, 1
		if i%2 == 1 {
			s.Rcode, s.Answers = dns.RcodeNameError, 0
		}
		if hs, held := d.Observe(s, out[:0]); len(hs) != 0 || held {
			t.Fatalf("client %d: hints %v, held %v", i, codes(hs), held)
		}
	}
	if grown := int64(heapAlloc()) - int64(before); grown > 64<<10 {
		t.Errorf("heap grew by %d bytes over %d clients", grown, n)
	}
	for _, e := range []struct {
		reason string
		min    int
	}{
		{ReasonRetransmitEvicted, n - d.retx.slots()},
		{ReasonRateEvicted, n - d.rates.slots()},
		{ReasonPairEvicted, n/2 - d.pairs.slots()},
		{ReasonSearchEvicted, n/2 - d.search.slots()},
	} {
		if got := c.get(e.reason); got < e.min {
			t.Errorf("%s counted %d times, want at least %d", e.reason, got, e.min)
		}
	}
}

// A flood of spoofed copies of one query churns one set of each table:
// every copy is reported, the evictions are exactly the copies beyond the
// set's ways, at most a set's worth is held, and the heap does not grow.
func TestFloodOfOneQuery(t *testing.T) {
	d, c := newDetector(t, Config{})
	n := 100_000
	if raceDetector {
		n = 20_000
	}
	out := make([]Hint, 0, 8)
	s := &Session{}
	before := heapAlloc()
	held := 0
	for i := range n {
		*s = Session{ID: uint64(i + 1), Client: netip.MustParseAddrPort("192.0.2.1:53000"), DNSID: 4242, Name: "victim.example.", Qtype: dns.TypeA,
			Qclass: dns.ClassINET, Start: t0.Add(time.Duration(i) * 20 * time.Microsecond)}
		d.Begin(s)
		s.End, s.Answered, s.Answers = s.Start.Add(10*time.Microsecond), true, 1
		hs, h := d.Observe(s, out[:0])
		if i > 0 && (len(hs) == 0 || hs[0].Code != RetransmitAfterAnswer) {
			t.Fatalf("copy %d: hints %v", i, codes(hs))
		}
		if h {
			held++
		}
	}
	if grown := int64(heapAlloc()) - int64(before); grown > 64<<10 {
		t.Errorf("heap grew by %d bytes over %d copies", grown, n)
	}
	if got, want := c.get(ReasonRetransmitEvicted), n-retxWays; got != want {
		t.Errorf("%d retransmit evictions, want %d", got, want)
	}
	if held > heldWays || c.get(ReasonHeldFull) != n-1-held {
		t.Errorf("%d held, %d refused; want at most %d held, the rest of %d refused", held, c.get(ReasonHeldFull), heldWays, n-1)
	}
	r := releases{}
	r.due(t, d, t0.Add(time.Minute))
	if len(r) != held {
		t.Errorf("%d released, want %d", len(r), held)
	}
}

// The README states the memory bound with the defaults.
func TestMemoryBoundDocumented(t *testing.T) {
	n, err := MemoryBytes(Config{})
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if want := strconv.Itoa(n) + " bytes"; !strings.Contains(string(readme), want) {
		t.Errorf("README.md does not state the default bound %q", want)
	}
	// New allocates what MemoryBytes counts, names aside.
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	d, _ := New(Config{})
	runtime.ReadMemStats(&m1)
	took := int(m1.TotalAlloc - m0.TotalAlloc)
	names := d.search.slots() * maxKeptNameBytes
	if took > (n-names)*101/100 || took < (n-names)*99/100 {
		t.Errorf("New took %d bytes, MemoryBytes says %d of tables", took, n-names)
	}
}

func TestConfigRefused(t *testing.T) {
	for _, cfg := range []Config{
		{RetransmitWindow: -time.Second},
		{PairGap: time.Second},
		{TCWindow: time.Hour},
		{SearchEntries: -1},
		{RateEntries: -1},
		{RetransmitEntries: maxEntries + 1},
		{Upstreams: maxUpstreams + 1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	d, err := New(Config{RetransmitEntries: 1, RateEntries: 1, PairEntries: 1, SearchEntries: 1, HeldEntries: 1, Upstreams: 1})
	if err != nil {
		t.Fatal(err)
	}
	if d.retx.slots() != retxWays || d.rates.slots() != rateWays || d.search.slots() != searchWays {
		t.Errorf("smallest tables: %d, %d and %d slots, want one set each", d.retx.slots(), d.rates.slots(), d.search.slots())
	}
}

// Many goroutines at once, sharing clients and names, with Due running
// alongside: run with -race. Every held session is released exactly once.
func TestConcurrent(t *testing.T) {
	d, _ := newDetector(t, Config{RetransmitEntries: 512, PairEntries: 256, SearchEntries: 256, HeldEntries: 64})
	const workers, per = 8, 2000
	var (
		mu       sync.Mutex
		held     = map[uint64]bool{}
		released = map[uint64]int{}
		wg       sync.WaitGroup
		stop     = make(chan struct{})
	)
	release := func(id uint64, _ []Hint) {
		mu.Lock()
		released[id]++
		mu.Unlock()
	}
	var dueWG sync.WaitGroup
	dueWG.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				d.Due(t0.Add(time.Hour), release)
				runtime.Gosched()
			}
		}
	})
	names := []string{"a.example.", "a.example.svc.cluster.local.", "B.example.", "b.example."}
	for w := range workers {
		wg.Go(func() {
			out := make([]Hint, 0, 8)
			for i := range per {
				id := uint64(w*per + i + 1)
				s := &Session{ID: id, Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i % 3)}), uint16(40000+i%5)),
					TCP: i%7 == 0, DNSID: uint16(i % 11), Name: names[i%len(names)], Qtype: []uint16{dns.TypeA, dns.TypeAAAA}[i%2], Qclass: dns.ClassINET,
					Start: t0.Add(time.Duration(i) * time.Millisecond)}
				d.Begin(s)
				s.End, s.Answered, s.Rcode, s.Answers, s.Truncated = s.Start.Add(time.Duration(i%3)*time.Millisecond), i%4 != 0, []int{0, 3}[i%2], i%3, i%5 == 0
				s.Attempts = []Attempt{{Upstream: netip.MustParseAddrPort("10.9.9.9:53"), TCP: i%6 == 0, Answered: i%4 != 1}}
				hs, h := d.Observe(s, out[:0])
				for j := range hs {
					hs[j].AppendJSON(nil, jsonQuote)
				}
				if h {
					mu.Lock()
					held[id] = true
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	dueWG.Wait()
	d.Due(t0.Add(time.Hour), release)
	if len(held) == 0 {
		t.Fatal("nothing was held: the test does not exercise Due")
	}
	for id := range held {
		if released[id] != 1 {
			t.Errorf("session %d released %d times", id, released[id])
		}
	}
	if len(released) != len(held) {
		t.Errorf("released %d sessions, %d were held", len(released), len(held))
	}
}
