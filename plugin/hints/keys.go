package hints

import (
	"encoding/binary"
)

// Keys are seeded hashes, so that a client cannot choose names or source
// addresses that all land in one set. Names are compared by a 64-bit hash
// of their case-folded bytes: two different names are taken for one with a
// chance of 2^-64, and no name is copied or kept to compare it.

// foldHash hashes s as if ASCII letters were lower case. It is plain
// arithmetic on purpose: the detectors run at the deepest point of a
// query's stack (as its answer is written), where a hash with buffers of
// its own (hash/maphash) made Go grow the goroutine's stack on every query.
// seed is random per Detector, so an outsider cannot aim names at one set.
func foldHash(seed uint64, s string) uint64 {
	h := seed ^ fnvOffset
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(lower(s[i]))) * fnvPrime
	}
	return fmix(h)
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// fmix spreads every bit of h over the result (MurmurHash3's finalizer),
// so that set indexes taken from the low bits depend on the whole input.
func fmix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// mix is the key of a table entry: a hash of a name hash, a client address
// and up to four 16-bit fields.
func mix(seed, name uint64, ip *[16]byte, a, b, c, d uint16) uint64 {
	h := fmix(seed ^ name)
	h = fmix(h ^ binary.LittleEndian.Uint64(ip[0:8]))
	h = fmix(h ^ binary.LittleEndian.Uint64(ip[8:16]))
	return fmix(h ^ (uint64(a) | uint64(b)<<16 | uint64(c)<<32 | uint64(d)<<48))
}

// firstLabel is the name's first label: every candidate of a search walk
// shares it with the walk's answer, so candidates are kept under it.
func firstLabel(name string) string {
	for i := 0; i < len(name); i++ {
		if name[i] == '.' {
			return name[:i]
		}
	}
	return name
}
