// Package e2e runs the real CoreDNS binary built with dnsdiag against
// Corefiles written per test, and checks both what DNS clients receive and
// the session lines dnsdiag logs.
//
// The binary comes from $COREDNS_BINARY (the Makefile's e2e target sets it
// after `make build`); without it TestMain builds ../build/coredns once into a
// temporary directory, so `go test ./e2e/` works on its own.
//
// All traffic goes to 127.0.0.1, on ports picked free per test, so tests run
// in parallel, each against its own coredns processes.
package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dnsdiag/dnsdiag/plugin/dnsdiagtest"
	"github.com/miekg/dns"
)

// binary is the coredns executable under test.
var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	// The tests spend their time waiting on sockets and timeouts, not CPU:
	// run them all at once unless -parallel was given explicitly.
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		_ = flag.Set("test.parallel", "32")
	}

	code, err := setupBinary(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func setupBinary(m *testing.M) (int, error) {
	if b := os.Getenv("COREDNS_BINARY"); b != "" {
		abs, err := filepath.Abs(b)
		if err != nil {
			return 0, err
		}
		if _, err := os.Stat(abs); err != nil {
			return 0, fmt.Errorf("COREDNS_BINARY: %w", err)
		}
		binary = abs
		return m.Run(), nil
	}
	dir, err := os.MkdirTemp("", "dnsdiag-e2e-bin-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "coredns")
	fmt.Fprintln(os.Stderr, "e2e: COREDNS_BINARY not set, building ../build/coredns (about a minute)")
	cmd := exec.Command("go", "build", "-trimpath", "-o", binary, "../build/coredns")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("building coredns: %w", err)
	}
	return m.Run(), nil
}

// ---------------------------------------------------------------------------
// Ports

var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{}
)

// freePort returns a port that was free on 127.0.0.1 for both TCP and UDP
// when it was checked, and that no other test of this process was given.
// It picks below the kernel's ephemeral range: a port from that range can
// be taken, between the check and coredns binding it, by any client socket
// of the tests running in parallel (Start retries then, but rarely needs to).
func freePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	lo, hi := portRange()
	for range 1000 {
		port := lo + rand.IntN(hi-lo)
		if portsUsed[port] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		portsUsed[port] = true
		return port
	}
	t.Fatal("no free port found")
	return 0
}

// portRange is where freePort picks: from 10000 up to the start of the
// ephemeral range (/proc/sys/net/ipv4/ip_local_port_range), or every
// unprivileged port where that range leaves too little room below it.
func portRange() (lo, hi int) {
	const floor = 10000
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if f := strings.Fields(string(b)); err == nil && len(f) == 2 {
		if start, err := strconv.Atoi(f[0]); err == nil && start >= floor+5000 {
			return floor, start
		}
	}
	return 1024, 65536
}

// placeholder matches the port placeholders of a Corefile text: {{NAME}}
// with NAME in capitals. template's own {{ .Name }} does not match.
var placeholder = regexp.MustCompile(`\{\{([A-Z][A-Z0-9_]*)\}\}`)

// ---------------------------------------------------------------------------
// Output capture

// output is the coredns process's stdout and stderr, line by line.
type output struct {
	mu    sync.Mutex
	lines []string
	eof   bool
}

func (o *output) add(line string) {
	o.mu.Lock()
	o.lines = append(o.lines, line)
	o.mu.Unlock()
}

func (o *output) snapshot() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.lines...)
}

// waitEOF waits, at most timeout, until the process's output is read to
// its end.
func (o *output) waitEOF(timeout time.Duration) {
	for deadline := time.Now().Add(timeout); !o.closed() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
}

func (o *output) closed() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.eof
}

// ---------------------------------------------------------------------------
// Session lines

// Line is one session line. Its schema lives in dnsdiagtest, shared with
// the plugin's unit tests, so that both read a line the same way.
type Line = dnsdiagtest.Line

// ---------------------------------------------------------------------------
// A coredns process

// Server is one running coredns process.
type Server struct {
	t       *testing.T
	dir     string
	conf    string
	ports   map[string]int
	cmd     *exec.Cmd
	out     *output
	exited  chan struct{}
	exitErr error
	stopped bool
}

