package e2e

// The container image, without a container engine: build/image/mkimage
// writes the archive `make image` writes, from the binaries under test; the
// test reads it back the ways docker, podman and containerd do, checks its
// config and files, then runs the /coredns and /dnsdiag-analyser it holds
// as the image's user, the one streaming dnstap to the other as in
// build/kubernetes/analyser, and queries them.

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dnsdiag/dnsdiag/build/image"
	"github.com/dnsdiag/dnsdiag/plugin/dnsdiagtest"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/miekg/dns"
)

// imageStaticBinary is the binary under test if it is what `make build`
// makes (static, -trimpath, stamped), else one built that way here.
func imageStaticBinary(t *testing.T) (path, version string) {
	t.Helper()
	out, err := exec.Command(binary, "-version").Output()
	if err != nil {
		t.Fatalf("%s -version: %v", binary, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	parts := strings.Split(lines[len(lines)-1], ", ")
	version = strings.TrimSpace(parts[len(parts)-1])
	_, err = image.Inspect(binary, version)
	if err == nil {
		return binary, version
	}
	t.Logf("%v: building a static one (about a minute)", err)
	version = "dnsdiag-e2e"
	return imageBuild(t, "./build/coredns", "coredns", version), version
}

// imageStaticAnalyser is the dnsdiag-analyser beside the binary under test
// if it is of the same build (static, -trimpath, stamped with version),
// else one built that way here.
func imageStaticAnalyser(t *testing.T, version string) string {
	t.Helper()
	path := analyserBinary(t)
	_, err := image.Inspect(path, version)
	if err == nil {
		return path
	}
	t.Logf("%v: building a static one", err)
	return imageBuild(t, "./build/analyser", "dnsdiag-analyser", version)
}

// imageBuild builds pkg as `make build` does, stamped with version.
func imageBuild(t *testing.T, pkg, name, version string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -X "+image.VersionVar+"="+version, "-o", path, pkg)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return path
}

// imageArchive runs build/image/mkimage as `make image` does.
func imageArchive(t *testing.T, bin, analyser, version string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "coredns-dnsdiag.tar")
	args := []string{"run", "./build/image/mkimage", "-binary", bin, "-analyser", analyser, "-version", version,
		"-name", "dnsdiag/coredns:e2e", "-created", "1767225600", "-o", out}
	if _, err := os.Stat("/etc/ssl/certs/ca-certificates.crt"); err == nil {
		args = append(args, "-cacerts", "/etc/ssl/certs/ca-certificates.crt")
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkimage: %v\n%s", err, b)
	}
	return out
}

// imageFiles reads a tar into memory, name to content.
func imageFiles(t *testing.T, r io.Reader) (map[string][]byte, map[string]*tar.Header) {
	t.Helper()
	files, headers := map[string][]byte{}, map[string]*tar.Header{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, headers
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name], headers[h.Name] = b, h
	}
}

