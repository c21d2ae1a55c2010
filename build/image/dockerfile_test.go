package image

import (
	"encoding/json"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case
	args string
}

func parseDockerfile(t *testing.T, path string) (stages [][]instruction) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cur string
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if c, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur += c + " "
			continue
		}
		cur += trimmed
		cmd, args, _ := strings.Cut(cur, " ")
		in := instruction{strings.ToUpper(cmd), strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) > 0 {
			stages[len(stages)-1] = append(stages[len(stages)-1], in)
		}
		cur = ""
	}
	return stages
}

func find(stage []instruction, cmd string) []string {
	var out []string
	for _, in := range stage {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

// TestDockerfileMatchesImage keeps build/Dockerfile equivalent to what
// Build makes: both binaries built with the Makefile's flags, the same
// files (the capability on /coredns only) and the same config.
func TestDockerfileMatchesImage(t *testing.T) {
	stages := parseDockerfile(t, "../Dockerfile")
	if len(stages) != 3 {
		t.Fatalf("want 3 stages (build, rootfs, final), got %d", len(stages))
	}
	build, rootfs, final := stages[0], stages[1], stages[2]

	// The binary: the Makefile's flags, with $(VERSION) from the build arg.
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^LDFLAGS\s*:=\s*(.*)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("no LDFLAGS in the Makefile")
	}
	ldflags := strings.ReplaceAll(strings.TrimSpace(string(m[1])), "$(VERSION)", "${VERSION}")
	// What `make build` builds, and where the image has it.
	binaries := map[string]string{"./build/coredns": Entrypoint, "./build/analyser": Analyser}
	built := map[string]bool{}
	for _, r := range find(build, "RUN") {
		if !strings.Contains(r, "go build") {
			continue
		}
		pkg := r[strings.LastIndex(r, " ")+1:]
		dest, ok := binaries[pkg]
		if !ok {
			t.Errorf("Dockerfile builds %s, which the image does not hold:\n%s", pkg, r)
			continue
		}
		built[pkg] = true
		for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-buildvcs=false", `-ldflags "` + ldflags + `"`, "-o /rootfs" + dest + " "} {
			if !strings.Contains(r, want) {
				t.Errorf("Dockerfile's go build of %s lacks %q:\n%s", pkg, want, r)
			}
		}
	}
	for pkg, dest := range binaries {
		if !built[pkg] {
			t.Errorf("Dockerfile does not build %s (%s)", pkg, dest)
		}
		if cp := "--from=build /rootfs" + dest + " /rootfs" + dest; !slices.Contains(find(rootfs, "COPY"), cp) {
			t.Errorf("Dockerfile's rootfs stage lacks COPY %s", cp)
		}
	}
	mkBuild := regexp.MustCompile(`(?m)^build:\n((?:\t.*\n)+)`).FindSubmatch(mk)
	for pkg, dest := range binaries {
		if mkBuild == nil || !regexp.MustCompile(`-o `+regexp.QuoteMeta(dest[1:])+` `+regexp.QuoteMeta(pkg)+`\n`).Match(mkBuild[1]) {
			t.Errorf("the Makefile's build target does not write ./%s from %s", dest[1:], pkg)
		}
	}
	if !strings.Contains(ldflags, VersionVar+"=dnsdiag-") {
		t.Errorf("the Makefile no longer stamps %s: %s", VersionVar, ldflags)
	}

	// The files.
	run := strings.Join(find(rootfs, "RUN"), "\n")
	for _, want := range []string{
		"setcap cap_net_bind_service=+ep /rootfs" + Entrypoint + " ",
		"printf " + strconv.Quote(Passwd)[1:len(strconv.Quote(Passwd))-1],
		"printf " + strconv.Quote(Group)[1:len(strconv.Quote(Group))-1],
		"/rootfs/" + CACertPath,
		"chown " + strconv.Itoa(UID) + ":" + strconv.Itoa(GID) + " /rootfs/home/nonroot",
		"chmod 0700 /rootfs/home/nonroot",
		"chmod 1777 /rootfs/tmp",
	} {
		want = strings.Replace(want, `printf `, `printf '`, 1)
		if !strings.Contains(run, want) {
			t.Errorf("Dockerfile's rootfs stage lacks %q", want)
		}
	}

	if strings.Contains(run, "/rootfs"+Analyser) {
		t.Errorf("Dockerfile's rootfs stage changes %s (Build gives it no capability):\n%s", Analyser, run)
	}

	// The config.
	if got := final[0].args; got != "scratch" {
		t.Errorf("final stage FROM %s, want scratch", got)
	}
	if got := find(final, "USER"); !slices.Equal(got, []string{User}) {
		t.Errorf("USER %v, want %s", got, User)
	}
	if got := find(final, "WORKDIR"); !slices.Equal(got, []string{WorkingDir}) {
		t.Errorf("WORKDIR %v, want %s", got, WorkingDir)
	}
	var entry []string
	if e := find(final, "ENTRYPOINT"); len(e) != 1 || json.Unmarshal([]byte(e[0]), &entry) != nil || !slices.Equal(entry, []string{Entrypoint}) {
		t.Errorf("ENTRYPOINT %v, want [%q]", e, Entrypoint)
	}
	var exposed []string
	for _, e := range find(final, "EXPOSE") {
		exposed = append(exposed, strings.Fields(e)...)
	}
	slices.Sort(exposed)
	if want := slices.Sorted(slices.Values(ExposedPorts)); !slices.Equal(exposed, want) {
		t.Errorf("EXPOSE %v, want %v", exposed, want)
	}
	labels := map[string]string{}
	for _, l := range find(final, "LABEL") {
		for _, kv := range regexp.MustCompile(`(\S+)="([^"]*)"`).FindAllStringSubmatch(l, -1) {
			labels[kv[1]] = kv[2]
		}
	}
	if want := Labels("dnsdiag-${VERSION}"); !maps.Equal(labels, want) {
		t.Errorf("LABELs %v, want %v", labels, want)
	}
}
