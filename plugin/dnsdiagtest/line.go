package dnsdiagtest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// LinePrefix is what CoreDNS's clog puts before the JSON of a session line.
const LinePrefix = "[INFO] plugin/dnsdiag: "

// Line is one session line as dnsdiag logs it. Fields the plugin adds later
// decode into new optional members; encoding/json ignores members a line
// lacks and keys a Line lacks, so older and newer lines both parse.
type Line struct {
	Status          string
	BitMap          int
	Session         uint64
	Background      bool
	ClientSession   uint64
	Server          string
	Client          string
	Protocol        string
	QName           string
	QType           string
	Rcode           *string
	ServerGenerated bool
	Panic           bool
	Cause           string
	Error           string
	Hints           []Hint `json:",omitempty"`
	Time            string
	DurationMs      float64
	Upstreams       []Upstream
	Messages        []Message

	Raw string `json:"-"` // the JSON as logged
}

// Hint is one diagnosis hint of a session: a stable code, a sentence for
// people, and the details of its code, which the line carries as members
// of the hint object beside Code and Text (plugin/hints/json.go).
type Hint struct {
	Code    string
	Text    string
	Details map[string]any
}

// UnmarshalJSON reads a hint object: Code, Text, and every other member
// into Details.
func (h *Hint) UnmarshalJSON(b []byte) error {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	h.Code, _ = m["Code"].(string)
	h.Text, _ = m["Text"].(string)
	delete(m, "Code")
	delete(m, "Text")
	h.Details = m
	return nil
}

// Hint returns the session's hint of code, if it has one.
func (l Line) Hint(code string) (Hint, bool) {
	for _, h := range l.Hints {
		if h.Code == code {
			return h, true
		}
	}
	return Hint{}, false
}

// Upstream is one upstream attempt of a session.
type Upstream struct {
	Address    string
	Protocol   string
	Rcode      *string
	DurationMs float64
}

// Message is one leg of a session.
type Message struct {
	Type            string
	Time            string
	QueryAddress    string
	ResponseAddress string
	Protocol        string
	Message         json.RawMessage
}

// Header is the part of an RFC 8427 message the tests look at.
type Header struct {
	ID      int
	QR      int
	TC      int
	RCODE   int
	ANCOUNT int
	QNAME   string
}

// Header decodes the leg's message; a message that is not RFC 8427 JSON
// fails the test.
func (m Message) Header(t testing.TB) Header {
	t.Helper()
	var h Header
	if err := json.Unmarshal(m.Message, &h); err != nil {
		t.Fatalf("leg %s: message is not RFC 8427 JSON: %v: %s", m.Type, err, m.Message)
	}
	return h
}

// Types lists the session's leg types in order.
func (l Line) Types() []string {
	var ts []string
	for _, m := range l.Messages {
		ts = append(ts, m.Type)
	}
	return ts
}

// Count is how many legs of type typ the session has.
func (l Line) Count(typ string) int {
	n := 0
	for _, m := range l.Messages {
		if m.Type == typ {
			n++
		}
	}
	return n
}

// Summary is the line in brief, for test logs.
func (l Line) Summary() string {
	var ups []string
	for _, u := range l.Upstreams {
		ups = append(ups, fmt.Sprintf("%s/%s=%s(%vms)", u.Address, u.Protocol, RcodeString(u.Rcode), u.DurationMs))
	}
	return fmt.Sprintf("%s BitMap=%d Rcode=%s ServerGenerated=%v Background=%v Session=%d ClientSession=%d %s %s %s %vms legs=%v upstreams=%v cause=%q",
		l.Status, l.BitMap, l.RcodeString(), l.ServerGenerated, l.Background, l.Session, l.ClientSession, l.Protocol, l.QName, l.QType, l.DurationMs, l.Types(), ups, l.Cause)
}

// RcodeString renders Rcode, "null" for a client that got nothing.
func (l Line) RcodeString() string { return RcodeString(l.Rcode) }

// RcodeString renders an Rcode of a line or an upstream attempt, "null"
// where there was none.
func RcodeString(p *string) string {
	if p == nil {
		return "null"
	}
	return *p
}

// SessionJSON is the JSON of a session line out of one line of output: the
// message of an INFO line of plugin/dnsdiag, when it is a JSON object.
func SessionJSON(s string) (string, bool) {
	i := strings.Index(s, LinePrefix)
	if i < 0 || !strings.HasPrefix(s[i+len(LinePrefix):], "{") {
		return "", false
	}
	return s[i+len(LinePrefix):], true
}

// Parse parses a session line out of one line of output. ok is false for
// any other output; a session line that is not valid JSON is an error.
func Parse(s string) (l Line, ok bool, err error) {
	raw, ok := SessionJSON(s)
	if !ok {
		return Line{}, false, nil
	}
	if err := json.Unmarshal([]byte(raw), &l); err != nil {
		return Line{}, true, fmt.Errorf("%v: %s", err, raw)
	}
	l.Raw = raw
	return l, true, nil
}
