package dnsdiagtest

import (
	"strings"
	"testing"
)

// Concurrent writes and reads are race-free (go test -race) and lose nothing.
func TestSyncBuffer(t *testing.T) {
	var b SyncBuffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			_, _ = b.Write([]byte("x"))
		}
	}()
	for range 100 {
		_ = b.String()
	}
	<-done
	if got := b.String(); got != strings.Repeat("x", 100) {
		t.Errorf("got %q", got)
	}
}