func TestImage(t *testing.T) {
	t.Parallel()
	bin, version := imageStaticBinary(t)
	analyser := imageStaticAnalyser(t, version)
	archive := imageArchive(t, bin, analyser, version)
	raw, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := imageFiles(t, raw)
	raw.Close()

	// Every blob is what its name says.
	for name, b := range files {
		if hexd, ok := strings.CutPrefix(name, "blobs/sha256/"); ok && hexd != "" {
			if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != hexd {
				t.Errorf("%s: content digest %x", name, sum)
			}
		}
	}

	// containerd, podman and Docker 25+ read the OCI layout: index.json
	// names the image.
	if string(files["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout: %s", files["oci-layout"])
	}
	dir := t.TempDir()
	for name, b := range files {
		p := filepath.Join(dir, name)
		if strings.HasSuffix(name, "/") {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("index.json lists %d manifests", len(im.Manifests))
	}
	desc := im.Manifests[0]
	for _, a := range []string{"io.containerd.image.name", "org.opencontainers.image.ref.name"} {
		if desc.Annotations[a] != "docker.io/dnsdiag/coredns:e2e" {
			t.Errorf("index.json %s = %q", a, desc.Annotations[a])
		}
	}
	if desc.Platform == nil || desc.Platform.OS != "linux" || desc.Platform.Architecture != runtime.GOARCH {
		t.Errorf("index.json platform %+v", desc.Platform)
	}
	ociImg, err := idx.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}

	// docker load (before 25) reads manifest.json.
	var dm []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &dm); err != nil || len(dm) != 1 || !slices.Equal(dm[0].RepoTags, []string{"dnsdiag/coredns:e2e"}) {
		t.Fatalf("manifest.json: %s (%v)", files["manifest.json"], err)
	}
	dockerImg, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	ociCfg, _ := ociImg.ConfigName()
	dockerCfg, _ := dockerImg.ConfigName()
	if ociCfg != dockerCfg || dm[0].Config != "blobs/sha256/"+ociCfg.Hex {
		t.Errorf("the two views disagree on the config: %v, %v, %s", ociCfg, dockerCfg, dm[0].Config)
	}

	// The manifest and config.
	mf, err := ociImg.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if mf.MediaType != "application/vnd.oci.image.manifest.v1+json" || mf.Config.MediaType != "application/vnd.oci.image.config.v1+json" ||
		len(mf.Layers) != 1 || mf.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
		t.Errorf("manifest: %+v", mf)
	}
	cf, err := ociImg.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	uid, gid, _ := strings.Cut(c.User, ":")
	if u, err := strconv.Atoi(uid); err != nil || u == 0 {
		t.Errorf("User %q: want a numeric non-root uid (Kubernetes' runAsNonRoot checks it)", c.User)
	}
	if !slices.Equal(c.Entrypoint, []string{"/coredns"}) || len(c.Cmd) != 0 {
		t.Errorf("Entrypoint %q Cmd %q, want [/coredns] and no Cmd", c.Entrypoint, c.Cmd)
	}
	if got := slices.Sorted(maps.Keys(c.ExposedPorts)); !slices.Equal(got, []string{"53/tcp", "53/udp", "9153/tcp"}) {
		t.Errorf("ExposedPorts %v", got)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH || cf.RootFS.Type != "layers" || len(cf.RootFS.DiffIDs) != 1 {
		t.Errorf("config: os %s arch %s rootfs %+v", cf.OS, cf.Architecture, cf.RootFS)
	}
	if c.Labels["org.opencontainers.image.version"] != version || !cf.Created.Time.Equal(time.Unix(1767225600, 0)) {
		t.Errorf("version label %q, created %v", c.Labels["org.opencontainers.image.version"], cf.Created)
	}

	// The layer: exactly the two binaries, passwd and group naming the
	// image's user, and nothing that needs a shell.
	layers, err := ociImg.Layers()
	if err != nil {
		t.Fatal(err)
	}
	diffID, _ := layers[0].DiffID()
	if diffID != cf.RootFS.DiffIDs[0] {
		t.Errorf("layer diff id %v, config says %v", diffID, cf.RootFS.DiffIDs[0])
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	lfiles, lheaders := imageFiles(t, rc)
	rc.Close()
	var names []string
	for n := range lfiles {
		names = append(names, n)
	}
	slices.Sort(names)
	want := []string{"coredns", "dnsdiag-analyser", "etc/", "etc/group", "etc/passwd", "home/", "home/nonroot/", "tmp/"}
	if _, ok := lfiles[image.CACertPath]; ok {
		want = append(want, "etc/ssl/", "etc/ssl/certs/", image.CACertPath)
		slices.Sort(want)
	}
	if !slices.Equal(names, want) {
		t.Errorf("layer holds %v, want %v", names, want)
	}
	orig, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	h := lheaders["coredns"]
	if !bytes.Equal(lfiles["coredns"], orig) || h.Mode&0o777 != 0o755 || h.Uid != 0 {
		t.Errorf("/coredns: mode %o uid %d, same bytes as %s: %v", h.Mode, h.Uid, bin, bytes.Equal(lfiles["coredns"], orig))
	}
	capXattr := []byte(h.PAXRecords["SCHILY.xattr.security.capability"])
	// What `setcap cap_net_bind_service=+ep` writes: vfs_cap_data revision 2
	// with the effective flag, permitted bit 10.
	if !bytes.Equal(capXattr, []byte{1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) {
		t.Errorf("/coredns security.capability %x, want cap_net_bind_service=ep", capXattr)
	}
	origAnalyser, err := os.ReadFile(analyser)
	if err != nil {
		t.Fatal(err)
	}
	// The analyser listens on 6000 and 9153 only: no file capability.
	ha := lheaders["dnsdiag-analyser"]
	if _, hasCap := ha.PAXRecords["SCHILY.xattr.security.capability"]; !bytes.Equal(lfiles["dnsdiag-analyser"], origAnalyser) ||
		ha.Mode&0o777 != 0o755 || ha.Uid != 0 || hasCap {
		t.Errorf("/dnsdiag-analyser: mode %o uid %d capability %v, same bytes as %s: %v", ha.Mode, ha.Uid, hasCap, analyser,
			bytes.Equal(lfiles["dnsdiag-analyser"], origAnalyser))
	}
	if !strings.Contains(string(lfiles["etc/passwd"]), "nonroot:x:"+uid+":"+gid+":") ||
		!strings.Contains(string(lfiles["etc/group"]), "nonroot:x:"+gid+":") {
		t.Errorf("passwd/group do not name %s:\n%s%s", c.User, lfiles["etc/passwd"], lfiles["etc/group"])
	}
	if h := lheaders["tmp/"]; h.Mode&0o7777 != 0o1777 {
		t.Errorf("/tmp mode %o", h.Mode)
	}

	// Run /coredns and /dnsdiag-analyser as the containers would.
	imageRun(t, lfiles["coredns"], capXattr, lfiles["dnsdiag-analyser"], c.User, version)

	// Two real image tools read it (`make e2e` installs them).
	t.Run("podman", func(t *testing.T) { imagePodmanLoad(t, archive, c.User) })
	t.Run("skopeo", func(t *testing.T) { imageSkopeo(t, archive, version) })
}

// imagePodmanLoad loads the archive with `podman load` into a store of its
// own and checks the name and config podman sees.
func imagePodmanLoad(t *testing.T, archive, user string) {
	podman, err := exec.LookPath("podman")
	if err != nil || os.Geteuid() != 0 {
		t.Fatal("needs podman on PATH and root (`make e2e` installs it)")
	}
	store := t.TempDir()
	base := []string{"--root", filepath.Join(store, "root"), "--runroot", filepath.Join(store, "run"), "--storage-driver", "vfs"}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(podman, append(slices.Clone(base), args...)...)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return string(b)
	}
	if out := run("load", "-i", archive); !strings.Contains(out, "Loaded image: docker.io/dnsdiag/coredns:e2e") {
		t.Errorf("podman load:\n%s", out)
	}
	got := strings.TrimSpace(run("image", "inspect", "docker.io/dnsdiag/coredns:e2e", "--format", "{{.Config.User}} {{.Config.Entrypoint}} {{.Os}}/{{.Architecture}}"))
	if want := user + " [/coredns] linux/" + runtime.GOARCH; got != want {
		t.Errorf("podman image inspect: %q, want %q", got, want)
	}
}

// imageSkopeo reads the archive both as oci-archive and as docker-archive.
func imageSkopeo(t *testing.T, archive, version string) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Fatal("needs skopeo on PATH (`make e2e` installs it)")
	}
	for _, transport := range []string{"oci-archive:", "docker-archive:"} {
		b, err := exec.Command(skopeo, "inspect", "--config", transport+archive).CombinedOutput()
		if err != nil {
			t.Errorf("skopeo inspect %s: %v\n%s", transport, err, b)
			continue
		}
		var cf struct {
			Config struct {
				Labels map[string]string
			}
		}
		if err := json.Unmarshal(b, &cf); err != nil || cf.Config.Labels["org.opencontainers.image.version"] != version {
			t.Errorf("skopeo inspect --config %s: %v\n%s", transport, err, b)
		}
	}
}

