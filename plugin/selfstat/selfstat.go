// Package selfstat reads what the kernel knows about CoreDNS's own load, from
// inside the process and without privileges: datagrams dropped on its own UDP
// sockets, the network namespace's UDP error counters, and the CPU throttling
// of its own cgroup. These are the figures the Kubernetes DNS troubleshooting
// guide gathers by hand with nsenter after an incident; read here they are
// there at every scrape and every report.
//
// A file that does not exist yields no figure, never an error: a kernel
// without IPv6 has no /proc/net/udp6, a container may see no cgroup files. A
// file that exists but cannot be read or parsed yields no figure either, and
// is counted (Reader.Errors) so the absence is visible.
package selfstat

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/procfs"
)

// Count is a figure read from a kernel file. OK is false when the figure is
// absent: its file does not exist, or did not parse.
type Count struct {
	N  uint64
	OK bool
}

// Socket is one UDP socket this process holds, as /proc/net/udp{,6} shows it.
type Socket struct {
	Local string // local address:port, "127.0.0.1:53" or "[::]:53"
	Inode uint64
	Drops uint64 // the kernel's per-socket drops column
}

// Gauge is a figure that is not a count, OK as in Count.
type Gauge struct {
	V  float64
	OK bool
}

// UDPErrors are a network namespace's UDP counters from /proc/net/snmp{,6}:
// every process in the namespace moves them, not only CoreDNS.
type UDPErrors struct {
	InErrors     Count
	RcvbufErrors Count
}

// CPU is the CPU accounting of the process's cgroup.
type CPU struct {
	Cgroup           string // the cgroup directory read; "" when none was found
	Version          int    // 1 or 2; 0 when no cgroup with CPU accounting was found
	Periods          Count  // enforcement periods elapsed (nr_periods)
	ThrottledPeriods Count  // periods in which the group was throttled (nr_throttled)
	ThrottledNanos   Count  // time spent throttled, in nanoseconds
	// QuotaCores is the CPU limit in cores (quota/period); OK is false when
	// there is no limit, or it could not be read.
	QuotaCores Gauge
}

// Snapshot is one reading of every figure.
type Snapshot struct {
	// SocketDrops counts the datagrams the kernel dropped on the UDP sockets
	// of this process the Reader has seen, each since the socket was opened.
	// It never decreases: the drops of a socket that has closed stay in it.
	SocketDrops Count
	// Sockets lists the UDP sockets this process holds now, by local
	// address, with each socket's own drops column.
	Sockets []Socket
	// FDsCapped is true when the process held more than MaxFDs descriptors:
	// sockets beyond the first MaxFDs were not seen, and SocketDrops is
	// absent rather than wrong.
	FDsCapped bool

	UDP  UDPErrors // from /proc/net/snmp
	UDP6 UDPErrors // from /proc/net/snmp6

	CPU CPU

	// GOMAXPROCS is this process's runtime.GOMAXPROCS; 0 in a Reader for
	// another process.
	GOMAXPROCS int
}

// MaxFDs bounds the file descriptors one Read looks at, so that reading
// stays cheap for a process holding very many connections.
const MaxFDs = 65536

// Files that can fail to read or parse, the keys of Reader.Errors and the
// values of the file label of coredns_dnsdiag_selfstat_errors_total. FileFD
// counts reads of the descriptor table that failed or stopped at MaxFDs.
const (
	FileFD        = "fd"
	FileUDP       = "udp"
	FileUDP6      = "udp6"
	FileSnmp      = "snmp"
	FileSnmp6     = "snmp6"
	FileCgroup    = "cgroup"
	FileMountinfo = "mountinfo"
	FileCPUStat   = "cpu.stat"
	FileCPUMax    = "cpu.max"
	FileCFSQuota  = "cpu.cfs_quota_us"
	FileCFSPeriod = "cpu.cfs_period_us"
)

// files lists the keys of Reader.Errors in a fixed order.
var files = []string{FileFD, FileUDP, FileUDP6, FileSnmp, FileSnmp6, FileCgroup, FileMountinfo,
	FileCPUStat, FileCPUMax, FileCFSQuota, FileCFSPeriod}

// Reader reads Snapshots of one process. It is safe for concurrent use; a
// process should have one, shared by the metrics and the report, because it
// keeps the per-socket drops that make Snapshot.SocketDrops monotonic.
type Reader struct {
	root string // the file system root, "/" but for tests
	pid  int    // the process read; 0 for this one
	dir  string // its directory under /proc: "self" or the pid

	maxFDs int // MaxFDs; lowered by tests

	errs map[string]*atomic.Uint64 // by file; fixed keys, so read without the lock

	mu    sync.Mutex
	seen  map[uint64]uint64 // socket inode -> drops at the last Read
	drops uint64            // SocketDrops: the sum of each socket's increases
}

// NewReader returns a Reader of this process, with /proc and /sys/fs/cgroup
// under root: "/" on a real system, a fixture tree in tests.
func NewReader(root string) *Reader { return newReader(root, 0, "self") }

// NewReaderFor returns a Reader of process pid. The tests use it to read a
// process they moved into a cgroup.
func NewReaderFor(root string, pid int) *Reader { return newReader(root, pid, strconv.Itoa(pid)) }

func newReader(root string, pid int, dir string) *Reader {
	r := &Reader{root: root, pid: pid, dir: dir, maxFDs: MaxFDs, errs: make(map[string]*atomic.Uint64, len(files)), seen: map[uint64]uint64{}}
	for _, f := range files {
		r.errs[f] = new(atomic.Uint64)
	}
	return r
}

// Read reads every figure. It never fails: what cannot be read is absent.
func (r *Reader) Read() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()

	var s Snapshot
	r.readSockets(&s)
	if p, err := r.procfs(); err == nil {
		r.readSnmp(p, &s)
		r.readCPU(p, &s)
	}
	if r.pid == 0 {
		s.GOMAXPROCS = runtime.GOMAXPROCS(0)
	}
	return s
}

// Errors returns, for each file kind (the File* constants), how many reads
// found the file but could not read or parse it.
func (r *Reader) Errors() map[string]uint64 {
	m := make(map[string]uint64, len(r.errs))
	for f, n := range r.errs {
		m[f] = n.Load()
	}
	return m
}

// proc returns the path of a file of the process under /proc.
func (r *Reader) proc(elem ...string) string {
	return filepath.Join(append([]string{r.root, "proc", r.dir}, elem...)...)
}

// procfs returns the process as procfs sees it.
func (r *Reader) procfs() (procfs.Proc, error) {
	pfs, err := procfs.NewFS(filepath.Join(r.root, "proc"))
	if err != nil {
		return procfs.Proc{}, err
	}
	if r.pid == 0 {
		return pfs.Self()
	}
	return pfs.Proc(r.pid)
}

// readFile returns a file's contents. A file that exists but cannot be read
// is counted; a missing one is just absent.
func (r *Reader) readFile(kind, path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		r.failUnlessAbsent(kind, err)
	}
	return data, err
}

// fail counts one read of file that did not yield its figures.
func (r *Reader) fail(file string) { r.errs[file].Add(1) }

// failUnlessAbsent counts err against file unless the file does not exist.
func (r *Reader) failUnlessAbsent(file string, err error) {
	if !errors.Is(err, fs.ErrNotExist) {
		r.fail(file)
	}
}
