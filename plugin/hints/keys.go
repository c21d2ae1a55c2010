package hints

import (
	"encoding/binary"
	"hash/maphash"
)

// Keys are seeded hashes, so that a client cannot choose names or source
// addresses that all land in one set. Names are compared by a 64-bit hash
// of their case-folded bytes: two different names are taken for one with a
// chance of 2^-64, and no name is copied or kept to compare it.

// foldHash hashes s as if ASCII letters were lower case.
func foldHash(seed maphash.Seed, s string) uint64 {
	upper := false
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			upper = true
			break
		}
	}
	if !upper {
		return maphash.String(seed, s)
	}
	// maphash.Hash gives the same sum however the input is split, so the
	// name is folded through a stack buffer.
	var h maphash.Hash
	h.SetSeed(seed)
	var buf [64]byte
	for len(s) > 0 {
		n := copy(buf[:], s)
		for i := range n {
			buf[i] = lower(buf[i])
		}
		h.Write(buf[:n])
		s = s[n:]
	}
	return h.Sum64()
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// mix is the key of a table entry: a hash of a name hash, a client address
// and up to four 16-bit fields.
func mix(seed maphash.Seed, name uint64, ip *[16]byte, a, b, c, d uint16) uint64 {
	var buf [32]byte
	binary.LittleEndian.PutUint64(buf[0:], name)
	copy(buf[8:24], ip[:])
	binary.LittleEndian.PutUint16(buf[24:], a)
	binary.LittleEndian.PutUint16(buf[26:], b)
	binary.LittleEndian.PutUint16(buf[28:], c)
	binary.LittleEndian.PutUint16(buf[30:], d)
	return maphash.Bytes(seed, buf[:])
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