// imageRun writes the image's /coredns out, with its file capability, and
// its /dnsdiag-analyser, and runs them as the image's user where this test
// may (as root): then coredns binds 127.0.0.1:53 as the container does, if
// that port is free. The analyser must list its flags on -h and start;
// coredns, streaming dnstap to it, must start, answer, log a dnsdiag line
// and serve metrics; the analyser must log and count the same session.
func imageRun(t *testing.T, exe, capXattr, analyserExe []byte, user, version string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "dnsdiag-image-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "coredns")
	if err := os.WriteFile(path, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	v, err := exec.Command(path, "-version").Output()
	if err != nil || !strings.Contains(string(v), version) {
		t.Errorf("/coredns -version: %v\n%s\nwant %s", err, v, version)
	}
	analyserPath := filepath.Join(dir, "dnsdiag-analyser")
	if err := os.WriteFile(analyserPath, analyserExe, 0o755); err != nil {
		t.Fatal(err)
	}

	var cred *syscall.Credential
	asUser := os.Geteuid() == 0 && syscall.Setxattr(path, "security.capability", capXattr, 0) == nil
	if asUser {
		uid, gid, _ := strings.Cut(user, ":")
		u, _ := strconv.Atoi(uid)
		g, _ := strconv.Atoi(gid)
		cred = &syscall.Credential{Uid: uint32(u), Gid: uint32(g)}
	} else {
		t.Log("not root (or no file capabilities here): the binary runs as this user on a high port")
	}
	dnsPort := "53"
	if !asUser || !imagePortFree(dnsPort) {
		dnsPort = strconv.Itoa(freePort(t))
	}
	metricsPort := strconv.Itoa(freePort(t))
	analyserOut, tapPort, analyserMetrics := imageStartAnalyser(t, analyserPath, user, cred)

	var (
		cmd *exec.Cmd
		out *dnsdiagtest.SyncBuffer
	)
	for attempt := 0; ; attempt++ {
		cmd, out = imageStart(t, dir, path, dnsPort, metricsPort, tapPort, cred)
		if cmd != nil {
			break
		}
		// 53 was taken between the check and the bind: a high port then.
		if attempt > 0 || dnsPort != "53" || !strings.Contains(out.String(), "address already in use") {
			t.Fatalf("the image's coredns did not start:\n%s", out.String())
		}
		t.Log("127.0.0.1:53 is taken: running on a high port")
		dnsPort = strconv.Itoa(freePort(t))
	}
	if asUser {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
		if err != nil || !strings.Contains(string(st), "\nUid:\t"+strings.Split(user, ":")[0]+"\t") {
			t.Errorf("not running as %s:\n%s", user, st)
		}
	}

	// What coredns taps before its dnstap connects is not sent.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(analyserOut.String(), "analyser: connection from"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the image's coredns did not connect to its analyser:\n%s", analyserOut.String())
		}
	}

	addr := net.JoinHostPort("127.0.0.1", dnsPort)
	r := Query(t, "udp", addr, "www.image.test", dns.TypeA, k8sTimeout)
	if got := answerA(t, r.MustAnswer(t, dns.RcodeSuccess)); got != "192.0.2.99" {
		t.Errorf("answer %s", got)
	}
	var line Line
	for deadline := time.Now().Add(10 * time.Second); line.QName == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, o := range strings.Split(out.String(), "\n") {
			if l, ok, err := dnsdiagtest.Parse(o); ok && err == nil && l.QName == "www.image.test." {
				line = l
			}
		}
	}
	check(t, line, want{Status: "Succeeded", BitMap: 3, Rcode: "NOERROR", Server: "dns://" + addr, Client: r.Local, QType: "A", Upstreams: 0})
	k8sWaitMetric(t, net.JoinHostPort("127.0.0.1", metricsPort), "coredns_dnsdiag_sessions_total", map[string]string{"status": "Succeeded", "bitmap": "3"}, 1)

	// The same session, from the stream, in the analyser.
	var aline Line
	for deadline := time.Now().Add(10 * time.Second); aline.QName == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, o := range strings.Split(analyserOut.String(), "\n") {
			if l, ok, err := dnsdiagtest.Parse(o); ok && err == nil && l.QName == "www.image.test." {
				aline = l
			}
		}
	}
	if aline.Status != line.Status || aline.BitMap != line.BitMap || aline.Client != r.Local {
		t.Errorf("the image's analyser: %s %d from %q, want %s %d from %s (the plugin's); output:\n%s",
			aline.Status, aline.BitMap, aline.Client, line.Status, line.BitMap, r.Local, analyserOut.String())
	}
	k8sWaitMetric(t, analyserMetrics, "coredns_dnsdiag_sessions_total", map[string]string{"server": "dnstap", "status": "Succeeded", "bitmap": "3"}, 1)
}

