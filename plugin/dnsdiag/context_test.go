package dnsdiag

import (
	"context"
	"reflect"
	"sync"
	"testing"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metadata"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
)

type otherKey struct{}

func TestSessionCtxServesIDAsMetadata(t *testing.T) {
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), otherKey{}, "v"))
	ctx := withSession(parent, new(sessionCtx), 42, true)
	if ctx == parent {
		t.Fatal("no session context over a parent without metadata")
	}
	if f := metadata.ValueFunc(ctx, sessionLabel); f == nil || f() != "42" {
		t.Fatalf("label %s: %v", sessionLabel, f)
	}
	if metadata.ValueFuncs(parent) != nil {
		t.Error("the parent context gained metadata")
	}
	if got := ctx.Value(otherKey{}); got != "v" {
		t.Errorf("other key: %v, want the parent's value", got)
	}

	// Plugins below add their own labels to the same map.
	if !metadata.SetValueFunc(ctx, "test/label", func() string { return "x" }) {
		t.Fatal("SetValueFunc on the session context found no map")
	}
	if f := metadata.ValueFunc(ctx, "test/label"); f == nil || f() != "x" {
		t.Error("a label set below is lost")
	}
	if n := len(metadata.ValueFuncs(ctx)); n != 2 {
		t.Errorf("%d labels, want 2", n)
	}

	cancel()
	<-ctx.Done()
	if ctx.Err() != context.Canceled {
		t.Errorf("Err %v, want the parent's cancellation", ctx.Err())
	}
}

// TestSessionIDLabelAllocs: forward's tap evaluates the label twice per
// attempt; it returns the id without allocating, whatever its length, with
// and without a metadata map made before dnsdiag.
func TestSessionIDLabelAllocs(t *testing.T) {
	const id = 18446744073709551615
	for _, parent := range []context.Context{context.Background(), metadata.ContextWithMetadata(context.Background())} {
		ctx := withSession(parent, new(sessionCtx), id, true)
		f := metadata.ValueFunc(ctx, sessionLabel)
		if f == nil || f() != "18446744073709551615" {
			t.Fatalf("label %s: %v", sessionLabel, f)
		}
		if n := testing.AllocsPerRun(100, func() { _ = f() }); n != 0 {
			t.Errorf("the label's value costs %v allocations", n)
		}
	}
}

func TestSessionCtxUsesExistingMetadata(t *testing.T) {
	parent := metadata.ContextWithMetadata(context.Background())
	if got := withSession(parent, new(sessionCtx), 7, false); got != parent {
		t.Error("a new context although the query had a metadata map")
	}
	if f := metadata.ValueFunc(parent, sessionLabel); f == nil || f() != "7" {
		t.Errorf("label %s not in the existing map", sessionLabel)
	}
}

func TestSessionCtxNotNeeded(t *testing.T) {
	parent := context.Background()
	if got := withSession(parent, new(sessionCtx), 7, false); got != parent {
		t.Error("a session context although nobody below needs the id")
	}
}

func TestSessionCtxConcurrentFirstUse(t *testing.T) {
	ctx := withSession(context.Background(), new(sessionCtx), 9, true)
	maps := make([]uintptr, 8)
	var wg sync.WaitGroup
	for i := range maps {
		wg.Go(func() { maps[i] = reflect.ValueOf(metadata.ValueFuncs(ctx)).Pointer() })
	}
	wg.Wait()
	for _, m := range maps {
		if m == 0 || m != maps[0] {
			t.Fatalf("concurrent first uses saw different maps: %v", maps)
		}
	}
}

// A query nobody below asks metadata for (a cache hit, an internal answer)
// gets no metadata map; one that asks (forward's tap) reads its session id.
func TestSessionMetadataMadeOnDemand(t *testing.T) {
	captureLog(t)
	var asked bool
	var made bool
	var id string
	d := newTestDiag(t, "dnsdiag", plugin.HandlerFunc(func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
		if asked {
			id = metadata.ValueFunc(ctx, sessionLabel)()
		}
		c, ok := ctx.(*sessionCtx)
		made = !ok || c.md.Load() != nil
		return answer(dns.RcodeSuccess)(ctx, w, r)
	}))
	d.hasForwards.Store(true)
	d.ServeDNS(context.Background(), &test.ResponseWriter{}, query("example.org", dns.TypeA))
	if made {
		t.Error("a metadata map was made for a query that never asked for one")
	}
	asked = true
	d.ServeDNS(context.Background(), &test.ResponseWriter{}, query("example.org", dns.TypeA))
	if !made || id == "" || id == "0" {
		t.Errorf("asking for the session id: map made %v, id %q", made, id)
	}
}

// TestSessionMetadataAllocs: making a session's metadata map on first use
// costs what the metadata package's map costs, plus the label's function,
// and nothing for keeping it in the session's context.
func TestSessionMetadataAllocs(t *testing.T) {
	f := new(sessionCtx).idFunc()
	mapOnly := testing.AllocsPerRun(100, func() { _ = newSessionMetadata(f) })

	const runs = 100
	ctxs := make([]*sessionCtx, runs+1) // AllocsPerRun runs once more to warm up
	for i := range ctxs {
		ctxs[i] = withSession(context.Background(), new(sessionCtx), uint64(i+1), true).(*sessionCtx)
	}
	i := 0
	got := testing.AllocsPerRun(runs, func() {
		_ = ctxs[i].Value(metadataKey)
		i++
	})
	if got != mapOnly+1 {
		t.Errorf("first use: %v allocations, want the map's %v and the label function's 1", got, mapOnly)
	}
	a, b := ctxs[0].Value(metadataKey), ctxs[0].Value(metadataKey)
	if a == nil || reflect.ValueOf(a).Pointer() != reflect.ValueOf(b).Pointer() {
		t.Error("the map is not kept: asked twice, two maps")
	}
}
