package dnsdiag

// stackReserve is how much stack, in bytes, reserveStack makes room for
// below dnsdiag's frame.
//
// The server runs every query on a new goroutine, whose stack starts small
// (Go sizes it from the average stack in use at the last GC: 2 to 8 KiB in
// a busy CoreDNS). A forwarded query on the kube-system chain goes about
// 8.4 KiB deep: 2.2 KiB of server and plugins above dnsdiag, 5.9 KiB below
// it, deepest where forward writes the answer (measured on a zeroed stack,
// CoreDNS v1.15.0). The runtime grows a stack by copying it and adjusting
// every frame on it, which costs several µs when it happens there, some 30
// frames down, twice if the stack started at 2 KiB. dnsdiag serves queries
// on workers whose stacks are grown already (workers.go); a query that finds
// none, the pool being at its cap, is served on its own goroutine after
// reserveStack, which grows the stack once, at dnsdiag, a dozen frames
// down, to the 16 KiB the whole path fits in: far cheaper than growing
// deep down (on forwarded traffic CoreDNS answered 15% more queries per
// second on one core than without it, make bench, kubefwd). 10 KiB here plus
// the 2.5 KiB above makes the runtime pick 16 KiB, the size it would reach
// anyway.
const stackReserve = 10 << 10

// reserveStack grows the calling goroutine's stack to hold stackReserve
// more bytes, unless it already does; then it costs a call and the zeroing
// of its frame. The frame is live only during the call: the room stays, as
// a goroutine's stack shrinks only at a GC, and only while mostly unused.
//
//go:noinline
func reserveStack() {
	var frame [stackReserve]byte
	keep(&frame)
}

// keep is apart so that the compiler cannot drop reserveStack's frame.
//
//go:noinline
func keep(frame *[stackReserve]byte) { frame[0] = 1 }
