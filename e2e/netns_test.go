package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Real stub resolvers (glibc's getaddrinfo behind getent, musl, ...) only
// talk to port 53 of the nameservers in /etc/resolv.conf. A test that needs
// them runs itself again inside a private mount and network namespace
// (unshare -mn): there loopback is its own, CoreDNS can listen on
// 127.0.0.1:53, and a test resolv.conf can be bind-mounted over
// /etc/resolv.conf, all without touching the machine's.

// Environment of the inner run: the name of the test it runs, and the
// network namespace of the outer run, so that the inner run can refuse to
// bind-mount over /etc/resolv.conf unless it really is somewhere else.
const (
	netnsTestEnv  = "DNSDIAG_E2E_NETNS_TEST"
	netnsOuterEnv = "DNSDIAG_E2E_NETNS_OUTER"
)

// netnsTimeout bounds an inner run.
const netnsTimeout = 3 * time.Minute

// InNetns runs test t again, alone, in a private mount and network
// namespace with loopback up and resolvConf as /etc/resolv.conf, and
// reports whether the caller is that inner run. The outer run gets false
// once the inner run has ended, and fails unless the inner run passed.
// Call it first in a top-level test:
//
//	if !InNetns(t, resolvConf) {
//		return
//	}
//	s := Start(t, corefile, map[string]int{"DNS": 53}) // inside the namespace
func InNetns(t *testing.T, resolvConf string) bool {
	t.Helper()
	if os.Getenv(netnsTestEnv) == t.Name() {
		netnsSetup(t, resolvConf)
		return true
	}
	if strings.Contains(t.Name(), "/") {
		t.Fatalf("InNetns runs whole tests: call it from a top-level test, not from %s", t.Name())
	}
	outer, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatalf("network namespace of the test: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), netnsTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--net", "--propagation", "private", os.Args[0],
		"-test.run", "^"+regexp.QuoteMeta(t.Name())+"$", "-test.v", "-test.count=1",
		"-test.timeout", netnsTimeout.String())
	cmd.Env = append(os.Environ(), netnsTestEnv+"="+t.Name(), netnsOuterEnv+"="+outer, "COREDNS_BINARY="+binary)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	text := out.String()
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		t.Log("netns| " + l)
	}
	switch {
	case err != nil:
		t.Fatalf("the run in a private namespace failed after %v: %v (its output is above)", time.Since(start).Round(time.Millisecond), err)
	case !strings.Contains(text, "--- PASS: "+t.Name()+" "):
		// Exit 0 without running the test (a -test.run that matched
		// nothing) must not pass for it.
		t.Fatalf("the run in a private namespace did not report %s passed (its output is above)", t.Name())
	}
	return false
}

// netnsSetup makes the inner run's namespaces ready: it checks it is not
// in the outer run's network namespace, brings loopback up and
// bind-mounts resolvConf over /etc/resolv.conf (the mount namespace is the
// run's own, so the mount ends with it).
func netnsSetup(t *testing.T, resolvConf string) {
	t.Helper()
	ns, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatalf("network namespace: %v", err)
	}
	if outer := os.Getenv(netnsOuterEnv); outer == "" || ns == outer {
		t.Fatalf("inner run in network namespace %s, the outer run's is %q: not a private namespace", ns, outer)
	}
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v: %s", err, out)
	}
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(conf, []byte(resolvConf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(conf, "/etc/resolv.conf", "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mount %s over /etc/resolv.conf: %v", conf, err)
	}
	t.Cleanup(func() { _ = syscall.Unmount("/etc/resolv.conf", 0) })
	if got := readFile(t, "/etc/resolv.conf"); got != resolvConf {
		t.Fatalf("/etc/resolv.conf after the bind mount:\n%s\nwant:\n%s", got, resolvConf)
	}
}

// Getent runs `getent DATABASE KEY` (glibc's resolver, as applications use
// it) and returns its output and exit code; it gives up after timeout.
func Getent(t *testing.T, timeout time.Duration, database, key string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, "getent", database, key).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("getent %s %s: no result within %v: %s", database, key, timeout, out)
	}
	code := exitCode(err)
	if code < 0 {
		t.Fatalf("getent %s %s: %v", database, key, err)
	}
	t.Logf("getent %s %s: exit %d after %v:\n%s", database, key, code, time.Since(start).Round(time.Millisecond), strings.TrimRight(string(out), "\n"))
	return string(out), code
}

// podResolvConf is what kubelet writes for a pod in namespace default (no
// node search domains), with a 1 s timeout to keep retries short.
var podResolvConf = fmt.Sprintf("nameserver 127.0.0.1\nsearch %s\noptions ndots:5 timeout:1 attempts:2\n",
	strings.Join(podSearch, " "))

var podSearch = []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"}