// imageStartAnalyser checks that the image's analyser lists its flags on
// -h, then runs it (as cred) on free loopback ports for dnstap and metrics,
// logging every session, and waits until it listens. It returns its output,
// the dnstap port and the metrics address.
func imageStartAnalyser(t *testing.T, path, user string, cred *syscall.Credential) (*dnsdiagtest.SyncBuffer, string, string) {
	t.Helper()
	help, _ := exec.Command(path, "-h").CombinedOutput()
	for _, f := range []string{"-listen", "-metrics", "-log", "-rate", "-messages", "-log-format", "-window", "-max-sessions", "-queue", "-idle"} {
		if !strings.Contains(string(help), "\n  "+f+" ") && !strings.Contains(string(help), "\n  "+f+"\n") {
			t.Errorf("/dnsdiag-analyser -h does not list %s:\n%s", f, help)
		}
	}
	for attempt := 0; ; attempt++ {
		tapPort, metrics := strconv.Itoa(freePort(t)), net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
		cmd, out := imageExec(t, "analyser", path, cred, "analyser: listening on",
			"-listen", "tcp://127.0.0.1:"+tapPort, "-metrics", metrics, "-log", "all", "-rate", "0")
		if cmd == nil {
			if attempt < 2 && strings.Contains(out.String(), "address already in use") {
				continue
			}
			t.Fatalf("the image's analyser did not start:\n%s", out.String())
		}
		if cred != nil {
			st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
			if err != nil || !strings.Contains(string(st), "\nUid:\t"+strings.Split(user, ":")[0]+"\t") {
				t.Errorf("the analyser is not running as %s:\n%s", user, st)
			}
		}
		return out, tapPort, metrics
	}
}

