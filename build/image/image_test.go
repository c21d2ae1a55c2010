package image

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// tiny builds a small Go program the way the Makefile builds coredns, with
// extra environment and flags, and returns its path. It has a
// github.com/coredns/coredns/coremain.GitCommit for -X to stamp.
func tiny(t *testing.T, env []string, flags ...string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range map[string]string{
		"go.mod":              "module github.com/coredns/coredns\n\ngo 1.22\n",
		"main.go":             "package main\n\nimport \"github.com/coredns/coredns/coremain\"\n\nfunc main() { println(coremain.GitCommit) }\n",
		"coremain/version.go": "package coremain\n\nvar GitCommit string\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "tiny")
	args := append([]string{"build", "-o", out}, flags...)
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "GOOS=linux", "GOFLAGS=-buildvcs=false"), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

const stamp = "-X " + VersionVar + "=dnsdiag-test"

func TestInspect(t *testing.T) {
	good := tiny(t, []string{"CGO_ENABLED=0", "GOARCH=amd64"}, "-trimpath", "-ldflags", "-s -w "+stamp)
	b, err := Inspect(good, "dnsdiag-test")
	if err != nil {
		t.Fatal(err)
	}
	if b.GOOS != "linux" || b.GOARCH != "amd64" || b.Version != "dnsdiag-test" {
		t.Fatalf("Inspect = %+v", b)
	}
	arm := tiny(t, []string{"CGO_ENABLED=0", "GOARCH=arm", "GOARM=7"}, "-trimpath", "-ldflags", stamp)
	if b, err := Inspect(arm, "dnsdiag-test"); err != nil || b.GOARCH != "arm" || b.Variant != "v7" {
		t.Fatalf("Inspect(arm) = %+v, %v", b, err)
	}

	for name, c := range map[string]struct {
		env   []string
		flags []string
		want  string
	}{
		"cgo":         {[]string{"CGO_ENABLED=1"}, []string{"-trimpath", "-ldflags", stamp}, "CGO_ENABLED"},
		"no trimpath": {[]string{"CGO_ENABLED=0"}, []string{"-ldflags", stamp}, "-trimpath"},
		"no version":  {[]string{"CGO_ENABLED=0"}, []string{"-trimpath"}, "not stamped"},
		"darwin":      {[]string{"CGO_ENABLED=0", "GOOS=darwin"}, []string{"-trimpath", "-ldflags", stamp}, "GOOS=darwin"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Inspect(tiny(t, c.env, c.flags...), "dnsdiag-test")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Inspect: got %v, want an error about %s", err, c.want)
			}
		})
	}
	if _, err := Inspect("image.go", "dnsdiag-test"); err == nil {
		t.Fatal("Inspect accepted a source file")
	}
}