// Start runs coredns on corefile, whose {{NAME}} placeholders become ports
// free on 127.0.0.1 (or the ones given in ports), and waits until it
// serves. The process is killed when the test ends.
func Start(t *testing.T, corefile string, ports map[string]int) *Server {
	t.Helper()
	var lastOut []string
	for attempt := 0; attempt < 3; attempt++ {
		s := launch(t, corefile, ports)
		err := s.waitServing(15 * time.Second)
		if err == nil && s.count("address already in use") > 0 {
			// prometheus only logs that its listener failed, and serves on.
			err = errors.New("a listener's port was taken")
		}
		if err == nil {
			return s
		}
		lastOut = s.out.snapshot()
		s.stopped = true
		s.kill()
		// A port handed out as free can be taken by someone else before
		// coredns binds it: try again on new ports.
		if strings.Contains(strings.Join(lastOut, "\n"), "address already in use") {
			continue
		}
		t.Fatalf("coredns did not start: %v\nCorefile:\n%s\noutput:\n%s", err, readFile(t, s.conf), strings.Join(lastOut, "\n"))
	}
	t.Fatalf("coredns did not start, ports kept being taken:\n%s", strings.Join(lastOut, "\n"))
	return nil
}

// launch starts the process without waiting for it to serve.
func launch(t *testing.T, corefile string, ports map[string]int) *Server {
	t.Helper()
	s := newServer(t)
	for k, v := range ports {
		s.ports[k] = v
	}
	s.conf = filepath.Join(s.dir, "Corefile")
	s.WriteCorefile(corefile)
	s.start(binary, s.dir, "-conf", s.conf)
	t.Cleanup(func() { s.cleanup() })
	return s
}

// newServer is a Server whose process is not started yet, with a temporary
// directory of its own.
func newServer(t *testing.T) *Server {
	return &Server{t: t, dir: t.TempDir(), ports: map[string]int{}, out: &output{}, exited: make(chan struct{})}
}

// start runs bin with args in dir (the test's own directory if dir is ""),
// collects what it writes on stdout and stderr into s's output until the
// pipe ends, and records its exit in s.exitErr and s.exited.
func (s *Server) start(bin, dir string, args ...string) {
	s.t.Helper()
	var r *os.File
	s.cmd, r = spawn(s.t, bin, dir, args...)
	go func() {
		eachLine(bufio.NewReader(r), s.out.add)
		r.Close()
		s.out.mu.Lock()
		s.out.eof = true
		s.out.mu.Unlock()
	}()
	go func() {
		s.exitErr = s.cmd.Wait()
		close(s.exited)
	}()
}

// spawn starts bin with args in dir (the test's own directory if dir is
// ""), with its stdout and stderr on a pipe, and returns the pipe's read end.
func spawn(t testing.TB, bin, dir string, args ...string) (*exec.Cmd, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	w.Close()
	return cmd, r
}

// eachLine calls line with every non-empty line br reads, without its
// line ending, until br ends or fails.
func eachLine(br *bufio.Reader, line func(string)) {
	for {
		l, err := br.ReadString('\n')
		if l = strings.TrimRight(l, "\r\n"); l != "" {
			line(l)
		}
		if err != nil {
			return
		}
	}
}

// WriteCorefile (re)writes the process's Corefile, substituting the same
// ports for the same placeholder names and picking new ones for new names.
func (s *Server) WriteCorefile(corefile string) {
	s.t.Helper()
	writeCorefile(s.t, s.conf, corefile, s.ports)
}

// writeCorefile writes corefile to path with each {{NAME}} placeholder
// replaced by ports[NAME], adding a free port to ports for a new name, and
// returns the text written.
func writeCorefile(t testing.TB, path, corefile string, ports map[string]int) string {
	t.Helper()
	text := placeholder.ReplaceAllStringFunc(corefile, func(m string) string {
		name := placeholder.FindStringSubmatch(m)[1]
		p, ok := ports[name]
		if !ok {
			p = freePort(t)
			ports[name] = p
		}
		return strconv.Itoa(p)
	})
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return text
}

