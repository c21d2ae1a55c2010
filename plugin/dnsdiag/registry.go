package dnsdiag

import (
	"sync"
	"sync/atomic"
)

// registry maps the ids of client sessions still in flight to their
// sessions, so that a forwarder tap carrying an id reaches exactly its
// session. It is process-wide: ids never repeat, so a tap from an instance
// that a reload replaced still finds its session, and a tap whose session
// has ended finds nothing (and becomes a background session) even if the
// pooled session object has been reused since.
type registry struct {
	nextID atomic.Uint64
	live   atomic.Int64
	shards [registryShards]registryShard
}

const registryShards = 64

type registryShard struct {
	mu sync.Mutex
	m  map[uint64]*session
	_  [40]byte // keep shards on separate cache lines
}

var sessions = newRegistry()

func newRegistry() *registry {
	r := &registry{}
	for i := range r.shards {
		r.shards[i].m = make(map[uint64]*session)
	}
	return r
}

// add assigns s a fresh id and makes it findable, unless limit sessions are
// already in flight: then it reports false and s stays untracked.
func (r *registry) add(s *session, limit int64) bool {
	if r.live.Add(1) > limit {
		r.live.Add(-1)
		return false
	}
	s.id = r.nextID.Add(1)
	sh := &r.shards[s.id%registryShards]
	sh.mu.Lock()
	sh.m[s.id] = s
	sh.mu.Unlock()
	return true
}

// remove makes s unfindable. After it returns no tap can reach s: taps
// record their leg while holding the shard lock (see addLeg).
func (r *registry) remove(s *session) {
	sh := &r.shards[s.id%registryShards]
	sh.mu.Lock()
	delete(sh.m, s.id)
	sh.mu.Unlock()
	r.live.Add(-1)
}

// addLeg records l on the live session id and reports whether there was
// one. The leg is recorded under the shard lock, so once remove has returned
// a session can no longer change.
func (r *registry) addLeg(id uint64, l leg) bool {
	sh := &r.shards[id%registryShards]
	sh.mu.Lock()
	s, ok := sh.m[id]
	if ok {
		s.addLeg(l)
	}
	sh.mu.Unlock()
	return ok
}

// answering tells the live session id that an answer is being written to
// its client. It runs under the shard lock, so the session cannot end
// meanwhile.
func (r *registry) answering(id uint64, a clientAnswer) {
	sh := &r.shards[id%registryShards]
	sh.mu.Lock()
	if s, ok := sh.m[id]; ok {
		s.answered(a)
	}
	sh.mu.Unlock()
}

// inflight is the number of client sessions not yet finished.
func (r *registry) inflight() int64 { return r.live.Load() }

// truncatedOnWrite tells the live session id that the answer it was told of
// left truncated.
func (r *registry) truncatedOnWrite(id uint64) {
	sh := &r.shards[id%registryShards]
	sh.mu.Lock()
	if s, ok := sh.m[id]; ok {
		s.truncatedOnWrite()
	}
	sh.mu.Unlock()
}
