package dnsdiag

import (
	"testing"
	"unsafe"
)

// deep uses about n KiB of stack below its caller.
//
//go:noinline
func deep(n int) byte {
	var frame [1 << 10]byte
	frame[n%len(frame)] = byte(n)
	if n <= 1 {
		return frame[0]
	}
	return deep(n-1) + frame[1]
}

// stackMoves runs, on new goroutines, a path that goes 8 KiB deep, after
// reserveStack if reserve, and counts the goroutines whose stack the
// runtime moved (grew) during the path: a local's address changes then.
func stackMoves(reserve bool, runs int) (moved int) {
	for range runs {
		done := make(chan bool)
		go func() {
			if reserve {
				reserveStack()
			}
			var here byte
			before := uintptr(unsafe.Pointer(&here))
			deep(8)
			done <- uintptr(unsafe.Pointer(&here)) != before
		}()
		if <-done {
			moved++
		}
	}
	return moved
}

// TestReserveStack: after reserveStack the 8 KiB path never grows the
// stack, while without it a new goroutine's does (which shows that the test
// sees a growth when there is one).
func TestReserveStack(t *testing.T) {
	const runs = 50
	if without := stackMoves(false, runs); without == 0 {
		t.Fatalf("no stack grew in %d goroutines without reserveStack: the path is not deep enough to tell", runs)
	}
	// A GC may shrink a stack meanwhile; allow that to happen once.
	if with := stackMoves(true, runs); with > 1 {
		t.Errorf("%d of %d goroutines grew their stack after reserveStack", with, runs)
	}
}
