package dnsdiag

import (
	"context"
	"fmt"
	"reflect"
	"unsafe"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/dnstap"
	"github.com/coredns/coredns/plugin/forward"
	"github.com/coredns/coredns/plugin/metadata"
)

// This file is the only place dnsdiag reaches into CoreDNS internals. Each
// reach depends on an unexported detail that CoreDNS may change in any
// release, so checkInternals verifies all of them when an instance is set
// up: an upgrade that breaks one refuses to start, naming what broke,
// instead of silently turning every forwarder leg into a background
// session. internals_test.go fails on such an upgrade too.
//
//  1. dnstap's sink: forward hands its taps to a *dnstap.Dnstap, which
//     writes them to its unexported field io (an interface with the one
//     method Dnstap(*tap.Dnstap)). dnstap has no constructor taking a sink:
//     it only dials a socket or file from a Corefile. setDnstapSink writes
//     the field through reflect and unsafe.
//  2. The chain: CoreDNS's handler registry keeps one handler per plugin
//     name and server block, so a block with two forwards shows only the
//     last. Plugins keep the next handler in an exported field Next, a
//     convention, not an interface; forwardsBelow walks it by reflection.
//  3. The metadata map's context key: the metadata package keeps a query's
//     labels in a map under an unexported key, and has no constructor of a
//     context that shares a map lazily. The key is learnt by asking the
//     package for the labels of a probe context (metadataKey).
//  4. The JSON logger: with -log-format json, the report is a WARN record
//     with attributes, for which clog has no function; jsonLogger (sink.go)
//     reads the *slog.Logger from the writer clog gives the standard logger,
//     and falls back to clog's string form if it is not there.

// coreDNSVersion is the CoreDNS release whose internals this file was
// written and tested against.
const coreDNSVersion = "v1.15.0"

func internalsErr(format string, args ...any) error {
	return fmt.Errorf("%s: dnsdiag relies on CoreDNS %s internals (see internals.go) and cannot run on this build", fmt.Sprintf(format, args...), coreDNSVersion)
}

// checkInternals verifies the assumptions listed above that can be checked
// without a chain. The dnstap sink is checked where it is set, in newTap.
func checkInternals() error {
	if err := checkMetadataKey(metadataKey); err != nil {
		return err
	}
	if f := sessionMetadataFunc(); f == nil || f() != "1" {
		return internalsErr("a context carrying a session's metadata does not expose label %s", sessionLabel)
	}
	next, ok := reflect.TypeFor[forward.Forward]().FieldByName("Next")
	if !ok || !next.IsExported() || next.Type != reflect.TypeFor[plugin.Handler]() {
		return internalsErr("forward has no exported field Next of type plugin.Handler")
	}
	return nil
}

// sessionMetadataFunc is the session label's function as the plugins below
// dnsdiag would read it for session 1.
func sessionMetadataFunc() metadata.Func {
	return metadata.ValueFunc(withSession(context.Background(), new(sessionCtx), 1, true), sessionLabel)
}

// setDnstapSink makes sink the destination of t's messages (1 above).
func setDnstapSink(t *dnstap.Dnstap, sink any) error {
	field := reflect.ValueOf(t).Elem().FieldByName("io")
	value := reflect.ValueOf(sink)
	if !field.IsValid() || field.Kind() != reflect.Interface || !value.Type().Implements(field.Type()) {
		return internalsErr("dnstap has no settable sink field 'io'")
	}
	reflect.NewAt(field.Type(), unsafe.Pointer(field.UnsafeAddr())).Elem().Set(value)
	return nil
}

// forwardsBelow walks the plugin chain from h through the exported Next
// fields and returns every forward instance on it (2 above).
func forwardsBelow(h plugin.Handler) []*forward.Forward {
	var fs []*forward.Forward
	for depth := 0; h != nil && depth < 256; depth++ {
		if f, ok := h.(*forward.Forward); ok {
			fs = append(fs, f)
		}
		h = nextHandler(h)
	}
	return fs
}

// nextHandler returns the handler in h's exported Next field, if any.
func nextHandler(h plugin.Handler) plugin.Handler {
	v := reflect.ValueOf(h)
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return nil
	}
	f := v.FieldByName("Next")
	if !f.IsValid() || !f.CanInterface() {
		return nil
	}
	next, _ := f.Interface().(plugin.Handler)
	return next
}

// metadataKey is the context key of the metadata map (3 above): the
// package looks its map up under that key in the probe's Value, which
// records it. checkMetadataKey verifies it at setup.
var metadataKey = func() any {
	p := &keyProbe{Context: context.Background()}
	metadata.ValueFuncs(p)
	return p.key
}()

type keyProbe struct {
	context.Context
	key any
}

func (p *keyProbe) Value(k any) any { p.key = k; return nil }

// checkMetadataKey verifies that key finds the map metadata.ContextWithMetadata
// makes, and that a context serving that map under key is one the metadata
// package reads labels from.
func checkMetadataKey(key any) error {
	if key == nil || !reflect.TypeOf(key).Comparable() {
		return internalsErr("the metadata package looked up no usable context key for its map")
	}
	md := metadata.ContextWithMetadata(context.Background()).Value(key)
	if md == nil {
		return internalsErr("the metadata package's context key %T does not find the map ContextWithMetadata made", key)
	}
	if metadata.ValueFuncs(context.WithValue(context.Background(), key, md)) == nil {
		return internalsErr("the metadata package does not read its map from a context serving it under key %T", key)
	}
	return nil
}