func TestParseReference(t *testing.T) {
	for in, want := range map[string]Reference{
		"dnsdiag/coredns:dev":          {Full: "docker.io/dnsdiag/coredns:dev", Tag: "dev", Repo: "dnsdiag/coredns"},
		"coredns:v1":                   {Full: "docker.io/library/coredns:v1", Tag: "v1", Repo: "coredns"},
		"localhost:5000/coredns:x":     {Full: "localhost:5000/coredns:x", Tag: "x", Repo: "localhost:5000/coredns"},
		"registry.example/a/b:1.2.3-4": {Full: "registry.example/a/b:1.2.3-4", Tag: "1.2.3-4", Repo: "registry.example/a/b"},
	} {
		got, err := ParseReference(in)
		if err != nil || got != want {
			t.Errorf("ParseReference(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"coredns", "localhost:5000/coredns", "Dnsdiag/coredns:dev", "a/b@sha256:00", ":x", "a:"} {
		if _, err := ParseReference(bad); err == nil {
			t.Errorf("ParseReference(%q) accepted it", bad)
		}
	}
}

// TestArchive builds an image around two tiny static binaries (coredns and
// the analyser), writes the archive twice and reads it back both as
// docker's manifest.json archive and as an OCI layout.
func TestArchive(t *testing.T) {
	bin := tiny(t, []string{"CGO_ENABLED=0", "GOARCH=amd64"}, "-trimpath", "-ldflags", "-s -w "+stamp)
	// Another build, so that the two files differ.
	analyser := tiny(t, []string{"CGO_ENABLED=0", "GOARCH=amd64"}, "-trimpath", "-ldflags", stamp)
	certs := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(certs, []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	write := func() []byte {
		img, _, err := Build(Options{Binary: bin, Analyser: analyser, Version: "dnsdiag-test", CACerts: certs, Created: created, Source: "https://example.invalid/dnsdiag"})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := WriteArchive(&buf, img, "dnsdiag/coredns:test"); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	a, b := write(), write()
	if !bytes.Equal(a, b) {
		t.Fatal("two builds of the same inputs differ")
	}

	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(a))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(created) {
			t.Errorf("%s: mtime %v, want %v", h.Name, h.ModTime, created)
		}
		data, _ := io.ReadAll(tr)
		files[h.Name] = data
	}
	for _, name := range []string{"oci-layout", "index.json", "manifest.json"} {
		if files[name] == nil {
			t.Fatalf("archive has no %s", name)
		}
	}
	var index struct {
		Manifests []struct {
			Digest      string
			Annotations map[string]string
			Platform    map[string]string
		}
	}
	if err := json.Unmarshal(files["index.json"], &index); err != nil {
		t.Fatal(err)
	}
	if len(index.Manifests) != 1 {
		t.Fatalf("index.json: %s", files["index.json"])
	}
	m := index.Manifests[0]
	if m.Annotations["io.containerd.image.name"] != "docker.io/dnsdiag/coredns:test" ||
		m.Annotations["org.opencontainers.image.ref.name"] != "docker.io/dnsdiag/coredns:test" ||
		m.Platform["os"] != "linux" || m.Platform["architecture"] != "amd64" {
		t.Fatalf("index.json: %s", files["index.json"])
	}
	if files["blobs/sha256/"+strings.TrimPrefix(m.Digest, "sha256:")] == nil {
		t.Fatalf("index.json names manifest %s, not in the archive", m.Digest)
	}

	// docker load's view: manifest.json.
	path := filepath.Join(t.TempDir(), "image.tar")
	if err := os.WriteFile(path, a, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != User || strings.Join(cf.Config.Entrypoint, " ") != Entrypoint ||
		len(cf.Config.ExposedPorts) != 3 || cf.Config.Labels["org.opencontainers.image.version"] != "dnsdiag-test" ||
		!cf.Created.Time.Equal(created) || cf.RootFS.Type != "layers" || len(cf.RootFS.DiffIDs) != 1 {
		t.Fatalf("config: %+v", cf)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %v %v", layers, err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	want := map[string]bool{"coredns": true, "dnsdiag-analyser": true, "etc/": true, "etc/group": true, "etc/passwd": true, "etc/ssl/": true,
		"etc/ssl/certs/": true, CACertPath: true, "home/": true, "home/nonroot/": true, "tmp/": true}
	lr := tar.NewReader(rc)
	for {
		h, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !want[h.Name] {
			t.Errorf("unexpected layer entry %s", h.Name)
		}
		delete(want, h.Name)
		if h.Name == "coredns" {
			if h.Mode != 0o755 || h.Uid != 0 || h.PAXRecords[xattrCapability] != string(CapNetBindService) {
				t.Errorf("coredns entry: mode %o uid %d xattrs %q", h.Mode, h.Uid, h.PAXRecords)
			}
			got, _ := io.ReadAll(lr)
			orig, _ := os.ReadFile(bin)
			if !bytes.Equal(got, orig) {
				t.Error("coredns in the layer differs from the binary")
			}
		}
		if h.Name == "dnsdiag-analyser" {
			if _, hasCap := h.PAXRecords[xattrCapability]; h.Mode != 0o755 || h.Uid != 0 || h.Gid != 0 || hasCap {
				t.Errorf("dnsdiag-analyser entry: mode %o owner %d:%d xattrs %q, want 755 root's without a capability", h.Mode, h.Uid, h.Gid, h.PAXRecords)
			}
			got, _ := io.ReadAll(lr)
			orig, _ := os.ReadFile(analyser)
			if !bytes.Equal(got, orig) {
				t.Error("dnsdiag-analyser in the layer differs from the binary")
			}
		}
		if h.Name == "home/nonroot/" && (h.Uid != UID || h.Gid != GID) {
			t.Errorf("home/nonroot owned by %d:%d", h.Uid, h.Gid)
		}
	}
	if len(want) > 0 {
		t.Errorf("layer misses %v", want)
	}
}

// TestBuildRefusesBadAnalyser: the image is not built without an analyser
// the image can run, of the same build as coredns.
func TestBuildRefusesBadAnalyser(t *testing.T) {
	bin := tiny(t, []string{"CGO_ENABLED=0", "GOARCH=amd64"}, "-trimpath", "-ldflags", stamp)
	for name, c := range map[string]struct {
		analyser string
		want     string
	}{
		"none":       {"", "no dnsdiag-analyser"},
		"missing":    {filepath.Join(t.TempDir(), "dnsdiag-analyser"), "not a Go binary"},
		"cgo":        {tiny(t, []string{"CGO_ENABLED=1", "GOARCH=amd64"}, "-trimpath", "-ldflags", stamp), "CGO_ENABLED"},
		"other arch": {tiny(t, []string{"CGO_ENABLED=0", "GOARCH=arm64"}, "-trimpath", "-ldflags", stamp), "linux/arm64"},
		"unstamped":  {tiny(t, []string{"CGO_ENABLED=0", "GOARCH=amd64"}, "-trimpath"), "not stamped"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := Build(Options{Binary: bin, Analyser: c.analyser, Version: "dnsdiag-test"})
			if err == nil || !strings.Contains(err.Error(), c.want) || (c.analyser != "" && !strings.Contains(err.Error(), "analyser")) {
				t.Fatalf("Build: got %v, want an error about the analyser: %s", err, c.want)
			}
		})
	}
}

func TestBuildRefusesBadCerts(t *testing.T) {
	bin := tiny(t, []string{"CGO_ENABLED=0"}, "-trimpath", "-ldflags", stamp)
	notPEM := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Build(Options{Binary: bin, Analyser: bin, Version: "dnsdiag-test", CACerts: notPEM}); err == nil || !strings.Contains(err.Error(), "PEM") {
		t.Fatalf("Build with a non-PEM CA bundle: %v", err)
	}
}
