package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// children are the processes this run started and has not reaped yet; every
// exit path (normal, error, signal) kills them, so nothing is left running.
var children struct {
	mu    sync.Mutex
	procs map[int]*exec.Cmd
}

// start runs argv, pinned to cpus when cpus is not empty, in its own process
// group, with stdout and stderr to out. It dies with the runner (Pdeathsig;
// main locks its OS thread, which makes that reliable).
func start(cpus string, env []string, out io.Writer, argv ...string) (*exec.Cmd, error) {
	if cpus != "" {
		argv = append([]string{"taskset", "-c", cpus}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	children.mu.Lock()
	if children.procs == nil {
		children.procs = map[int]*exec.Cmd{}
	}
	children.procs[cmd.Process.Pid] = cmd
	children.mu.Unlock()
	return cmd, nil
}

// stop sends SIGTERM to cmd's process group, waits up to grace for it to
// exit, then kills it.
func stop(cmd *exec.Cmd, grace time.Duration) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	pid := cmd.Process.Pid
	children.mu.Lock()
	_, live := children.procs[pid]
	delete(children.procs, pid)
	children.mu.Unlock()
	if !live {
		return
	}
	syscall.Kill(-pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		syscall.Kill(-pid, syscall.SIGKILL)
		<-done
	}
}

// killAll kills every child still running.
func killAll() {
	children.mu.Lock()
	var cmds []*exec.Cmd
	for _, c := range children.procs {
		cmds = append(cmds, c)
	}
	children.mu.Unlock()
	for _, c := range cmds {
		stop(c, 2*time.Second)
	}
}

// run runs argv to completion, pinned to cpus, and returns its combined
// output and its CPU time.
func run(cpus string, argv ...string) ([]byte, time.Duration, error) {
	var buf bytes.Buffer
	cmd, err := start(cpus, nil, &buf, argv...)
	if err != nil {
		return nil, 0, err
	}
	err = cmd.Wait()
	children.mu.Lock()
	delete(children.procs, cmd.Process.Pid)
	children.mu.Unlock()
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return buf.Bytes(), cpu, err
}

var clkTck = func() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if n, err2 := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err == nil && err2 == nil && n > 0 {
		return n
	}
	return 100
}()

// procCPU is a process's utime+stime from /proc/PID/stat.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64) // field 14
	st, _ := strconv.ParseFloat(f[12], 64) // field 15
	return time.Duration((ut + st) / clkTck * float64(time.Second))
}

// procStatusKB reads a "Vm…" line of /proc/PID/status, in kB.
func procStatusKB(pid int, key string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// cpuTimes is the machine's busy CPU time: user, nice, system, irq and
// softirq of every CPU (without IRQ time accounting the kernel also charges
// softirq ticks to the interrupted task's stime, so this is comparable with
// per-process times), and steal.
type cpuTimes struct {
	busy, steal time.Duration
}

func readCPUTimes() cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	line, _, _ := strings.Cut(string(b), "\n") // the "cpu" total line
	f := strings.Fields(line)
	val := func(i int) time.Duration {
		if i >= len(f) {
			return 0
		}
		n, _ := strconv.ParseFloat(f[i], 64)
		return time.Duration(n / clkTck * float64(time.Second))
	}
	// cpu user nice system idle iowait irq softirq steal
	return cpuTimes{busy: val(1) + val(2) + val(3) + val(6) + val(7), steal: val(8)}
}

// waitIdle waits, at most max, until the machine's busy CPU outside the
// processes in mine drops below limit cores, sampling every 500 ms. It
// returns the last sample (cores) and how long it waited.
func waitIdle(limit float64, max time.Duration, mine ...int) (float64, time.Duration) {
	begin := time.Now()
	for {
		c0, m0 := readCPUTimes(), sumCPU(mine)
		t0 := time.Now()
		time.Sleep(500 * time.Millisecond)
		c1, m1 := readCPUTimes(), sumCPU(mine)
		foreign := max0(float64((c1.busy-c0.busy)-(m1-m0)) / float64(time.Since(t0)))
		if foreign < limit || time.Since(begin) >= max {
			return foreign, time.Since(begin)
		}
	}
}

func max0(f float64) float64 {
	if f < 0 {
		return 0
	}
	return f
}
