package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runConfig runs coredns on a Corefile and returns its exit code and
// output, killing it if it is still running after 10 s.
func runConfig(t *testing.T, corefile string) (path string, code int, out string) {
	t.Helper()
	corefile = strings.ReplaceAll(corefile, "{{PORT}}", strconv.Itoa(freePort(t)))
	path = filepath.Join(t.TempDir(), "Corefile")
	if err := os.WriteFile(path, []byte(corefile), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := exec.CommandContext(ctx, binary, "-conf", path).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("coredns kept running on an invalid Corefile:\n%s\noutput:\n%s", corefile, b)
	}
	return path, exitCode(err), string(b)
}

// errLines are the 1-based lines of the Corefile marked "#ERR": the error
// must name one of them.
func errLines(t *testing.T, corefile string) []int {
	var ls []int
	for i, l := range strings.Split(corefile, "\n") {
		if strings.Contains(l, "#ERR") {
			ls = append(ls, i+1)
		}
	}
	if len(ls) == 0 {
		t.Fatal("no #ERR line")
	}
	return ls
}

func TestConfigInvalid(t *testing.T) {
	t.Parallel()
	cases := map[string]struct{ corefile, msg string }{
		"unknown option": {`
.:{{PORT}} {
    bind 127.0.0.1
    dnsdiag {
        log all
        frobnicate 10 #ERR
    }
    whoami
}`, "frobnicate"},
		"log sometimes": {`
.:{{PORT}} {
    bind 127.0.0.1
    dnsdiag {
        log sometimes #ERR
    }
    whoami
}`, "sometimes"},
		"log without argument": {`
.:{{PORT}} {
    bind 127.0.0.1
    dnsdiag {
        log #ERR
    }
    whoami
}`, "log"},
		"log with two arguments": {`
.:{{PORT}} {
    bind 127.0.0.1
    dnsdiag {
        log all failed #ERR
    }
    whoami
}`, "log"},
		"duplicate log": {`
.:{{PORT}} {
    bind 127.0.0.1
    dnsdiag {
        log all
        log none #ERR
    }
    whoami
}`, "log"},
		"argument after dnsdiag": {`
.:{{PORT}} {
    bind 127.0.0.1
    dnsdiag all #ERR
    whoami
}`, "dnsdiag"},
		"dnsdiag twice": {`
.:{{PORT}} {
    bind 127.0.0.1
    dnsdiag
    whoami
    dnsdiag #ERR
}`, "once"},
		// The policy options; a contradiction is found once the block
		// is read, so the error may name the block's end.
		"log and status": {`
.:{{PORT}} {
    bind 127.0.0.1
    dnsdiag {
        log all #ERR
        status Failed #ERR
    } #ERR
    whoami
}`, "status"},
		"log none with rate": {`
.:{{PORT}} {
    bind 127.0.0.1
    dnsdiag {
        log none #ERR
        rate 5 #ERR
    } #ERR
    whoami
}`, "rate"},
		"rate not a number": {`
.:{{PORT}} {
    bind 127.0.0.1
    dnsdiag {
        rate fast #ERR
    }
    whoami
}`, "fast"},
		"slow zero": {`
.:{{PORT}} {
    bind 127.0.0.1
    dnsdiag {
        slow 0 #ERR
    }
    whoami
}`, "slow"},
		"sample zero": {`
.:{{PORT}} {
    bind 127.0.0.1
    dnsdiag {
        sample 0 #ERR
    }
    whoami
}`, "sample"},
		"bitmap out of range": {`
.:{{PORT}} {
    bind 127.0.0.1
    dnsdiag {
        bitmap 3 16 #ERR
    }
    whoami
}`, "16"},
		"unknown status": {`
.:{{PORT}} {
    bind 127.0.0.1
    dnsdiag {
        status Failed Maybe #ERR
    }
    whoami
}`, "Maybe"},
		"messages neither full nor header": {`
.:{{PORT}} {
    bind 127.0.0.1
    dnsdiag {
        messages some #ERR
    }
    whoami
}`, "some"},
		"second block only": {`
.:{{PORT}} {
    bind 127.0.0.1
    dnsdiag
    whoami
}
example.org:{{PORT}} {
    bind 127.0.0.1
    dnsdiag {
        logs all #ERR
    }
    whoami
}`, "logs"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path, code, out := runConfig(t, c.corefile)
			if code == 0 {
				t.Fatalf("exit code 0 on an invalid Corefile; output:\n%s", out)
			}
			var where []string
			named := false
			for _, n := range errLines(t, c.corefile) {
				w := path + ":" + strconv.Itoa(n)
				where = append(where, w)
				// "path:N " or "path:N -": not a prefix of a longer number.
				named = named || strings.Contains(out, w+" ") || strings.Contains(out, w+"\n")
			}
			if !named {
				t.Errorf("error should name %s; output:\n%s", strings.Join(where, " or "), out)
			}
			if !strings.Contains(out, "dnsdiag") || !strings.Contains(out, c.msg) {
				t.Errorf("error should name dnsdiag and %q; output:\n%s", c.msg, out)
			}
		})
	}
}

// Every valid form starts and serves.
func TestConfigValid(t *testing.T) {
	t.Parallel()
	s := Start(t, `
a.test:{{PORT}} {
    bind 127.0.0.1
    dnsdiag
    whoami
}
b.test:{{PORT}} {
    bind 127.0.0.1
    dnsdiag {
    }
    whoami
}
c.test:{{PORT}} {
    bind 127.0.0.1
    dnsdiag {
        log failed
    }
    whoami
}
d.test:{{PORT}} {
    bind 127.0.0.1
    dnsdiag {
        log none
    }
    whoami
}
e.test:{{PORT}} {
    bind 127.0.0.1
    dnsdiag {
        log all
    }
    whoami
}
`, nil)
	for _, zone := range []string{"a", "b", "c", "d", "e"} {
		Query(t, "udp", s.Addr("PORT"), zone+".test", 1, qTimeout).MustAnswer(t, 0)
	}
	l := s.WaitLine("for e.test", func(l Line) bool { return l.QName == "e.test." })
	check(t, l, want{Status: "Succeeded", BitMap: 3, Types: legs3, Upstreams: 0})
	if n := len(s.Lines()); n != 1 {
		t.Errorf("only the log all block logs a success; got %d lines", n)
	}
}
