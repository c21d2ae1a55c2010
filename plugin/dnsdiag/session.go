package dnsdiag

import (
	"net/netip"
	"sync"
	"time"

	"github.com/dnsdiag/dnsdiag/plugin/hints"
	"github.com/dnsdiag/dnsdiag/plugin/report"
	tap "github.com/dnstap/golang-dnstap"
	"github.com/miekg/dns"
)

// Leg bits, as in the dnstap analyser's BitMap: a session's BitMap is the OR
// of the legs seen.
const (
	legCQ uint8 = 1 // CLIENT_QUERY
	legCR uint8 = 2 // CLIENT_RESPONSE
	legFQ uint8 = 4 // FORWARDER_QUERY
	legFR uint8 = 8 // FORWARDER_RESPONSE
)

// maxLegs bounds the legs one session keeps. forward makes at most a few
// attempts per upstream, so only a pathological chain reaches it; past it the
// session is marked SampleLoss instead of growing.
const maxLegs = 64

// noRcode marks a session whose client received nothing.
const noRcode = -1

// leg is one observed message. Forwarder legs keep forward's tap message,
// which already holds the packed DNS message, the addresses and the
// protocol, so recording a leg copies nothing.
type leg struct {
	kind  uint8
	at    time.Time
	tap   *tap.Message // FQ, FR
	msg   *dns.Msg     // CR written with WriteMsg
	raw   []byte       // CR written with Write
	rcode int          // CR
	err   error        // CR: writing to the client failed
}

// session is one client query and everything seen for it; or, for a
// background session, one upstream refresh that no client is waiting for.
//
// Sessions are pooled: a logged line is rendered from the session as it
// ends (see emit), and only a held session has its messages copied (see
// keepMessages), so a session that is not logged costs no allocation once
// the pool is warm.
type session struct {
	id    uint64
	start time.Time
	end   time.Time

	// Client side; zero for background sessions.
	w   dns.ResponseWriter // the server's writer, read only before finish returns
	req *dns.Msg

	// Background sessions only.
	background bool
	origin     uint64      // client session a late tap belonged to, 0 if none
	timer      *time.Timer // closes a session that never got an answer

	// mu guards what taps can change: with serve_stale verify, a refresh
	// goroutine taps while the client goroutine writes the stale answer.
	mu     sync.Mutex
	bits   uint8
	lost   bool // a leg was not recorded: the session is incomplete
	legs   []leg
	legBuf [6]leg
	rcode  int // rcode of the last CLIENT_RESPONSE leg, noRcode if none

	// Outcome of the chain, set when it returns; returned stays false if a
	// plugin below panicked.
	returned   bool
	chainRcode int   // rcode the chain returned
	err        error // error the chain returned

	verdict verdict // set by classify when the session has ended

	// What the cross-session detectors are fed (client sessions only):
	// filled when the query arrives and completed when it ends, in place,
	// so that feeding them allocates nothing. hintBuf backs verdict.hints.
	diag       *diagnosis // nil for background sessions
	probe      hints.Session
	probeTries [maxProbeAttempts]hints.Attempt
	hintBuf    [2]hints.Hint
	observed   bool         // the detectors have seen the session end (see answered)
	hints      []hints.Hint // what they found, backed by hintBuf
	held       bool         // they need a later event to finish its verdict
	// Guarded by the diagnosis's lock: the detector may release a held
	// session before it has ended (see diagnosis.park).
	parked, released bool
	extra            []hints.Hint // hints of a release before the end

	// What the report is fed, in place for the same reason.
	reportTries [maxProbeAttempts]report.Attempt

	// What the line needs besides the legs, set only for sessions that are
	// logged (see conclude and finish).
	ready         bool           // ready has run
	full          bool           // Messages carry whole DNS messages, not only headers
	maxLine       int            // the policy's maxLine
	metrics       *serverMetrics // the server the line is counted under
	server, proto string
	client, local netip.AddrPort // invalid when unknown

	// ambiguous: the analyser could as well have paired a leg with another
	// session (the same question from two clients at once).
	ambiguous bool
}

var sessionPool = sync.Pool{New: func() any { return new(session) }}

func newSession() *session {
	s := sessionPool.Get().(*session)
	s.legs = s.legBuf[:0]
	s.rcode = noRcode
	return s
}

// recycle clears every reference (legBuf included) so a pooled session
// retains no message.
func (s *session) recycle() {
	*s = session{}
	sessionPool.Put(s)
}

// addLeg records a leg under the session lock. Past maxLegs the leg is
// dropped and the session marked lost.
func (s *session) addLeg(l leg) {
	s.mu.Lock()
	s.addLegLocked(l)
	s.mu.Unlock()
}

func (s *session) addLegLocked(l leg) {
	if len(s.legs) >= maxLegs {
		s.lost = true
		dropped(reasonLegLimit)
		return
	}
	s.bits |= l.kind
	s.legs = append(s.legs, l)
	if l.kind == legCR {
		s.rcode = l.rcode
	}
}

// attempt is one upstream exchange: its FORWARDER_QUERY, the
// FORWARDER_RESPONSE if one came back, and when it began.
type attempt struct {
	q, r  *leg
	began time.Time
}

// attempts yields the session's upstream attempts in order. forward taps an
// attempt only after its exchange, both legs back to back, so an attempt
// began when the previous leg was seen, or when forward started if later.
func (s *session) attempts(yield func(attempt) bool) {
	for i := range s.legs {
		q := &s.legs[i]
		if q.kind != legFQ {
			continue
		}
		a := attempt{q: q, began: tapQueryTime(q.tap)}
		if i > 0 && s.legs[i-1].at.After(a.began) {
			a.began = s.legs[i-1].at
		}
		if i+1 < len(s.legs) && s.legs[i+1].kind == legFR {
			a.r = &s.legs[i+1]
		}
		if !yield(a) {
			return
		}
	}
}

// upstream is the address the attempt was sent to.
func (a attempt) upstream() netip.AddrPort {
	return tapAddrPort(a.q.tap.GetResponseAddress(), a.q.tap.GetResponsePort())
}

// tcp reports whether the attempt went over TCP (DoT included).
func (a attempt) tcp() bool {
	p := a.q.tap.GetSocketProtocol()
	return p == tap.SocketProtocol_TCP || p == tap.SocketProtocol_DOT
}

func (a attempt) duration() time.Duration { return a.q.at.Sub(a.began) }

// rcode is what the upstream answered, noRcode if it did not.
func (a attempt) rcode() int {
	if a.r == nil {
		return noRcode
	}
	return wireRcode(a.r.tap.GetResponseMessage())
}

func tapQueryTime(m *tap.Message) time.Time {
	return time.Unix(int64(m.GetQueryTimeSec()), int64(m.GetQueryTimeNsec()))
}
