package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	tap "github.com/dnstap/golang-dnstap"
	framestream "github.com/farsightsec/golang-framestream"
	"github.com/miekg/dns"
	"google.golang.org/protobuf/proto"
)

// The replayed stream: one CoreDNS on one core cannot stream fast enough to
// keep the analyser's core busy, so its maximum is measured with a sender
// that costs next to nothing per frame. The runner starts itself again as
// that sender (BENCH_REPLAY=ADDR,SESSIONS_PER_SECOND,SECONDS,QUERIES) on the
// load core; it streams what CoreDNS streams for the bench's cache-hit traffic,
// CLIENT_QUERY and CLIENT_RESPONSE of bench/queries.txt's names, with the
// client ports and ids dnsperf uses (4 sockets, sequential ids), paced to
// the rate, written as CoreDNS's dnstap writes (through framestream's 4 KiB
// buffer, flushed when full and every second), and prints "sent N" when
// done.

// replayPorts are the client ports of the replayed sessions, one per
// dnsperf client (CLIENTS' default).
const replayPorts = 4

// replayTemplate is one marshalled frame and where its client port (a
// 3-byte varint: ports 16384-65535) and DNS id are.
type replayTemplate struct {
	frame        []byte
	portAt, idAt int
}

const (
	replayPortBase   = 40000
	replayIDSentinel = 0xbeef
)

// replayTemplates builds a CLIENT_QUERY and a CLIENT_RESPONSE frame for
// each name, as CoreDNS's dnstap writes them.
func replayTemplates(names []string) ([][2]replayTemplate, error) {
	var out [][2]replayTemplate
	now := time.Now()
	sec, nsec := uint64(now.Unix()), uint32(now.Nanosecond())
	for _, name := range names {
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(name), dns.TypeA)
		q.Id = replayIDSentinel
		r := new(dns.Msg)
		r.SetReply(q)
		rr, err := dns.NewRR(dns.Fqdn(name) + " 3600 IN A 192.0.2.1")
		if err != nil {
			return nil, err
		}
		r.Answer = append(r.Answer, rr)
		var pair [2]replayTemplate
		for i, typ := range []tap.Message_Type{tap.Message_CLIENT_QUERY, tap.Message_CLIENT_RESPONSE} {
			m := q
			if i == 1 {
				m = r
			}
			wire, err := m.Pack()
			if err != nil {
				return nil, err
			}
			port := uint32(replayPortBase)
			msg := &tap.Message{Type: typ.Enum(), SocketFamily: tap.SocketFamily_INET.Enum(), SocketProtocol: tap.SocketProtocol_UDP.Enum(),
				QueryAddress: net.IPv4(127, 0, 0, 1).To4(), QueryPort: &port, ResponseAddress: net.IPv4(127, 0, 0, 1).To4(),
				QueryTimeSec: &sec, QueryTimeNsec: &nsec}
			if i == 0 {
				msg.QueryMessage = wire
			} else {
				msg.ResponseMessage, msg.ResponseTimeSec, msg.ResponseTimeNsec = wire, &sec, &nsec
			}
			dt := tap.Dnstap_MESSAGE
			f, err := proto.Marshal(&tap.Dnstap{Type: &dt, Identity: []byte("bench-replay"), Version: []byte("CoreDNS-1.15.0"), Message: msg})
			if err != nil {
				return nil, err
			}
			t := replayTemplate{frame: f}
			// The port field: tag 0x30 (query_port, field 6, a varint), then its 3-byte varint.
			pv := binary.AppendUvarint([]byte{0x30}, uint64(port))
			id := []byte{replayIDSentinel >> 8, replayIDSentinel & 0xff}
			if bytes.Count(f, pv) != 1 || bytes.Count(f, id) != 1 || len(pv) != 4 {
				return nil, fmt.Errorf("replay frame for %s: port or id not found once", name)
			}
			t.portAt, t.idAt = bytes.Index(f, pv)+1, bytes.Index(f, id)
			pair[i] = t
		}
		out = append(out, pair)
	}
	return out, nil
}

// fill writes session i's port and id into the template's frame.
func (t *replayTemplate) fill(port uint32, id uint16) []byte {
	binary.PutUvarint(t.frame[t.portAt:t.portAt+3], uint64(port))
	t.frame[t.idAt], t.frame[t.idAt+1] = byte(id>>8), byte(id)
	return t.frame
}

// replaySession is session i's client port and id: dnsperf's clients in
// turn, each counting ids up.
func replaySession(i int) (port uint32, id uint16) {
	return replayPortBase + uint32(i%replayPorts), uint16(i / replayPorts)
}

