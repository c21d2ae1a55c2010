package selfstat

import (
	"math"

	"github.com/prometheus/procfs"
)

// readSnmp fills s.UDP and s.UDP6 from /proc/<pid>/net/snmp{,6}: the
// counters `netstat -su` shows, for the network namespace of the process.
func (r *Reader) readSnmp(p procfs.Proc, s *Snapshot) {
	if snmp, err := p.Snmp(); err == nil {
		s.UDP = r.udpErrors(FileSnmp, snmp.Udp.InErrors, snmp.Udp.RcvbufErrors)
	} else {
		r.failUnlessAbsent(FileSnmp, err)
	}
	// procfs reports a missing snmp6 (no IPv6) as no error and no figures.
	if snmp6, err := p.Snmp6(); err == nil {
		s.UDP6 = r.udpErrors(FileSnmp6, snmp6.Udp6.InErrors, snmp6.Udp6.RcvbufErrors)
	} else {
		r.failUnlessAbsent(FileSnmp6, err)
	}
}

// udpErrors turns procfs's float counters into Counts; a value that is not a
// count means the file did not parse.
func (r *Reader) udpErrors(file string, inErrors, rcvbufErrors *float64) UDPErrors {
	in, ok1 := count(inErrors)
	rcvbuf, ok2 := count(rcvbufErrors)
	if !ok1 || !ok2 {
		r.fail(file)
		return UDPErrors{}
	}
	return UDPErrors{InErrors: in, RcvbufErrors: rcvbuf}
}

// count converts a procfs counter; nil is an absent figure (ok), a negative
// or non-finite value a malformed one (not ok).
func count(v *float64) (Count, bool) {
	switch {
	case v == nil:
		return Count{}, true
	case *v < 0 || math.IsNaN(*v) || *v >= 1<<64:
		return Count{}, false
	}
	return Count{uint64(*v), true}, true
}
