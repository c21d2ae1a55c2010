package dnsdiag

import (
	"context"
	"strings"
	"testing"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/dnstap"
	"github.com/coredns/coredns/plugin/metadata"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
)

// These tests fail on a CoreDNS upgrade that breaks an assumption of
// internals.go, whether or not checkInternals notices it.

func TestCheckInternals(t *testing.T) {
	if err := checkInternals(); err != nil {
		t.Fatalf("this CoreDNS fails the internals check: %v", err)
	}
	type otherKey struct{}
	for _, key := range []any{nil, otherKey{}, []int{}} {
		err := checkMetadataKey(key)
		if err == nil || !strings.Contains(err.Error(), "CoreDNS "+coreDNSVersion) {
			t.Errorf("checkMetadataKey(%#v) = %v, want an error naming CoreDNS %s", key, err, coreDNSVersion)
		}
	}
	if err := setDnstapSink(new(dnstap.Dnstap), struct{}{}); err == nil || !strings.Contains(err.Error(), coreDNSVersion) {
		t.Errorf("setDnstapSink with a value that is no sink: %v, want an error naming %s", err, coreDNSVersion)
	}
}

func TestMetadataKeyFound(t *testing.T) {
	ctx := metadata.ContextWithMetadata(context.Background())
	if metadataKey == nil || ctx.Value(metadataKey) == nil {
		t.Fatalf("metadata key %#v does not find the map ContextWithMetadata made", metadataKey)
	}
	// The metadata package sees the session label through that key.
	s := withSession(context.Background(), new(sessionCtx), 5, true)
	if f, ok := metadata.ValueFuncs(s)[sessionLabel]; !ok || f() != "5" {
		t.Fatalf("metadata.ValueFuncs of a session context has no %s label for session 5", sessionLabel)
	}
}

// TestTapFromRealForwardReachesItsSession runs a real forward, tapped by
// newTap's tap, against a test upstream: both its legs must reach the sink
// and land in the session whose id the query's context carries, and only
// there.
func TestTapFromRealForwardReachesItsSession(t *testing.T) {
	d := newTestDiag(t, "dnsdiag", nil)
	f := newForward(t, upstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		w.WriteMsg(m)
	}))
	f.SetTapPlugin(d.tap)

	mine, other := newSession(), newSession()
	for _, s := range []*session{other, mine} {
		if !sessions.add(s, d.limits.inflight) {
			t.Fatal("no room in the registry")
		}
	}
	defer func() {
		for _, s := range []*session{mine, other} {
			sessions.remove(s)
			s.recycle()
		}
	}()
	ctx := withSession(context.Background(), new(sessionCtx), mine.id, true)
	if rcode, err := f.ServeDNS(ctx, &test.ResponseWriter{}, query("example.org", dns.TypeA)); err != nil || !plugin.ClientWrite(rcode) {
		t.Fatalf("forward: rcode %d, err %v", rcode, err)
	}
	mine.mu.Lock()
	defer mine.mu.Unlock()
	if mine.bits != legFQ|legFR || len(mine.legs) != 2 || mine.legs[0].kind != legFQ || mine.legs[1].kind != legFR {
		t.Fatalf("session %d got bits %d and %d legs, want the FORWARDER_QUERY and FORWARDER_RESPONSE", mine.id, mine.bits, len(mine.legs))
	}
	for _, l := range mine.legs {
		if l.tap == nil || len(l.tap.GetQueryMessage()) == 0 && len(l.tap.GetResponseMessage()) == 0 {
			t.Errorf("leg %d carries no packed message: %+v", l.kind, l.tap)
		}
	}
	// The response leg's time is forward's own stamp, not a second clock read.
	if fr := mine.legs[1]; !fr.at.Equal(tapResponseTime(fr.tap)) {
		t.Errorf("FORWARDER_RESPONSE leg at %v, want forward's stamp %v", fr.at, tapResponseTime(fr.tap))
	}
	if len(other.legs) != 0 {
		t.Errorf("another session in flight got %d legs", len(other.legs))
	}
}

// TestTapInjection fails loudly if a CoreDNS bump changes the dnstap
// internals dnsdiag relies on.
func TestTapInjection(t *testing.T) {
	d := newTestDiag(t, "dnsdiag", nil)
	if d.tap == nil || !d.tap.IncludeRawMessage || d.tap.ExtraFormat != "{/dnsdiag/session}" || d.tap.Next != nil {
		t.Fatalf("tap not built as forward needs it: %+v", d.tap)
	}
}

func TestForwardsBelowFindsEveryForward(t *testing.T) {
	f1, f2 := newForward(t, "127.0.0.1:9"), newForward(t, "127.0.0.1:9")
	f1.Next = f2
	chain := &struct{ wrapper }{wrapper{Next: f1}}
	if got := forwardsBelow(chain); len(got) != 2 || got[0] != f1 || got[1] != f2 {
		t.Fatalf("forwardsBelow found %v, want both forwards", got)
	}
	if got := forwardsBelow(plugin.HandlerFunc(nil)); len(got) != 0 {
		t.Fatalf("a handler without Next has no forwards below, got %v", got)
	}
}

// wrapper is a plugin value (not pointer) with a Next field, like acl.ACL.
type wrapper struct{ Next plugin.Handler }

func (w wrapper) ServeDNS(ctx context.Context, rw dns.ResponseWriter, r *dns.Msg) (int, error) {
	return w.Next.ServeDNS(ctx, rw, r)
}
func (w wrapper) Name() string { return "wrapper" }
