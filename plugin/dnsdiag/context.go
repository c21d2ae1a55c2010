package dnsdiag

import (
	"context"
	"strconv"
	"sync/atomic"
	"unsafe"

	"github.com/coredns/coredns/plugin/metadata"
)

// sessionLabel is the metadata label holding the session id. forward's taps
// carry it back in the dnstap Extra field; the metadata plugin exposes it to
// log formats and dnstap extras too ({/dnsdiag/session}).
const sessionLabel = "dnsdiag/session"

// sessionCtx carries a session id to the plugins below dnsdiag as metadata
// label sessionLabel, for queries that arrive without a metadata map. The
// map is only made when a plugin asks for metadata (forward's tap does, on
// a cache miss): a query answered without anyone asking, such as a cache
// hit, costs no map. A sessionCtx is never reused: plugins keep a query's
// context past its end (cache's prefetch and serve_stale's verify), and
// must then still see the id of the session it was made for.
type sessionCtx struct {
	context.Context
	// md is the metadata map, once someone asked for it. An atomic.Value
	// holds the map itself: it is pointer-shaped, so storing it allocates
	// nothing.
	md atomic.Value

	// idText is the session id in decimal, which the label's function
	// returns without allocating: forward's tap evaluates it twice per
	// upstream attempt.
	idText [20]byte
	idLen  uint8
}

// Value implements context.Context.
func (c *sessionCtx) Value(k any) any {
	if k != metadataKey {
		return c.Context.Value(k)
	}
	if md := c.md.Load(); md != nil {
		return md
	}
	md := newSessionMetadata(c.idFunc())
	if md == nil || c.md.CompareAndSwap(nil, md) {
		return md
	}
	return c.md.Load() // another goroutine made it first
}

// newSessionMetadata is a metadata map holding only the session id label,
// made through the metadata package since its map type is unexported.
func newSessionMetadata(id metadata.Func) any {
	ctx := metadata.ContextWithMetadata(context.Background())
	metadata.SetValueFunc(ctx, sessionLabel, id)
	return ctx.Value(metadataKey)
}

// setID sets the session id c carries.
func (c *sessionCtx) setID(id uint64) {
	c.idLen = uint8(len(strconv.AppendUint(c.idText[:0], id, 10)))
}

// idFunc is the session id label's function. The string it returns shares
// c's memory, which stays valid since a sessionCtx is never reused.
func (c *sessionCtx) idFunc() metadata.Func {
	return func() string { return unsafe.String(&c.idText[0], int(c.idLen)) }
}

// withSession makes session id readable below as label sessionLabel. When the
// query already has a metadata map (the metadata plugin ran before dnsdiag)
// the label goes into it. Otherwise, if always, c (unused until now) becomes
// the query's context; if not, nobody below needs the id and ctx is kept.
func withSession(ctx context.Context, c *sessionCtx, id uint64, always bool) context.Context {
	if metadata.ValueFuncs(ctx) != nil {
		c.setID(id)
		metadata.SetValueFunc(ctx, sessionLabel, c.idFunc())
		return ctx
	}
	if !always {
		return ctx
	}
	c.Context = ctx
	c.setID(id)
	return c
}
