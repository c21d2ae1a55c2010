package hints

import (
	"math/bits"
	"sync"
	"unsafe"
)

// table is a fixed-size, set-associative store, allocated once. A key's
// hash picks a shard, which has its own mutex, and a set of ways slots in
// it. A set never grows: a flood of keys, spoofed or not, only replaces the
// oldest entries of the sets it lands in, so memory is what New allocated.
//
// Each slot has a tag (the key's full hash, to skip other keys without
// reading their entries) and a time, 0 for an empty slot: when the entry
// was written for the caches, its deadline for held sessions.
type table[E any] struct {
	shards    []shard[E]
	shardBits uint   // the hash's top shardBits bits pick the shard
	setMask   uint64 // its low bits pick the set in the shard
	ways      int
}

type shard[E any] struct {
	mu  sync.Mutex
	at  []int64
	tag []uint64
	ent []E
	_   [48]byte // a shard fills two cache lines: no false sharing of mutexes
}

// maxShards bounds lock contention; a table smaller than maxShards sets
// has one set per shard.
const maxShards = 64

// newTable makes room for at least entries entries: the number of sets is
// rounded up to a power of two.
func newTable[E any](entries, ways int) *table[E] {
	sets := setsFor(entries, ways)
	shards := min(sets, maxShards)
	perShard := sets / shards
	t := &table[E]{
		shards:    make([]shard[E], shards),
		shardBits: uint(bits.TrailingZeros(uint(shards))),
		setMask:   uint64(perShard - 1),
		ways:      ways,
	}
	// One allocation per array, cut into shards: no per-shard rounding.
	n := perShard * ways
	at, tag, ent := make([]int64, sets*ways), make([]uint64, sets*ways), make([]E, sets*ways)
	for i := range t.shards {
		t.shards[i].at = at[i*n : (i+1)*n : (i+1)*n]
		t.shards[i].tag = tag[i*n : (i+1)*n : (i+1)*n]
		t.shards[i].ent = ent[i*n : (i+1)*n : (i+1)*n]
	}
	return t
}

// set returns the shard of hash h and the first slot of its set; the set
// is slots [base, base+t.ways).
func (t *table[E]) set(h uint64) (*shard[E], int) {
	// A shift by 64 yields 0: a table of one shard.
	return &t.shards[h>>(64-t.shardBits)], int(h&t.setMask) * t.ways
}

// slots is the table's capacity.
func (t *table[E]) slots() int { return len(t.shards) * len(t.shards[0].at) }

// setsFor is the number of sets for entries: a power of two.
func setsFor(entries, ways int) int { return 1 << bits.Len(uint((entries+ways-1)/ways-1)) }

// tableBytes is the memory a table of entries entries holds, names and
// other pointed-to data aside.
func tableBytes[E any](entries, ways int) int {
	var e E
	sets := setsFor(entries, ways)
	return sets*ways*(8+8+int(unsafe.Sizeof(e))) + min(sets, maxShards)*int(unsafe.Sizeof(shard[E]{}))
}

// victim picks the slot of set base for a new entry written at now: an
// empty one, else one older than keep, else the oldest, which is then a
// live entry lost (live reports it). Called with the shard locked.
func (sh *shard[E]) victim(base, ways int, now, keep int64) (slot int, live bool) {
	oldest := base
	for i := base; i < base+ways; i++ {
		if sh.at[i] == 0 || now-sh.at[i] > keep {
			return i, false
		}
		if sh.at[i] < sh.at[oldest] {
			oldest = i
		}
	}
	return oldest, true
}
