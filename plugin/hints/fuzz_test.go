package hints

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"
)

// FuzzDetector feeds sessions made of arbitrary bytes, names included, through
// Begin, Observe and Due: nothing may panic, every hint renders as valid
// JSON, and every held session is released once.
func FuzzDetector(f *testing.F) {
	f.Add("www.example.com.", uint16(1), uint16(7), uint8(0), int64(1000))
	f.Add("WWW.example.com.cluster.local.", uint16(28), uint16(7), uint8(0xff), int64(0))
	f.Add("", uint16(0), uint16(0), uint8(0x10), int64(-5))
	f.Add("a..b\\.c\x00\xff.", uint16(1), uint16(65535), uint8(0x5a), int64(1<<40))
	f.Fuzz(func(t *testing.T, name string, qtype, dnsID uint16, flags uint8, ns int64) {
		d, _ := newDetector(t, Config{RetransmitEntries: 16, PairEntries: 16, SearchEntries: 16, HeldEntries: 8, Upstreams: 2})
		held := map[uint64]bool{}
		for i := range 6 {
			start := t0.Add(time.Duration(ns%int64(time.Minute)) * time.Duration(i))
			s := &Session{ID: uint64(i + 1), Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(flags & 1)}), uint16(flags>>1&1)),
				TCP: flags>>2&1 == 1 && i%2 == 1, DNSID: dnsID, Name: name, Qtype: qtype, Qclass: 1, Start: start}
			if i%3 == 2 {
				s.Name = name + ".svc.cluster.local."
			}
			d.Begin(s)
			s.End = start.Add(time.Duration(flags) * time.Millisecond)
			s.Answered, s.Rcode, s.Answers, s.Truncated = flags>>3&1 == 1, int(flags>>4)%4, int(flags>>6), flags>>5&1 == 1
			s.Attempts = []Attempt{{Upstream: netip.MustParseAddrPort("10.9.9.9:53"), TCP: flags>>6&1 == 1, Answered: flags>>7&1 == 1}, {}}
			hs, h := d.Observe(s, nil)
			for j := range hs {
				if b := hs[j].AppendJSON(nil, jsonQuote); !json.Valid(b) {
					t.Fatalf("invalid JSON %q", b)
				}
			}
			if h {
				held[s.ID] = true
			}
		}
		released := 0
		d.Due(t0.Add(time.Hour*24*365*100), func(id uint64, _ []Hint) {
			if !held[id] {
				t.Fatalf("released %d, not held", id)
			}
			released++
		})
		if released != len(held) {
			t.Fatalf("released %d of %d held", released, len(held))
		}
	})
}