// imageStart runs the binary on a small Corefile and waits for its banner;
// it returns a nil command, and the output, if the process exited first.
func imageStart(t *testing.T, dir, path, dnsPort, metricsPort, tapPort string, cred *syscall.Credential) (*exec.Cmd, *dnsdiagtest.SyncBuffer) {
	t.Helper()
	corefile := fmt.Sprintf(`.:%s {
    bind 127.0.0.1
    dnsdiag {
        log all
    }
    dnstap tcp://127.0.0.1:%s full
    prometheus 127.0.0.1:%s
    template IN A image.test {
        answer "{{ .Name }} 60 IN A 192.0.2.99"
    }
}
`, dnsPort, tapPort, metricsPort)
	conf := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(conf, []byte(corefile), 0o644); err != nil {
		t.Fatal(err)
	}
	return imageExec(t, "coredns", path, cred, "CoreDNS-", "-conf", conf)
}

// imageExec runs the image's binary at path with args, as cred, from /,
// and waits at most 15 s for banner in its output. It returns a nil
// command, and the output, if the process exited first; a started one is
// killed at the end of the test, its output logged if the test failed.
func imageExec(t *testing.T, name, path string, cred *syscall.Credential, banner string, args ...string) (*exec.Cmd, *dnsdiagtest.SyncBuffer) {
	t.Helper()
	out := &dnsdiagtest.SyncBuffer{}
	cmd := exec.Command(path, args...)
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), banner) {
		select {
		case <-exited:
			return nil, out
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			t.Fatalf("the image's %s did not start within 15 s:\n%s", name, out.String())
		}
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("the image's %s output:\n%s", name, out.String())
		}
	})
	return cmd, out
}

// imagePortFree reports whether port is free on 127.0.0.1 for UDP and TCP.
func imagePortFree(port string) bool {
	addr := net.JoinHostPort("127.0.0.1", port)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer l.Close()
	p, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	p.Close()
	return true
}
