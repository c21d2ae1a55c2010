package selfstat

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests read the real /proc and /sys/fs/cgroup of this machine.

// TestRealSocketDrops overflows the receive buffer of a UDP socket of this
// process and checks that the Reader counts what the kernel shows for that
// socket.
func TestRealSocketDrops(t *testing.T) {
	rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	raw, err := rc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var inode uint64
	var serr error
	if err := raw.Control(func(fd uintptr) {
		var st syscall.Stat_t
		if serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096); serr == nil {
			serr = syscall.Fstat(int(fd), &st)
			inode = st.Ino
		}
	}); err != nil || serr != nil {
		t.Fatal(err, serr)
	}

	r := NewReader("/")
	before := r.Read()
	if !before.SocketDrops.OK || !before.UDP.RcvbufErrors.OK {
		t.Fatalf("no figures on this machine: %+v (errors %v)", before, errorsOf(r))
	}
	tx, err := net.DialUDP("udp4", nil, rc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	payload := make([]byte, 100)
	for range 2000 {
		if _, err := tx.Write(payload); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond) // let loopback delivery finish

	after := r.Read()
	kernel := procUDPDrops(t, inode)
	if kernel < 1000 {
		t.Fatalf("the kernel dropped only %d of 2000 datagrams on a 4 KiB buffer: the test did not overflow it", kernel)
	}
	t.Logf("2000 datagrams: %d dropped on the socket, RcvbufErrors +%d", kernel, after.UDP.RcvbufErrors.N-before.UDP.RcvbufErrors.N)
	if got := after.SocketDrops.N - before.SocketDrops.N; got != kernel {
		t.Errorf("SocketDrops rose by %d, /proc/net/udp shows %d for inode %d", got, kernel, inode)
	}
	var found bool
	for _, s := range after.Sockets {
		if s.Inode == inode {
			found = true
			if s.Drops != kernel || s.Local != rc.LocalAddr().String() {
				t.Errorf("socket %+v, want %s with %d drops", s, rc.LocalAddr(), kernel)
			}
		}
	}
	if !found {
		t.Errorf("socket inode %d not in %+v", inode, after.Sockets)
	}
	// The namespace's counters move with every process's sockets: at least ours.
	if d := after.UDP.RcvbufErrors.N - before.UDP.RcvbufErrors.N; d < kernel {
		t.Errorf("RcvbufErrors rose by %d, less than the %d drops on our socket", d, kernel)
	}
	if d := after.UDP.InErrors.N - before.UDP.InErrors.N; d < kernel {
		t.Errorf("InErrors rose by %d, less than the %d drops on our socket", d, kernel)
	}
}

// procUDPDrops reads the drops column of /proc/net/udp for inode, parsed
// here apart from the code under test.
func procUDPDrops(t *testing.T, inode uint64) uint64 {
	t.Helper()
	f, err := os.Open("/proc/net/udp")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) == 13 && fs[9] == strconv.FormatUint(inode, 10) {
			n, err := strconv.ParseUint(fs[12], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("inode %d not in /proc/net/udp", inode)
	return 0
}

// TestRealCgroupV1Throttling puts a busy loop in a child of this process's
// cgroup v1 cpu group with a 10% quota and reads it with a Reader of that
// process. This machine kind has the v1 cpu controller: its absence is a
// failure, not a skip.
func TestRealCgroupV1Throttling(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create a cgroup")
	}
	self := NewReader("/").Read().CPU
	if self.Version != 1 {
		t.Fatalf("no cgroup v1 cpu controller for this process (found %+v): this machine kind should have one at /sys/fs/cgroup/cpu", self)
	}
	dir := filepath.Join(self.Cgroup, fmt.Sprintf("dnsdiag-selfstat-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The group empties once the killed loop is reaped; rmdir may race it.
		for i := 0; ; i++ {
			err := syscall.Rmdir(dir)
			if err == nil || errors.Is(err, syscall.ENOENT) {
				return
			}
			if i == 50 {
				t.Errorf("rmdir %s: %v", dir, err)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	for file, v := range map[string]string{FileCFSPeriod: "100000", FileCFSQuota: "10000"} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	loop := exec.Command("sh", "-c", "while :; do :; done")
	if err := loop.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { loop.Process.Kill(); loop.Wait() })
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(loop.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)

	r := NewReaderFor("/", loop.Process.Pid)
	cpu := r.Read().CPU
	t.Logf("%+v", cpu)
	if cpu.Version != 1 || cpu.Cgroup != dir {
		t.Errorf("read cgroup %q (v%d), want %q (v1)", cpu.Cgroup, cpu.Version, dir)
	}
	if !cpu.ThrottledPeriods.OK || cpu.ThrottledPeriods.N == 0 || !cpu.ThrottledNanos.OK || cpu.ThrottledNanos.N == 0 {
		t.Errorf("a busy loop at a 10%% quota for 2 s was not throttled: %+v", cpu)
	}
	if cpu.Periods.N < cpu.ThrottledPeriods.N {
		t.Errorf("more throttled periods than periods: %+v", cpu)
	}
	if cpu.QuotaCores != (Gauge{0.1, true}) {
		t.Errorf("QuotaCores = %+v, want 0.1", cpu.QuotaCores)
	}
	if e := errorsOf(r); len(e) != 0 {
		t.Errorf("errors %v", e)
	}
}
