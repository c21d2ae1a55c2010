package hints

import (
	"github.com/miekg/dns"
)

// A search-path walk for name B with search list s1..sn sends B.s1, B.s2,
// ... (each NXDOMAIN or NODATA) until one answers, or ends with B itself.
// The search table keeps a client's negative answers under the first label
// of their name, which every candidate shares with the walk's answer; the
// answer then counts the candidates that are its name plus a suffix.

// candidate is a negative answer in the search table.
type candidate struct {
	ip            [16]byte
	name          string // the caller's string, kept as is: never copied
	start         int64
	qtype, qclass uint16
	used          bool // counted by an answer already
}

// maxKeptNameBytes: longer names (only escaped binary labels get there) are
// not kept, which bounds the bytes the table holds on to.
const maxKeptNameBytes = 256

func (d *Detector) searchKey(k *keys, name string) uint64 {
	return mix(d.seed, foldHash(d.seed, firstLabel(name)), &k.ip, 0, 0, 0, 0)
}

// walk keeps s if it is a candidate, and if it is a positive answer, counts
// the candidates of its walk.
func (d *Detector) walk(s *Session, k *keys, out []Hint) []Hint {
	if !s.Answered || s.Rcode != dns.RcodeSuccess && s.Rcode != dns.RcodeNameError || len(s.Name) > maxKeptNameBytes {
		return out
	}
	key := d.searchKey(k, s.Name)
	sh, base := d.search.set(key)
	start := s.Start.UnixNano()
	if s.Rcode == dns.RcodeNameError || s.Answers == 0 {
		sh.mu.Lock()
		i, live := sh.victim(base, d.search.ways, start, d.searchWindow)
		sh.at[i], sh.tag[i] = start, key
		sh.ent[i] = candidate{ip: k.ip, name: s.Name, start: start, qtype: s.Qtype, qclass: s.Qclass}
		sh.mu.Unlock()
		if live {
			d.drop(ReasonSearchEvicted)
		}
		return out
	}

	var found [searchWays]struct {
		start  int64
		suffix string
	}
	n := 0
	sh.mu.Lock()
	for i := base; i < base+d.search.ways; i++ {
		c := &sh.ent[i]
		if sh.at[i] == 0 || sh.tag[i] != key || c.used || c.ip != k.ip || c.qclass != s.Qclass ||
			c.start >= start || start-c.start > d.searchWindow || !sameLookup(c.qtype, s.Qtype) {
			continue
		}
		if suffix, ok := searchSuffix(c.name, s.Name); ok {
			c.used = true
			found[n].start, found[n].suffix = c.start, suffix
			n++
		}
	}
	sh.mu.Unlock()
	if n == 0 {
		return out
	}
	// In the order the client sent them (insertion sort: n <= searchWays).
	for i := 1; i < n; i++ {
		for j := i; j > 0 && found[j].start < found[j-1].start; j-- {
			found[j], found[j-1] = found[j-1], found[j]
		}
	}
	h := Hint{Code: SearchExpansion, Text: textSearch, Count: n, Suffixes: make([]string, 0, n)}
	for i := range n {
		if !containsFold(h.Suffixes, found[i].suffix) {
			h.Suffixes = append(h.Suffixes, found[i].suffix)
		}
	}
	return append(out, h)
}

// sameLookup: getaddrinfo asks A and AAAA for every candidate, so either
// counts for either; other types count for their own.
func sameLookup(a, b uint16) bool {
	return a == b || (a == dns.TypeA || a == dns.TypeAAAA) && (b == dns.TypeA || b == dns.TypeAAAA)
}

// searchSuffix reports whether cand is a search candidate of the walk that
// ended with final, and the suffix it carried (without a trailing dot):
//   - final is the bare name B and cand is B.suffix (an external name);
//   - final is B.Y and cand is B.X.Y: the walk went on from suffix X.Y to Y,
//     as from default.svc.cluster.local to svc.cluster.local.
//
// Labels are split at every dot; a name with an escaped dot is compared as
// if it had more labels, on both sides alike.
func searchSuffix(cand, final string) (string, bool) {
	c, f := trimDot(cand), trimDot(final)
	i, cut := 0, -1 // c[:i] equals f[:i]; cut is the last dot in it
	for i < len(c) && i < len(f) && lower(c[i]) == lower(f[i]) {
		if c[i] == '.' {
			cut = i
		}
		i++
	}
	if i == len(f) && i+1 < len(c) && c[i] == '.' {
		return c[i+1:], true // B.suffix after B
	}
	if cut <= 0 {
		return "", false
	}
	x, y := c[cut+1:], f[cut+1:]
	if len(x) <= len(y)+1 || x[len(x)-len(y)-1] != '.' || !equalFold(x[len(x)-len(y):], y) {
		return "", false
	}
	return x, true
}

func trimDot(s string) string {
	if len(s) > 0 && s[len(s)-1] == '.' {
		return s[:len(s)-1]
	}
	return s
}

// equalFold compares ASCII case-insensitively, as DNS does.
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

func containsFold(list []string, s string) bool {
	for _, e := range list {
		if equalFold(e, s) {
			return true
		}
	}
	return false
}
