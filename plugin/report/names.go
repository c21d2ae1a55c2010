package report

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
	"time"
)

const (
	// maxNameEntries caps the failing names a window tracks. The report
	// shows the topNames most frequent; the rest are candidates, so that a
	// name that starts failing late in the window can still climb.
	maxNameEntries = 256
	topNames       = 10
	// maxNameLen bounds a stored name: a presentation-format name is at
	// most 255 octets, each escaped as up to 4 characters (\DDD).
	maxNameLen = 1024
)

type nameKey struct {
	name  string
	qtype uint16
	rcode int
}

// nameEntry counts one failing (name, qtype, rcode) in the window.
type nameEntry struct {
	key      nameKey
	count    uint64
	over     uint64 // count may exceed the truth by this much (inherited on eviction)
	external uint64 // of count, forwarded sessions
	internal uint64 // of count, sessions answered inside CoreDNS
	last     time.Time
	upstream netip.AddrPort // the last forwarded failure's last upstream
}

// nameTable is a Space-Saving summary of the window's failing names: when
// it is full, a new name replaces the least counted entry and inherits its
// count as a possible overcount, so the names that fail most are kept
// whatever order failures arrive in. It is only touched for failed
// sessions, under the Reporter's mutex.
type nameTable struct {
	idx     map[nameKey]int
	entries []nameEntry
	evicted uint64
	// cachedUpstream counts internal failures of a name that had failed
	// with the same rcode upstream earlier in the window: the cache
	// serving the upstream's failure, which is the upstream's case, not
	// CoreDNS's.
	cachedUpstream uint64
}

func newNameTable() nameTable {
	return nameTable{idx: make(map[nameKey]int, maxNameEntries), entries: make([]nameEntry, 0, maxNameEntries)}
}

func (t *nameTable) observe(s *Session, now time.Time) {
	name := s.Name
	if len(name) > maxNameLen {
		name = name[:maxNameLen]
	}
	k := nameKey{name: name, qtype: s.Qtype, rcode: s.Rcode}
	i, ok := t.idx[k]
	switch {
	case ok:
	case len(t.entries) < maxNameEntries:
		k.name = strings.Clone(name)
		i = len(t.entries)
		t.entries = append(t.entries, nameEntry{key: k})
		t.idx[k] = i
	default:
		i = 0
		for j := range t.entries {
			if t.entries[j].count < t.entries[i].count {
				i = j
			}
		}
		delete(t.idx, t.entries[i].key)
		t.evicted++
		k.name = strings.Clone(name)
		min := t.entries[i].count
		t.entries[i] = nameEntry{key: k, count: min, over: min}
		t.idx[k] = i
	}
	e := &t.entries[i]
	e.count++
	e.last = now
	if s.External {
		e.external++
		if n := len(s.Attempts); n > 0 {
			e.upstream = s.Attempts[n-1].Upstream
		}
		return
	}
	if e.external > 0 {
		t.cachedUpstream++
	}
	e.internal++
}

// take returns the window's most failing names, most first, and resets
// the table.
func (t *nameTable) take() (top []nameEntry, evicted, cachedUpstream uint64) {
	top = slices.Clone(t.entries)
	slices.SortFunc(top, func(a, b nameEntry) int {
		if c := cmp.Compare(b.count, a.count); c != 0 {
			return c
		}
		if c := strings.Compare(a.key.name, b.key.name); c != 0 {
			return c
		}
		if c := cmp.Compare(a.key.qtype, b.key.qtype); c != 0 {
			return c
		}
		return cmp.Compare(a.key.rcode, b.key.rcode)
	})
	if len(top) > topNames {
		top = top[:topNames:topNames]
	}
	evicted, cachedUpstream = t.evicted, t.cachedUpstream
	clear(t.idx)
	clear(t.entries)
	t.entries = t.entries[:0]
	t.evicted, t.cachedUpstream = 0, 0
	return top, evicted, cachedUpstream
}
