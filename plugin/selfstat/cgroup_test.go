package selfstat

import (
	"path/filepath"
	"reflect"
	"testing"
)

func TestReadCPU(t *testing.T) {
	for _, tc := range []struct {
		tree string
		dir  string
		want CPU
	}{
		{
			// A hybrid node: the cpu,cpuacct v1 hierarchy, not the unified
			// tree beside it, holds the figures.
			tree: "v1", dir: "sys/fs/cgroup/cpu,cpuacct/kubepods/burstable/pod1/c1",
			want: CPU{Version: 1, Periods: Count{345, true}, ThrottledPeriods: Count{21, true},
				ThrottledNanos: Count{1234567890, true}, QuotaCores: Gauge{0.5, true}},
		},
		{
			tree: "v2", dir: "sys/fs/cgroup",
			want: CPU{Version: 2, Periods: Count{100, true}, ThrottledPeriods: Count{7, true},
				ThrottledNanos: Count{250000000, true}, QuotaCores: Gauge{1.5, true}},
		},
	} {
		root := fixture(t, tc.tree, nil)
		r := NewReader(root)
		s := r.Read()
		tc.want.Cgroup = filepath.Join(root, tc.dir)
		if s.CPU != tc.want {
			t.Errorf("%s: CPU = %+v, want %+v", tc.tree, s.CPU, tc.want)
		}
		if s.GOMAXPROCS < 1 {
			t.Errorf("%s: GOMAXPROCS = %d", tc.tree, s.GOMAXPROCS)
		}
		if e := errorsOf(r); len(e) != 0 {
			t.Errorf("%s: errors %v", tc.tree, e)
		}
	}
}

