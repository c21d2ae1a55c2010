package selfstat

import (
	"os"
	"path/filepath"
	"testing"
)

// fixturePID is the process the trees under testdata describe.
const fixturePID = "100"

// fixtureFDs are the descriptor links of the fixture process: sockets 1001
// and 1002 are in its net/udp, 1003 in net/udp6, 4242 (a TCP socket) in
// neither; 5555 and 6666 in net/udp{,6} belong to other processes.
var fixtureFDs = map[string]string{
	"0": "/dev/null",
	"1": "pipe:[77]",
	"3": "socket:[1001]",
	"4": "socket:[1002]",
	"5": "socket:[1003]",
	"6": "socket:[4242]",
	"7": "anon_inode:[eventpoll]",
}

// fixture copies testdata/name (name "" for an empty tree) into a fresh
// root, and adds the links git should not hold: proc/self and the
// descriptors in fds.
func fixture(t *testing.T, name string, fds map[string]string) string {
	t.Helper()
	root := t.TempDir()
	if name != "" {
		if err := os.CopyFS(root, os.DirFS(filepath.Join("testdata", name))); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "proc", fixturePID), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(fixturePID, filepath.Join(root, "proc", "self")); err != nil {
		t.Fatal(err)
	}
	if fds != nil {
		dir := filepath.Join(root, "proc", fixturePID, "fd")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for fd, target := range fds {
			if err := os.Symlink(target, filepath.Join(dir, fd)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

// write replaces (or creates) the file at path under root; a nil content
// removes it.
func write(t *testing.T, root, path string, content []byte) {
	t.Helper()
	p := filepath.Join(root, path)
	if content == nil {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
}

// errorsOf returns the kinds with a non-zero error count.
func errorsOf(r *Reader) map[string]uint64 {
	m := map[string]uint64{}
	for f, n := range r.Errors() {
		if n > 0 {
			m[f] = n
		}
	}
	return m
}

// fixtureFile returns a file of testdata/tree.
func fixtureFile(t testing.TB, tree, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", tree, path))
	if err != nil {
		t.Fatal(err)
	}
	return data
}