// waitServing waits until coredns printed its version banner, which it does
// once every server block listens.
func (s *Server) waitServing(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, l := range s.out.snapshot() {
			if strings.HasPrefix(l, "CoreDNS-") {
				return nil
			}
		}
		select {
		case <-s.exited:
			// The process may exit before its last words (the error that
			// made it exit) have been read from the pipe: wait for them.
			s.out.waitEOF(2 * time.Second)
			return fmt.Errorf("coredns exited: %v", s.exitErr)
		case <-time.After(10 * time.Millisecond):
		}
	}
	return errors.New("timed out waiting for the CoreDNS banner")
}

// Port is the port substituted for placeholder name.
func (s *Server) Port(name string) int {
	p, ok := s.ports[name]
	if !ok {
		s.t.Fatalf("no port placeholder {{%s}} in the Corefile", name)
	}
	return p
}

// Addr is 127.0.0.1:port of placeholder name.
func (s *Server) Addr(name string) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port(name)))
}

// ServerLabel is the Server field of sessions served on placeholder name.
func (s *Server) ServerLabel(name string) string { return "dns://" + s.Addr(name) }

// Output is everything the process wrote so far.
func (s *Server) Output() []string { return s.out.snapshot() }

// Lines is every session line so far; a dnsdiag line that is not valid
// JSON fails the test.
func (s *Server) Lines() []Line {
	s.t.Helper()
	var ls []Line
	for _, o := range s.out.snapshot() {
		l, ok, err := dnsdiagtest.Parse(o)
		if err != nil {
			s.t.Fatalf("unparseable dnsdiag line: %v", err)
		}
		if ok {
			ls = append(ls, l)
		}
	}
	return ls
}

// LinesWhere is every session line so far for which pred holds.
func (s *Server) LinesWhere(pred func(Line) bool) []Line {
	s.t.Helper()
	var ls []Line
	for _, l := range s.Lines() {
		if pred(l) {
			ls = append(ls, l)
		}
	}
	return ls
}

const lineTimeout = 10 * time.Second

// WaitLine waits, at most 10 s, for a session line for which pred holds and
// returns the first one.
func (s *Server) WaitLine(desc string, pred func(Line) bool) Line {
	s.t.Helper()
	return s.WaitLines(desc, 1, pred)[0]
}

