package selfstat

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzNetUDP: no /proc/net/udp{,6} text makes the parser panic, and it
// returns only the sockets asked for.
func FuzzNetUDP(f *testing.F) {
	for _, tree := range []string{"v1/proc/100/net/udp", "v1/proc/100/net/udp6"} {
		data, err := os.ReadFile(filepath.Join("testdata", tree))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("h\n 0: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 1001 2 0\n"))
	own := map[uint64]struct{}{1001: {}, 1002: {}, 1003: {}}
	f.Fuzz(func(t *testing.T, data []byte) {
		sockets, err := parseNetUDP(data, own, nil)
		for _, s := range sockets {
			if _, ok := own[s.Inode]; !ok {
				t.Fatalf("socket %+v is not ours", s)
			}
		}
		if err == nil && len(sockets) > strings.Count(string(data), "\n") {
			t.Fatalf("%d sockets from %d lines", len(sockets), strings.Count(string(data), "\n"))
		}
	})
}

// FuzzRead writes each input as one of the files a Reader reads, in a v1
// and a v2 layout, and reads: nothing panics, each kind of file fails at
// most once per Read, and what is read is a plausible figure.
func FuzzRead(f *testing.F) {
	v1 := func(p string) []byte { return fixtureFile(f, "v1", p) }
	const cg1 = "sys/fs/cgroup/cpu,cpuacct/kubepods/burstable/pod1/c1/"
	f.Add(v1("proc/100/net/udp"), v1("proc/100/net/snmp"), v1("proc/100/net/snmp6"), v1("proc/100/cgroup"),
		v1("proc/100/mountinfo"), v1(cg1+FileCPUStat), []byte("50000 100000"))
	v2 := func(p string) []byte { return fixtureFile(f, "v2", p) }
	f.Add(v2("proc/100/net/udp6"), v2("proc/100/net/snmp"), v2("proc/100/net/snmp6"), v2("proc/100/cgroup"),
		v2("proc/100/mountinfo"), v2("sys/fs/cgroup/"+FileCPUStat), v2("sys/fs/cgroup/"+FileCPUMax))
	f.Fuzz(func(t *testing.T, udp, snmp, snmp6, cgroup, mountinfo, cpuStat, cpuLimit []byte) {
		root := fixture(t, "", fixtureFDs)
		quota, period, _ := strings.Cut(string(cpuLimit), " ")
		for path, data := range map[string][]byte{
			"proc/100/net/udp":   udp,
			"proc/100/net/udp6":  udp,
			"proc/100/net/snmp":  snmp,
			"proc/100/net/snmp6": snmp6,
			"proc/100/cgroup":    cgroup,
			"proc/100/mountinfo": mountinfo,
			// Where the seeds' cgroup and mountinfo lead.
			cg1 + FileCPUStat:              cpuStat,
			cg1 + FileCFSQuota:             []byte(quota),
			cg1 + FileCFSPeriod:            []byte(period),
			"sys/fs/cgroup/" + FileCPUStat: cpuStat,
			"sys/fs/cgroup/" + FileCPUMax:  cpuLimit,
		} {
			write(t, root, path, data)
		}
		r := NewReader(root)
		s := r.Read()
		for file, n := range r.Errors() {
			if n > 1 {
				t.Errorf("%s failed %d times in one Read", file, n)
			}
		}
		if q := s.CPU.QuotaCores; q.OK && !(q.V > 0) {
			t.Errorf("QuotaCores %+v", q)
		}
		if s.SocketDrops.OK && len(s.Sockets) > len(fixtureFDs) {
			t.Errorf("%d sockets from %d descriptors", len(s.Sockets), len(fixtureFDs))
		}
	})
}
