package dnsdiag

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"

	tap "github.com/dnstap/golang-dnstap"
	framestream "github.com/farsightsec/golang-framestream"
	"google.golang.org/protobuf/proto"
)

const (
	// maxFrame is the largest frame read: a dnstap message holds at most
	// two DNS messages of 64 KiB each. A larger one is skipped and counted.
	maxFrame = 160 << 10
	// handshakeTimeout bounds the Frame Streams handshake.
	handshakeTimeout = 5 * time.Second
	// expiryInterval is how often a connection ends the sessions whose
	// window closed; it bounds how late past the window their line comes.
	expiryInterval = 100 * time.Millisecond
)

// tapConn is one sender's connection: a goroutine reads frames as fast as
// they come and queues them, without ever waiting, for a second goroutine
// that pairs them. All of a CoreDNS dnstap instance's messages come over
// its one connection, in the order it tapped them, so pairing is per
// connection.
type tapConn struct {
	a     *Analyser
	conn  net.Conn
	queue chan []byte
	shed  atomic.Uint64 // frames shed so far
	p     *pairing      // owned by the pairing goroutine
}

func newTapConn(a *Analyser, c net.Conn) *tapConn {
	t := &tapConn{a: a, conn: c, queue: make(chan []byte, a.cfg.Queue)}
	t.p = newPairing(a, t.shed.Load)
	return t
}

// serve reads the connection to its end, then ends its open sessions.
func (t *tapConn) serve() {
	t.a.m.conns.Inc()
	defer t.a.m.conns.Dec()
	log.Infof("analyser: connection from %s", t.conn.RemoteAddr())
	paired := make(chan struct{})
	go func() {
		t.pair()
		close(paired)
	}()
	t.read()
	t.conn.Close()
	close(t.queue)
	<-paired
}

// read queues every frame of the connection until it ends, breaks off or
// stays silent for the idle timeout.
func (t *tapConn) read() {
	t.conn.SetReadDeadline(time.Now().Add(handshakeTimeout))
	r, err := tap.NewReader(t.conn, &tap.ReaderOptions{Bidirectional: true, Timeout: handshakeTimeout})
	if err != nil {
		log.Warningf("analyser: %s: no Frame Streams handshake: %v", t.conn.RemoteAddr(), err)
		return
	}
	buf := make([]byte, maxFrame)
	for {
		t.conn.SetReadDeadline(time.Now().Add(t.a.cfg.Idle))
		n, err := r.ReadFrame(buf)
		switch {
		case errors.Is(err, framestream.ErrDataFrameTooLarge):
			t.a.m.undecodable.WithLabelValues(undecodableTruncated).Inc()
			continue
		case errors.Is(err, io.ErrUnexpectedEOF):
			t.a.m.undecodable.WithLabelValues(undecodableTruncated).Inc()
			log.Warningf("analyser: %s: connection broke off inside a frame", t.conn.RemoteAddr())
			return
		case err != nil:
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				log.Warningf("analyser: %s: nothing received for %s: closing", t.conn.RemoteAddr(), t.a.cfg.Idle)
			}
			return
		}
		t.a.m.frames.Inc()
		select {
		case t.queue <- append([]byte(nil), buf[:n]...):
		default:
			t.shed.Add(1)
			t.a.m.shed.Inc()
		}
	}
}

// pair decodes and pairs the queued frames, and ends sessions as their
// window closes.
func (t *tapConn) pair() {
	tick := time.NewTicker(expiryInterval)
	defer tick.Stop()
	for {
		select {
		case f, ok := <-t.queue:
			if !ok {
				t.p.endAll()
				return
			}
			if d, ok := t.a.decode(f); ok {
				t.p.add(d, time.Now())
			}
		case now := <-tick.C:
			t.p.expire(now)
		}
	}
}

// decode reads one frame as a dnstap message of the four types pairing
// uses, counting what it cannot use.
func (a *Analyser) decode(f []byte) (*tap.Dnstap, bool) {
	d := new(tap.Dnstap)
	if err := proto.Unmarshal(f, d); err != nil {
		a.m.undecodable.WithLabelValues(undecodableProtobuf).Inc()
		return nil, false
	}
	switch d.GetMessage().GetType() {
	case tap.Message_CLIENT_QUERY, tap.Message_CLIENT_RESPONSE, tap.Message_FORWARDER_QUERY, tap.Message_FORWARDER_RESPONSE:
		return d, true
	}
	a.m.undecodable.WithLabelValues(undecodableNoMessage).Inc()
	return nil, false
}