// TestCgroupDir covers the /proc/self/cgroup and mountinfo variants.
func TestCgroupDir(t *testing.T) {
	const (
		cpuMount     = "35 31 0:32 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:13 - cgroup cgroup rw,cpu,cpuacct\n"
		unifiedMount = "32 31 0:29 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw\n"
		v1Mounts     = cpuMount + unifiedMount
		v2Mounts     = "610 600 0:51 / /sys/fs/cgroup ro,relatime - cgroup2 cgroup rw,nsdelegate\n"
	)
	for _, tc := range []struct {
		name, cgroup, mountinfo string // "" mountinfo: no file
		dir                     string // "" for none
		version                 int
		errs                    map[string]uint64
	}{
		{"v1 cpu,cpuacct", "4:cpu,cpuacct:/a/b\n0::/a/b\n", v1Mounts, "/sys/fs/cgroup/cpu,cpuacct/a/b", 1, nil},
		{"v1 cpu alone", "3:cpuacct:/x\n2:cpu:/a\n",
			"40 31 0:40 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct\n41 31 0:41 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n",
			"/sys/fs/cgroup/cpu/a", 1, nil},
		{"v1 container without cgroup namespace", "11:cpu,cpuacct:/kubepods/pod1/c1\n",
			"35 31 0:32 /kubepods/pod1/c1 /sys/fs/cgroup/cpu,cpuacct ro - cgroup cgroup rw,cpu,cpuacct\n",
			"/sys/fs/cgroup/cpu,cpuacct", 1, nil},
		{"v1 below the mounted group", "11:cpu,cpuacct:/kubepods/pod1/c1/sub\n",
			"35 31 0:32 /kubepods/pod1/c1 /sys/fs/cgroup/cpu,cpuacct ro - cgroup cgroup rw,cpu,cpuacct\n",
			"/sys/fs/cgroup/cpu,cpuacct/sub", 1, nil},
		{"v1 outside the mounted group", "11:cpu,cpuacct:/kubepods/pod2\n",
			"35 31 0:32 /kubepods/pod1 /sys/fs/cgroup/cpu,cpuacct ro - cgroup cgroup rw,cpu,cpuacct\n", "", 0, nil},
		{"v1 prefix is not a parent", "11:cpu,cpuacct:/kubepods/pod10\n",
			"35 31 0:32 /kubepods/pod1 /sys/fs/cgroup/cpu,cpuacct ro - cgroup cgroup rw,cpu,cpuacct\n", "", 0, nil},
		{"v1 controller not mounted", "4:cpu,cpuacct:/a\n0::/a\n", v2Mounts, "", 0, nil},
		{"v2", "0::/kubepods.slice/pod.slice/cri.scope\n", v2Mounts, "/sys/fs/cgroup/kubepods.slice/pod.slice/cri.scope", 2, nil},
		{"v2 cgroup namespace", "0::/\n", v2Mounts, "/sys/fs/cgroup", 2, nil},
		{"hybrid with cpu in v2", "1:name=systemd:/s\n0::/u\n", "33 31 0:30 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n" + unifiedMount,
			"/sys/fs/cgroup/unified/u", 2, nil},
		{"no cpu hierarchy", "1:name=systemd:/s\n5:memory:/m\n", v1Mounts, "", 0, nil},
		{"empty cgroup file", "", v1Mounts, "", 0, nil},
		{"no mountinfo", "0::/\n", "", "", 0, nil},
		{"cgroup garbage", "garbage\n", v2Mounts, "", 0, map[string]uint64{FileCgroup: 1}},
		{"mountinfo garbage", "0::/\n", "not a mount line\n", "", 0, map[string]uint64{FileMountinfo: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fixture(t, "", nil)
			write(t, root, "proc/100/cgroup", []byte(tc.cgroup))
			if tc.mountinfo != "" {
				write(t, root, "proc/100/mountinfo", []byte(tc.mountinfo))
			}
			r := NewReader(root)
			p, err := r.procfs()
			if err != nil {
				t.Fatal(err)
			}
			dir, version := r.cgroupDir(p)
			want := tc.dir
			if want != "" {
				want = filepath.Join(root, want)
			}
			if dir != want || version != tc.version {
				t.Errorf("cgroupDir = %q, %d; want %q, %d", dir, version, want, tc.version)
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

// TestCPUFiles covers the figures' own files, each with a v1 and a v2 tree.
func TestCPUFiles(t *testing.T) {
	const (
		v1Dir = "sys/fs/cgroup/cpu,cpuacct/kubepods/burstable/pod1/c1/"
		v2Dir = "sys/fs/cgroup/"
	)
	full1 := CPU{Version: 1, Periods: Count{345, true}, ThrottledPeriods: Count{21, true},
		ThrottledNanos: Count{1234567890, true}, QuotaCores: Gauge{0.5, true}}
	full2 := CPU{Version: 2, Periods: Count{100, true}, ThrottledPeriods: Count{7, true},
		ThrottledNanos: Count{250000000, true}, QuotaCores: Gauge{1.5, true}}
	noStat := func(c CPU) CPU { c.Periods, c.ThrottledPeriods, c.ThrottledNanos = Count{}, Count{}, Count{}; return c }
	noQuota := func(c CPU) CPU { c.QuotaCores = Gauge{}; return c }
	for _, tc := range []struct {
		name, tree, file string
		content          []byte // nil: remove the file
		want             CPU
		errs             map[string]uint64
	}{
		{"v1 unlimited", "v1", v1Dir + FileCFSQuota, []byte("-1\n"), noQuota(full1), nil},
		{"v1 no quota file", "v1", v1Dir + FileCFSQuota, nil, noQuota(full1), nil},
		{"v1 no period file", "v1", v1Dir + FileCFSPeriod, nil, noQuota(full1), nil},
		{"v1 quota garbage", "v1", v1Dir + FileCFSQuota, []byte("lots\n"), noQuota(full1), map[string]uint64{FileCFSQuota: 1}},
		{"v1 quota negative", "v1", v1Dir + FileCFSQuota, []byte("-5\n"), noQuota(full1), map[string]uint64{FileCFSQuota: 1}},
		{"v1 period zero", "v1", v1Dir + FileCFSPeriod, []byte("0\n"), noQuota(full1), map[string]uint64{FileCFSPeriod: 1}},
		{"v1 no cpu.stat", "v1", v1Dir + FileCPUStat, nil, noStat(full1), nil},
		{"v1 cpu.stat garbage", "v1", v1Dir + FileCPUStat, []byte("nr_periods 3\nnr_throttled x\n"), noStat(full1), map[string]uint64{FileCPUStat: 1}},
		{"v1 cpu.stat three fields", "v1", v1Dir + FileCPUStat, []byte("nr_periods 3 4\n"), noStat(full1), map[string]uint64{FileCPUStat: 1}},
		{"v1 cpu.stat empty", "v1", v1Dir + FileCPUStat, []byte{}, noStat(full1), nil},
		{"v1 cpu.stat a directory", "v1", v1Dir + FileCPUStat + "/x", []byte{}, noStat(full1), map[string]uint64{FileCPUStat: 1}},
		{"v2 unlimited", "v2", v2Dir + FileCPUMax, []byte("max 100000\n"), noQuota(full2), nil},
		{"v2 no cpu.max", "v2", v2Dir + FileCPUMax, nil, noQuota(full2), nil},
		{"v2 cpu.max one field", "v2", v2Dir + FileCPUMax, []byte("max\n"), noQuota(full2), map[string]uint64{FileCPUMax: 1}},
		{"v2 cpu.max garbage", "v2", v2Dir + FileCPUMax, []byte("x 100000\n"), noQuota(full2), map[string]uint64{FileCPUMax: 1}},
		{"v2 cpu.max period zero", "v2", v2Dir + FileCPUMax, []byte("50000 0\n"), noQuota(full2), map[string]uint64{FileCPUMax: 1}},
		// Without the cpu controller enabled, a v2 cpu.stat has only the usage.
		{"v2 no cpu controller", "v2", v2Dir + FileCPUStat, []byte("usage_usec 8\nuser_usec 6\nsystem_usec 2\n"), noStat(full2), nil},
		{"v2 cpu.stat garbage", "v2", v2Dir + FileCPUStat, []byte("\x00\xff\n"), noStat(full2), map[string]uint64{FileCPUStat: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fixture(t, tc.tree, nil)
			if tc.content == nil {
				write(t, root, tc.file, nil)
			} else {
				if filepath.Base(tc.file) == "x" { // the file becomes a directory
					write(t, root, filepath.Dir(tc.file), nil)
				}
				write(t, root, tc.file, tc.content)
			}
			r := NewReader(root)
			got := r.Read().CPU
			got.Cgroup = ""
			if got != tc.want {
				t.Errorf("CPU = %+v, want %+v", got, tc.want)
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
