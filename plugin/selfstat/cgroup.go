package selfstat

import (
	"bytes"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/procfs"
)

// readCPU fills s.CPU from the process's cgroup: the cgroup v1 cpu
// controller when the process has one (on a hybrid system it, not the v2
// tree, holds the CPU limit), else the v2 unified tree.
func (r *Reader) readCPU(p procfs.Proc, s *Snapshot) {
	dir, version := r.cgroupDir(p)
	if version == 0 {
		return
	}
	s.CPU.Cgroup, s.CPU.Version = dir, version

	throttled, scale := "throttled_time", uint64(1) // v1: nanoseconds
	if version == 2 {
		throttled, scale = "throttled_usec", 1000
	}
	if data, err := r.readFile(FileCPUStat, filepath.Join(dir, FileCPUStat)); err == nil {
		var c CPU
		err := parseKeyValues(data, func(k string, v uint64) {
			switch k {
			case "nr_periods":
				c.Periods = Count{v, true}
			case "nr_throttled":
				c.ThrottledPeriods = Count{v, true}
			case throttled:
				c.ThrottledNanos = Count{v * scale, true}
			}
		})
		if err != nil {
			r.fail(FileCPUStat)
		} else {
			s.CPU.Periods, s.CPU.ThrottledPeriods, s.CPU.ThrottledNanos = c.Periods, c.ThrottledPeriods, c.ThrottledNanos
		}
	}

	if version == 2 {
		if data, err := r.readFile(FileCPUMax, filepath.Join(dir, FileCPUMax)); err == nil {
			quota, period, _ := strings.Cut(strings.TrimSpace(string(data)), " ")
			r.quota(s, FileCPUMax, quota, "max", FileCPUMax, period)
		}
		return
	}
	quota, err1 := r.readFile(FileCFSQuota, filepath.Join(dir, FileCFSQuota))
	period, err2 := r.readFile(FileCFSPeriod, filepath.Join(dir, FileCFSPeriod))
	if err1 == nil && err2 == nil {
		r.quota(s, FileCFSQuota, strings.TrimSpace(string(quota)), "-1", FileCFSPeriod, strings.TrimSpace(string(period)))
	}
}

// quota sets s.CPU.QuotaCores from a quota and a period in microseconds; the
// quota unlimited means no limit.
func (r *Reader) quota(s *Snapshot, quotaFile, quota, unlimited, periodFile, period string) {
	p, err := strconv.ParseUint(period, 10, 64)
	if err != nil || p == 0 {
		r.fail(periodFile)
		return
	}
	if quota == unlimited {
		return
	}
	q, err := strconv.ParseUint(quota, 10, 64)
	if err != nil || q == 0 {
		r.fail(quotaFile)
		return
	}
	s.CPU.QuotaCores = Gauge{float64(q) / float64(p), true}
}

// cgroupDir finds the directory of the process's CPU cgroup from
// /proc/<pid>/cgroup and the mount that holds that hierarchy in
// /proc/<pid>/mountinfo. The mount's root matters in a container without a
// cgroup namespace: /proc/self/cgroup names the node's full path, and the
// container's /sys/fs/cgroup/cpu is mounted from that path.
func (r *Reader) cgroupDir(p procfs.Proc) (string, int) {
	groups, err := p.Cgroups()
	if err != nil {
		r.failUnlessAbsent(FileCgroup, err)
		return "", 0
	}
	path, version := "", 0
	for _, g := range groups {
		if slices.Contains(g.Controllers, "cpu") {
			path, version = g.Path, 1
			break
		}
		if g.HierarchyID == 0 && len(g.Controllers) == 0 {
			path, version = g.Path, 2
		}
	}
	if version == 0 {
		return "", 0
	}
	mounts, err := p.MountInfo()
	if err != nil {
		r.failUnlessAbsent(FileMountinfo, err)
		return "", 0
	}
	for _, m := range mounts {
		if !mountHolds(m, version) {
			continue
		}
		if rel, ok := underRoot(path, m.Root); ok {
			return filepath.Join(r.root, m.MountPoint, rel), version
		}
	}
	return "", 0
}

// mountHolds says whether m is the cgroup v1 cpu hierarchy or the v2 tree.
func mountHolds(m *procfs.MountInfo, version int) bool {
	if version == 2 {
		return m.FSType == "cgroup2"
	}
	_, cpu := m.SuperOptions["cpu"]
	return m.FSType == "cgroup" && cpu
}

// underRoot returns path relative to a mount's root, false when the cgroup
// is outside what is mounted.
func underRoot(path, root string) (string, bool) {
	switch {
	case root == "/":
		return path, true
	case path == root:
		return "/", true
	case strings.HasPrefix(path, root+"/"):
		return path[len(root):], true
	}
	return "", false
}

// parseKeyValues calls fn for each "key value" line of a cgroup stat file;
// any other line makes the file malformed.
func parseKeyValues(data []byte, fn func(key string, v uint64)) error {
	var buf [3][]byte
	for line := range bytes.Lines(data) {
		f := fields(line, buf[:0])
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return errMalformed
		}
		v, ok := parseDec(f[1])
		if !ok {
			return errMalformed
		}
		fn(string(f[0]), v)
	}
	return nil
}