// replayMain is the sender: BENCH_REPLAY=ADDR,RATE,SECONDS,QUERIES.
func replayMain(spec string) error {
	f := strings.SplitN(spec, ",", 4)
	if len(f) != 4 {
		return fmt.Errorf("BENCH_REPLAY=%q: want ADDR,SESSIONS_PER_SECOND,SECONDS,QUERIES", spec)
	}
	queries := f[3]
	rate, err1 := strconv.ParseFloat(f[1], 64)
	secs, err2 := strconv.ParseFloat(f[2], 64)
	if err1 != nil || err2 != nil || rate <= 0 || secs <= 0 {
		return fmt.Errorf("BENCH_REPLAY=%q: bad rate or seconds", spec)
	}
	b, err := os.ReadFile(queries)
	if err != nil {
		return err
	}
	var names []string
	for _, l := range strings.Split(string(b), "\n") {
		if n := strings.Fields(l); len(n) > 0 {
			names = append(names, n[0])
		}
	}
	tpl, err := replayTemplates(names)
	if err != nil {
		return err
	}
	conn, err := net.Dial("tcp", f[0])
	if err != nil {
		return err
	}
	defer conn.Close()
	enc, err := framestream.NewEncoder(conn, &framestream.EncoderOptions{ContentType: []byte("protobuf:dnstap.Dnstap"), Bidirectional: true, Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	t0 := time.Now()
	until := seconds(secs)
	sent, flushed := 0, t0
	for {
		el := time.Since(t0)
		if el >= until {
			break
		}
		// Catch up with the rate, in batches of about 200 µs of it.
		for target := int(rate * el.Seconds()); sent < target; sent++ {
			port, id := replaySession(sent)
			pair := &tpl[(sent/replayPorts)%len(tpl)]
			for k := range pair {
				if _, err := enc.Write(pair[k].fill(port, id)); err != nil {
					return fmt.Errorf("after %d sessions: %w", sent, err)
				}
			}
		}
		if time.Since(flushed) >= time.Second {
			if err := enc.Flush(); err != nil {
				return err
			}
			flushed = time.Now()
		}
		time.Sleep(200 * time.Microsecond)
	}
	if err := enc.Flush(); err != nil {
		return err
	}
	fmt.Printf("sent %d\n", sent)
	return nil
}

// replayStep is how long each rate of the ladder is offered.
const replayStep = 3 * time.Second

// analyserStep is one rate of the replayed ladder.
type analyserStep struct {
	Offered float64 // sessions per second asked of the sender
	Sent    float64 // sessions the sender sent
	analyserCounters
	PerSec  float64 // Sessions over the time the sender sent
	Cores   float64 // the analyser's CPU over that time
	CPU     float64 // µs of the analyser's CPU per session ended
	Foreign float64 // cores used by other processes meanwhile
	RSSKB   int64
	Clean   bool // every session sent ended complete, nothing shed or dropped
}

// replayLadder offers the analyser at metrics the replayed stream at rising
// rates, replayStep each, until a rate is not handled cleanly.
func replayLadder(cfg *config, metrics string, pid, upPID int) ([]analyserStep, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var steps []analyserStep
	for rate := 5000.0; len(steps) < 14; rate *= 1.5 {
		m0, err := scrape(metrics)
		if err != nil {
			return steps, err
		}
		cpu0, c0, up0, t0 := procCPU(pid), readCPUTimes(), procCPU(upPID), time.Now()
		spec := fmt.Sprintf("BENCH_REPLAY=127.0.0.1:%d,%.0f,%g,%s", cfg.port+2, rate, replayStep.Seconds(), cfg.queries)
		var out bytes.Buffer
		cmd, err := start(cfg.cpuLoad, []string{spec}, &out, exe)
		if err != nil {
			return steps, err
		}
		err = cmd.Wait()
		sendWall := time.Since(t0)
		children.mu.Lock()
		delete(children.procs, cmd.Process.Pid)
		children.mu.Unlock()
		if err != nil {
			return steps, fmt.Errorf("replay at %.0f/s: %v\n%s", rate, err, tail(out.Bytes(), 800))
		}
		time.Sleep(300 * time.Millisecond) // what is still queued is paired, not shed
		cpu, c1, wall := procCPU(pid)-cpu0, readCPUTimes(), time.Since(t0)
		sender := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		st := analyserStep{Offered: rate, Cores: float64(cpu) / float64(sendWall), RSSKB: procStatusKB(pid, "VmRSS"),
			Foreign: max0(float64((c1.busy-c0.busy)-cpu-sender-(procCPU(upPID)-up0)) / float64(wall))}
		m1, err := scrape(metrics)
		if err != nil {
			return steps, err
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(out.String()), "sent "); ok {
			st.Sent, _ = strconv.ParseFloat(v, 64)
		}
		st.analyserCounters = countersBetween(m0, m1)
		st.PerSec = st.Sessions / sendWall.Seconds()
		st.CPU = perQuery(cpu, int64(st.Sessions))
		st.Clean = st.Sent > 0 && st.Shed == 0 && st.Dropped == 0 && st.SampleLoss == 0 && st.Sessions >= 0.99*st.Sent
		logf("  replay %.0f/s: sent %.0f, %.0f sessions (%.0f/s), %.2f cores, %.1f µs/session, shed %.0f, dropped %.0f, SampleLoss %.0f, foreign %.2f",
			rate, st.Sent, st.Sessions, st.PerSec, st.Cores, st.CPU, st.Shed, st.Dropped, st.SampleLoss, st.Foreign)
		steps = append(steps, st)
		if !st.Clean {
			break
		}
	}
	return steps, nil
}
