package selfstat

import (
	"reflect"
	"testing"
)

func TestReadSnmp(t *testing.T) {
	udp := UDPErrors{InErrors: Count{2004, true}, RcvbufErrors: Count{1991, true}}
	udp6 := UDPErrors{InErrors: Count{8, true}, RcvbufErrors: Count{6, true}}
	for _, tc := range []struct {
		name      string
		file      string
		content   []byte // nil: remove the file
		udp, udp6 UDPErrors
		errs      map[string]uint64
	}{
		{name: "full", file: "", udp: udp, udp6: udp6},
		{name: "no snmp", file: "net/snmp", udp6: udp6},
		{name: "no ipv6", file: "net/snmp6", udp: udp},
		{name: "snmp garbage", file: "net/snmp", content: []byte("Udp: InErrors RcvbufErrors\nUdp: x 1\n"), udp6: udp6,
			errs: map[string]uint64{FileSnmp: 1}},
		{name: "snmp field count", file: "net/snmp", content: []byte("Udp: InErrors RcvbufErrors\nUdp: 1\n"), udp6: udp6,
			errs: map[string]uint64{FileSnmp: 1}},
		{name: "snmp negative", file: "net/snmp", content: []byte("Udp: InErrors RcvbufErrors\nUdp: -1 2\n"), udp6: udp6,
			errs: map[string]uint64{FileSnmp: 1}},
		{name: "snmp NaN", file: "net/snmp", content: []byte("Udp: InErrors RcvbufErrors\nUdp: 1 NaN\n"), udp6: udp6,
			errs: map[string]uint64{FileSnmp: 1}},
		{name: "snmp without RcvbufErrors", file: "net/snmp", content: []byte("Udp: InDatagrams InErrors\nUdp: 5 3\n"),
			udp: UDPErrors{InErrors: Count{3, true}}, udp6: udp6},
		{name: "snmp6 garbage", file: "net/snmp6", content: []byte("Udp6InErrors x\n"), udp: udp,
			errs: map[string]uint64{FileSnmp6: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fixture(t, "v2", nil)
			if tc.file != "" {
				write(t, root, "proc/100/"+tc.file, tc.content)
			}
			r := NewReader(root)
			s := r.Read()
			if s.UDP != tc.udp || s.UDP6 != tc.udp6 {
				t.Errorf("UDP %+v, UDP6 %+v; want %+v, %+v", s.UDP, s.UDP6, tc.udp, tc.udp6)
			}
			if !s.CPU.Periods.OK {
				t.Errorf("a broken snmp file took the CPU figures with it: %+v", s.CPU)
			}
			if tc.errs == nil {
				tc.errs = map[string]uint64{}
			}
			if e := errorsOf(r); !reflect.DeepEqual(e, tc.errs) {
				t.Errorf("errors %v, want %v", e, tc.errs)
			}
		})
	}
}

// TestReadNothing: a tree without any of the files has no figures and no
// errors.
func TestReadNothing(t *testing.T) {
	for _, root := range []string{fixture(t, "", nil), t.TempDir()} {
		r := NewReader(root)
		s := r.Read()
		s.GOMAXPROCS = 0
		if !reflect.DeepEqual(s, Snapshot{}) {
			t.Errorf("%s: %+v, want nothing", root, s)
		}
		if e := errorsOf(r); len(e) != 0 {
			t.Errorf("%s: errors %v", root, e)
		}
	}
}
