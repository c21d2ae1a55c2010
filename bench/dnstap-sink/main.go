// Command dnstap-sink is the external dnstap reader of `make bench`: it
// accepts CoreDNS's `dnstap tcp://…` (or unix://) Frame Streams connections
// with golang-dnstap's FrameStreamSockInput, counts the frames it receives
// and, on SIGTERM or SIGINT, prints the count as "frames N" and exits.
//
// Frames are counted, not decoded, so that the sink costs as little CPU as
// possible on the core it shares with the load generator; -decode unmarshals
// each frame and counts message types too.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	tap "github.com/dnstap/golang-dnstap"
	"google.golang.org/protobuf/proto"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:6000", "listen address: host:port for TCP, or a path for a unix socket")
	decode := flag.Bool("decode", false, "decode every frame and count message types")
	flag.Parse()

	network := "tcp"
	if strings.Contains(*addr, "/") {
		network = "unix"
		os.Remove(*addr)
	}
	l, err := net.Listen(network, *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dnstap-sink:", err)
		os.Exit(1)
	}

	var frames atomic.Uint64
	var mu sync.Mutex
	types := map[string]uint64{}

	in := tap.NewFrameStreamSockInput(l)
	ch := make(chan []byte, 4096)
	go in.ReadInto(ch)
	go func() {
		var d tap.Dnstap
		for b := range ch {
			frames.Add(1)
			if !*decode {
				continue
			}
			name := "undecodable"
			if proto.Unmarshal(b, &d) == nil && d.GetMessage() != nil {
				name = d.GetMessage().GetType().String()
			}
			mu.Lock()
			types[name]++
			mu.Unlock()
		}
	}()
	fmt.Printf("listening %s %s\n", network, l.Addr())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	fmt.Printf("frames %d\n", frames.Load())
	mu.Lock()
	names := make([]string, 0, len(types))
	for n := range types {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Printf("type %s %d\n", n, types[n])
	}
	mu.Unlock()
}
