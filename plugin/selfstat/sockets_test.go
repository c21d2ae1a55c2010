package selfstat

import (
	"fmt"
	"reflect"
	"testing"
)

func TestReadSockets(t *testing.T) {
	for _, tree := range []string{"v1", "v2"} {
		r := NewReader(fixture(t, tree, fixtureFDs))
		s := r.Read()
		want := []Socket{
			{Local: "0.0.0.0:53", Inode: 1001, Drops: 17},
			{Local: "127.0.0.1:33439", Inode: 1002, Drops: 3},
			{Local: "[::1]:53", Inode: 1003, Drops: 5},
		}
		if !reflect.DeepEqual(s.Sockets, want) {
			t.Errorf("%s: Sockets = %+v, want %+v", tree, s.Sockets, want)
		}
		if s.SocketDrops != (Count{25, true}) || s.FDsCapped {
			t.Errorf("%s: SocketDrops = %+v, FDsCapped %v; want 25 of the process's own sockets, not the 970 of others", tree, s.SocketDrops, s.FDsCapped)
		}
		if e := errorsOf(r); len(e) != 0 {
			t.Errorf("%s: errors %v", tree, e)
		}
	}
}

// TestSocketDropsMonotonic: a socket that closes keeps its drops in the
// sum, and a new socket on a reused inode adds its own.
func TestSocketDropsMonotonic(t *testing.T) {
	root := fixture(t, "v1", fixtureFDs)
	write(t, root, "proc/100/net/udp6", nil)
	r := NewReader(root)
	udp := func(lines ...string) {
		data := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n"
		for i, l := range lines {
			data += fmt.Sprintf("%5d: %s\n", i, l)
		}
		write(t, root, "proc/100/net/udp", []byte(data))
	}
	line := func(inode, drops int) string {
		return fmt.Sprintf("00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 %d 2 0000000046e5aeaa %d", inode, drops)
	}
	steps := []struct {
		lines []string
		want  uint64
	}{
		{[]string{line(1001, 5), line(1002, 3)}, 8},
		{[]string{line(1001, 7), line(1002, 3)}, 10},
		{[]string{line(1001, 7)}, 10},                  // 1002 closed: its 3 stay
		{[]string{line(1001, 9), line(1002, 1)}, 13},   // a new socket on inode 1002
		{[]string{line(1001, 9), line(1002, 1)}, 13},   // nothing new
		{[]string{line(1001, 10), line(5555, 50)}, 14}, // 5555 is not ours
	}
	for i, st := range steps {
		udp(st.lines...)
		if got := r.Read().SocketDrops; got != (Count{st.want, true}) {
			t.Fatalf("step %d: SocketDrops = %+v, want %d", i, got, st.want)
		}
	}
}

func TestSocketsCapped(t *testing.T) {
	r := NewReader(fixture(t, "v1", fixtureFDs))
	r.maxFDs = 2
	s := r.Read()
	if !s.FDsCapped || s.SocketDrops.OK {
		t.Errorf("FDsCapped %v, SocketDrops %+v; want capped and no figure", s.FDsCapped, s.SocketDrops)
	}
	if e := errorsOf(r); !reflect.DeepEqual(e, map[string]uint64{FileFD: 1}) {
		t.Errorf("errors %v, want fd: 1", e)
	}
}

func TestSocketsAbsentOrBroken(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fds     map[string]string
		udp     []byte // nil: no file
		udp6    []byte
		want    Count
		sockets int
		errs    map[string]uint64
	}{
		{name: "no fd dir", udp: []byte("x"), want: Count{}, errs: map[string]uint64{}},
		{name: "no udp files", fds: fixtureFDs, want: Count{}, errs: map[string]uint64{}},
		{name: "no ipv6", fds: fixtureFDs, udp: fixtureFile(t, "v1", "proc/100/net/udp"), want: Count{20, true}, sockets: 2, errs: map[string]uint64{}},
		{name: "udp garbage", fds: fixtureFDs, udp: []byte("garbage\n1: 2 3\n"), udp6: fixtureFile(t, "v1", "proc/100/net/udp6"),
			want: Count{}, sockets: 1, errs: map[string]uint64{FileUDP: 1}},
		{name: "udp6 no header", fds: fixtureFDs, udp: fixtureFile(t, "v1", "proc/100/net/udp"), udp6: []byte("only a header"),
			want: Count{}, sockets: 2, errs: map[string]uint64{FileUDP6: 1}},
		{name: "drops not a number", fds: fixtureFDs, udp: []byte("h\n 0: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 1001 2 0 -1\n"),
			want: Count{}, errs: map[string]uint64{FileUDP: 1}},
		{name: "bad address", fds: fixtureFDs, udp: []byte("h\n 0: 0000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 1001 2 0 1\n"),
			want: Count{}, errs: map[string]uint64{FileUDP: 1}},
		{name: "a directory", fds: fixtureFDs, udp: []byte("dir"), want: Count{}, errs: map[string]uint64{FileUDP: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fixture(t, "", tc.fds)
			if tc.udp != nil {
				if string(tc.udp) == "dir" {
					write(t, root, "proc/100/net/udp/x", []byte{})
				} else {
					write(t, root, "proc/100/net/udp", tc.udp)
				}
			}
			if tc.udp6 != nil {
				write(t, root, "proc/100/net/udp6", tc.udp6)
			}
			r := NewReader(root)
			s := r.Read()
			if s.SocketDrops != tc.want || len(s.Sockets) != tc.sockets {
				t.Errorf("SocketDrops %+v with %d sockets, want %+v with %d", s.SocketDrops, len(s.Sockets), tc.want, tc.sockets)
			}
			if e := errorsOf(r); !reflect.DeepEqual(e, tc.errs) {
				t.Errorf("errors %v, want %v", e, tc.errs)
			}
		})
	}
}

func TestParseSockAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:0035":                         "127.0.0.1:53",
		"00000000:FFFF":                         "0.0.0.0:65535",
		"00000000000000000000000001000000:E4FE": "[::1]:58622",
		"0000000000000000FFFF00000100007F:0035": "[::ffff:127.0.0.1]:53",
		"B80D0120000000000000000001000000:0035": "[2001:db8::1]:53",
	} {
		got, err := parseSockAddr([]byte(in))
		if err != nil || got.String() != want {
			t.Errorf("parseSockAddr(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0100007F", "0100007F:35", "0100007G:0035", "0100007F:00G5", "01000:0035", "0100007F0:0035"} {
		if _, err := parseSockAddr([]byte(in)); err == nil {
			t.Errorf("parseSockAddr(%q) accepted", in)
		}
	}
}

func TestParseDec(t *testing.T) {
	for in, want := range map[string]uint64{"0": 0, "42": 42, "18446744073709551615": 1<<64 - 1} {
		if got, ok := parseDec([]byte(in)); !ok || got != want {
			t.Errorf("parseDec(%q) = %d, %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "-1", "1a", "18446744073709551616", "99999999999999999999", "000000000000000000001"} {
		if _, ok := parseDec([]byte(in)); ok {
			t.Errorf("parseDec(%q) accepted", in)
		}
	}
}