// WaitLines waits, at most 10 s, until n session lines satisfy pred, and
// returns them all (possibly more than n).
func (s *Server) WaitLines(desc string, n int, pred func(Line) bool) []Line {
	s.t.Helper()
	deadline := time.Now().Add(lineTimeout)
	for {
		ls := s.LinesWhere(pred)
		if len(ls) >= n {
			return ls
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("timed out waiting for %d session line(s) %s; got %d; output:\n%s", n, desc, len(ls), s.tail(60))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitClient waits for the session line of query r: same client address
// (ports get reused, so also) same question and same DNS id.
func (s *Server) WaitClient(r Result) Line {
	s.t.Helper()
	name := r.Query.Question[0].Name
	return s.WaitLine(fmt.Sprintf("for %s id %d from %s", name, r.Query.Id, r.Local), func(l Line) bool {
		return isClient(l, r)
	})
}

// isClient reports whether l is the session of query r.
func isClient(l Line, r Result) bool {
	if l.Background || l.Client != r.Local || l.QName != r.Query.Question[0].Name || len(l.Messages) == 0 {
		return false
	}
	var h struct{ ID int }
	return json.Unmarshal(l.Messages[0].Message, &h) == nil && h.ID == int(r.Query.Id)
}

// WaitOutput waits, at most 10 s, until n output lines contain substr.
func (s *Server) WaitOutput(substr string, n int) {
	s.t.Helper()
	if !s.waitCount(substr, n, lineTimeout) {
		s.t.Fatalf("timed out waiting for %d output line(s) containing %q; got %d; output:\n%s", n, substr, s.count(substr), s.tail(60))
	}
}

// Signal sends sig to the process.
func (s *Server) Signal(sig os.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal %v: %v", sig, err)
	}
}

// Reload sends SIGUSR1 and waits for CoreDNS to report the reload done.
func (s *Server) Reload() {
	s.t.Helper()
	received, done := s.count("SIGUSR1: Reloading"), s.count("Reloading complete")
	s.Signal(syscall.SIGUSR1)
	// caddy subscribes to SIGUSR1 from a goroutine it starts when the
	// process starts, and the Go runtime ignores a SIGUSR1 nobody has
	// subscribed to yet: on a busy machine the first signal can arrive
	// before that goroutine has run. Once subscribed, caddy logs receipt at
	// once, so a signal not acknowledged within seconds was ignored.
	for resent := 0; !s.waitCount("SIGUSR1: Reloading", received+1, 3*time.Second); resent++ {
		if resent == 3 {
			s.t.Fatalf("SIGUSR1 sent %d times, never received; output:\n%s", resent+1, s.tail(60))
		}
		s.t.Logf("SIGUSR1 not received within 3 s (caddy not yet subscribed?): sending it again")
		s.Signal(syscall.SIGUSR1)
	}
	s.WaitOutput("Reloading complete", done+1)
}

// waitCount waits up to timeout for n output lines containing substr.
func (s *Server) waitCount(substr string, n int, timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); ; time.Sleep(10 * time.Millisecond) {
		if s.count(substr) >= n {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

func (s *Server) count(substr string) int {
	c := 0
	for _, l := range s.out.snapshot() {
		if strings.Contains(l, substr) {
			c++
		}
	}
	return c
}

// Stop sends SIGTERM, waits for the process to exit and for its output to
// be read completely, and returns its exit code.
func (s *Server) Stop() int {
	s.t.Helper()
	s.stopped = true
	s.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		s.kill()
		s.t.Fatalf("coredns did not exit within 15 s of SIGTERM; output:\n%s", s.tail(40))
	}
	s.out.waitEOF(5 * time.Second)
	return exitCode(s.exitErr)
}

func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -1
}

func (s *Server) kill() {
	select {
	case <-s.exited:
	default:
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// cleanup kills the process and fails the test if coredns crashed, died on
// its own, or wrote a dnsdiag line that is not JSON. On failure it shows the
// end of the output.
func (s *Server) cleanup() {
	select {
	case <-s.exited:
		if !s.stopped {
			s.t.Errorf("coredns exited on its own: %v", s.exitErr)
		}
	default:
	}
	s.kill()
	for _, o := range s.out.snapshot() {
		if strings.HasPrefix(o, "panic:") || strings.HasPrefix(o, "fatal error:") || strings.Contains(o, "WARNING: DATA RACE") {
			s.t.Errorf("coredns crashed: %s", o)
		}
		if _, _, err := dnsdiagtest.Parse(o); err != nil {
			s.t.Errorf("unparseable dnsdiag line: %v", err)
		}
	}
	if s.t.Failed() {
		s.t.Logf("Corefile %s:\n%s\ncoredns output (last lines):\n%s", s.conf, readFile(s.t, s.conf), s.tail(40))
	}
}

// tail is the process's output for a failure message: the last n lines
// other than session lines, which can drown what explains a failure (a
// reload's or a plugin's messages), then the last few session lines.
func (s *Server) tail(n int) string {
	const sessionsKept = 5
	var other, sessions []string
	for _, l := range s.out.snapshot() {
		if _, ok := dnsdiagtest.SessionJSON(l); ok {
			sessions = append(sessions, l)
		} else {
			other = append(other, l)
		}
	}
	if len(other) > n {
		other = other[len(other)-n:]
	}
	out := slices.Clone(other)
	if len(sessions) > sessionsKept {
		out = append(out, fmt.Sprintf("... %d session lines, the last %d:", len(sessions), sessionsKept))
		sessions = sessions[len(sessions)-sessionsKept:]
	}
	for _, l := range sessions {
		if len(l) > 600 {
			l = l[:600] + "…"
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

func readFile(t testing.TB, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}

// ---------------------------------------------------------------------------
// DNS client

// Result is what a query got back.
type Result struct {
	Query *dns.Msg
	Msg   *dns.Msg // nil when nothing came back
	Local string   // the client's own address, as the server saw it
	Err   error
}

// Query sends one query from a fresh socket over proto ("udp" or "tcp") to
// addr and waits at most timeout for the answer.
func Query(t testing.TB, proto, addr, name string, qtype uint16, timeout time.Duration) Result {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	return Exchange(t, proto, addr, m, timeout)
}

// Exchange sends m from a fresh socket. It does not fail the test itself,
// so it may be called from any goroutine.
func Exchange(t testing.TB, proto, addr string, m *dns.Msg, timeout time.Duration) Result {
	t.Helper()
	c := &dns.Client{Net: proto, Timeout: timeout}
	conn, err := c.Dial(addr)
	if err != nil {
		return Result{Query: m, Err: err}
	}
	defer conn.Close()
	res := Result{Query: m, Local: conn.LocalAddr().String()}
	res.Msg, _, res.Err = c.ExchangeWithConn(m, conn)
	return res
}

// Concurrently runs exchange(i) for every i in [0, n) on workers goroutines
// and returns the results indexed by i.
func Concurrently(n, workers int, exchange func(i int) Result) []Result {
	results := make([]Result, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				results[i] = exchange(i)
			}
		})
	}
	wg.Wait()
	return results
}

// MustAnswer fails the test unless the query got an answer with rcode.
func (r Result) MustAnswer(t testing.TB, rcode int) *dns.Msg {
	t.Helper()
	if r.Err != nil || r.Msg == nil {
		t.Fatalf("query %s from %s: no answer: %v", r.Query.Question[0].Name, r.Local, r.Err)
	}
	if r.Msg.Rcode != rcode {
		t.Fatalf("query %s: got rcode %s, want %s\n%v", r.Query.Question[0].Name, dns.RcodeToString[r.Msg.Rcode], dns.RcodeToString[rcode], r.Msg)
	}
	if r.Msg.Id != r.Query.Id {
		t.Fatalf("query %s: answer id %d, want %d", r.Query.Question[0].Name, r.Msg.Id, r.Query.Id)
	}
	return r.Msg
}

// RawExchange sends packed query bytes over proto and returns the packed
// reply exactly as it came off the wire.
func RawExchange(t testing.TB, proto, addr string, q []byte, timeout time.Duration) []byte {
	t.Helper()
	conn, err := net.DialTimeout(proto, addr, timeout)
	if err != nil {
		t.Fatalf("dial %s %s: %v", proto, addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if proto == "udp" {
		if _, err := conn.Write(q); err != nil {
			t.Fatalf("write: %v", err)
		}
		buf := make([]byte, 65535)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("read from %s: %v", addr, err)
		}
		return buf[:n]
	}
	framed := append([]byte{byte(len(q) >> 8), byte(len(q))}, q...)
	if _, err := conn.Write(framed); err != nil {
		t.Fatalf("write: %v", err)
	}
	var l [2]byte
	if _, err := io.ReadFull(conn, l[:]); err != nil {
		t.Fatalf("read length from %s: %v", addr, err)
	}
	buf := make([]byte, int(l[0])<<8|int(l[1]))
	if _, err := io.ReadFull(conn, buf); err != nil {
		t.Fatalf("read from %s: %v", addr, err)
	}
	return buf
}

// ---------------------------------------------------------------------------
// Assertions

// want is what a session line must show; zero fields are not checked
// unless noted.
type want struct {
	Status    string
	BitMap    int
	Rcode     string // "null" for no answer
	Server    string
	Client    string
	Protocol  string
	QName     string
	QType     string
	Types     []string // leg types in order, if set
	ServerGen *bool    // ServerGenerated, if set
	Upstreams int      // len(Upstreams) if >= 0; use -1 to skip
}

func ptr[T any](v T) *T { return &v }

func check(t testing.TB, l Line, w want) {
	t.Helper()
	t.Logf("session: %s", l.Summary())
	bad := func(field string, got, exp any) {
		t.Errorf("%s: got %v, want %v\nline: %s", field, got, exp, l.Raw)
	}
	if w.Status != "" && l.Status != w.Status {
		bad("Status", l.Status, w.Status)
	}
	if w.BitMap != 0 && l.BitMap != w.BitMap {
		bad("BitMap", l.BitMap, w.BitMap)
	}
	if w.Rcode != "" && l.RcodeString() != w.Rcode {
		bad("Rcode", l.RcodeString(), w.Rcode)
	}
	if w.Server != "" && l.Server != w.Server {
		bad("Server", l.Server, w.Server)
	}
	if w.Client != "" && l.Client != w.Client {
		bad("Client", l.Client, w.Client)
	}
	if w.Protocol != "" && l.Protocol != w.Protocol {
		bad("Protocol", l.Protocol, w.Protocol)
	}
	if w.QName != "" && l.QName != w.QName {
		bad("QName", l.QName, w.QName)
	}
	if w.QType != "" && l.QType != w.QType {
		bad("QType", l.QType, w.QType)
	}
	if w.Types != nil && strings.Join(l.Types(), ",") != strings.Join(w.Types, ",") {
		bad("Messages types", l.Types(), w.Types)
	}
	if w.ServerGen != nil && l.ServerGenerated != *w.ServerGen {
		bad("ServerGenerated", l.ServerGenerated, *w.ServerGen)
	}
	if w.Upstreams >= 0 && len(l.Upstreams) != w.Upstreams {
		bad("len(Upstreams)", len(l.Upstreams), w.Upstreams)
	}
	// Whatever the scenario: the BitMap is the OR of the legs present, the
	// upstream attempts are the FORWARDER_QUERY legs, and a client session
	// starts with the client's query.
	bits := 0
	for _, m := range l.Messages {
		bits |= map[string]int{"CLIENT_QUERY": 1, "CLIENT_RESPONSE": 2, "FORWARDER_QUERY": 4, "FORWARDER_RESPONSE": 8}[m.Type]
	}
	if bits != l.BitMap {
		bad("BitMap vs legs", l.BitMap, bits)
	}
	if n := l.Count("FORWARDER_QUERY"); n != len(l.Upstreams) {
		bad("FORWARDER_QUERY legs vs Upstreams", n, len(l.Upstreams))
	}
	if !l.Background && (len(l.Messages) == 0 || l.Messages[0].Type != "CLIENT_QUERY") {
		bad("first leg", l.Types(), "CLIENT_QUERY first")
	}
	if l.Background && l.Count("CLIENT_QUERY")+l.Count("CLIENT_RESPONSE") != 0 {
		bad("background legs", l.Types(), "forwarder legs only")
	}
	// Times: the session starts no later than its first leg, legs are in
	// order, and no upstream attempt outlasts the session.
	start, err := time.Parse(time.RFC3339Nano, l.Time)
	if err != nil {
		bad("Time", l.Time, "RFC 3339")
	}
	prev := start
	for _, m := range l.Messages {
		at, err := time.Parse(time.RFC3339Nano, m.Time)
		if err != nil || at.Before(prev) {
			bad(m.Type+" Time", m.Time, "RFC 3339, not before "+prev.Format(time.RFC3339Nano))
		}
		prev = at
	}
	if l.DurationMs < 0 {
		bad("DurationMs", l.DurationMs, ">= 0")
	}
	for _, u := range l.Upstreams {
		if u.DurationMs < 0 || u.DurationMs > l.DurationMs+0.001 {
			bad("upstream DurationMs", u.DurationMs, fmt.Sprintf("within the session's %v", l.DurationMs))
		}
	}
	// Client legs go between the client and this server's address.
	if !l.Background {
		for _, m := range l.Messages {
			if (m.Type == "CLIENT_QUERY" || m.Type == "CLIENT_RESPONSE") &&
				(m.QueryAddress != l.Client || "dns://"+m.ResponseAddress != l.Server || m.Protocol != l.Protocol) {
				bad(m.Type+" addresses", m.QueryAddress+" -> "+m.ResponseAddress+" "+m.Protocol, l.Client+" -> "+l.Server+" "+l.Protocol)
			}
		}
	}
}

// checkClientLegs checks that the client legs carry the client's query and
// the answer it got.
func checkClientLegs(t testing.TB, l Line, r Result) {
	t.Helper()
	for _, m := range l.Messages {
		switch m.Type {
		case "CLIENT_QUERY":
			h := m.Header(t)
			if h.ID != int(r.Query.Id) || h.QR != 0 || h.QNAME != r.Query.Question[0].Name {
				t.Errorf("CLIENT_QUERY leg %+v does not match the query sent (id %d, %s)", h, r.Query.Id, r.Query.Question[0].Name)
			}
			if m.QueryAddress != r.Local {
				t.Errorf("CLIENT_QUERY QueryAddress %q, want the client's %q", m.QueryAddress, r.Local)
			}
		case "CLIENT_RESPONSE":
			h := m.Header(t)
			if r.Msg == nil {
				t.Errorf("CLIENT_RESPONSE leg present but the client got nothing: %s", l.Raw)
				continue
			}
			if h.ID != int(r.Msg.Id) || h.QR != 1 || h.RCODE != r.Msg.Rcode || h.ANCOUNT != len(r.Msg.Answer) || (h.TC == 1) != r.Msg.Truncated {
				t.Errorf("CLIENT_RESPONSE leg %+v does not match what the client got (id %d rcode %d answers %d tc %v)", h, r.Msg.Id, r.Msg.Rcode, len(r.Msg.Answer), r.Msg.Truncated)
			}
			checkAnswerRRs(t, m, r.Msg)
		}
	}
}

// checkAnswerRRs compares the RFC 8427 answerRRs of a leg, when the leg
// carries them, with the answer section the client got.
func checkAnswerRRs(t testing.TB, leg dnsdiagtest.Message, got *dns.Msg) {
	t.Helper()
	var m struct {
		AnswerRRs *[]struct {
			NAME      string
			TYPE      int
			CLASS     int
			TTL       int
			RdataA    string `json:"rdataA"`
			RdataAAAA string `json:"rdataAAAA"`
		} `json:"answerRRs"`
	}
	if err := json.Unmarshal(leg.Message, &m); err != nil {
		t.Errorf("%s leg: %v", leg.Type, err)
		return
	}
	if m.AnswerRRs == nil {
		return // messages header
	}
	rrs := *m.AnswerRRs
	if len(rrs) != len(got.Answer) {
		t.Errorf("%s leg: %d answerRRs, the client got %d", leg.Type, len(rrs), len(got.Answer))
		return
	}
	for i, rr := range got.Answer {
		h := rr.Header()
		j := rrs[i]
		if j.NAME != h.Name || j.TYPE != int(h.Rrtype) || j.CLASS != int(h.Class) || j.TTL != int(h.Ttl) {
			t.Errorf("%s leg answer %d: %+v, the client got %v", leg.Type, i, j, rr)
		}
		switch v := rr.(type) {
		case *dns.A:
			if j.RdataA != v.A.String() {
				t.Errorf("%s leg answer %d: rdataA %q, the client got %s", leg.Type, i, j.RdataA, v.A)
			}
		case *dns.AAAA:
			if j.RdataAAAA != v.AAAA.String() {
				t.Errorf("%s leg answer %d: rdataAAAA %q, the client got %s", leg.Type, i, j.RdataAAAA, v.AAAA)
			}
		}
	}
}

// mustAnswerA fails the test unless r got NOERROR with the single A
// record addr.
func mustAnswerA(t testing.TB, r Result, addr string) {
	t.Helper()
	if got := answerA(t, r.MustAnswer(t, dns.RcodeSuccess)); got != addr {
		t.Fatalf("query %s: answer %s, want %s", r.Query.Question[0].Name, got, addr)
	}
}

// answerA is the single A record of an answer.
func answerA(t testing.TB, m *dns.Msg) string {
	t.Helper()
	if len(m.Answer) != 1 {
		t.Fatalf("want 1 answer, got %v", m.Answer)
	}
	a, ok := m.Answer[0].(*dns.A)
	if !ok {
		t.Fatalf("want an A record, got %v", m.Answer[0])
	}
	return a.A.String()
}
