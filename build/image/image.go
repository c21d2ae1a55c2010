// Package image builds the coredns-dnsdiag container image from the static
// linux coredns and dnsdiag-analyser binaries, without a container engine,
// and writes it as one archive that docker load, podman load, kind load
// image-archive and ctr images import all accept.
//
// The image is what upstream CoreDNS ships (a static binary on a distroless
// "nonroot" base), made from scratch: one layer holding /coredns (with the
// cap_net_bind_service file capability, so the non-root process can bind
// port 53), /dnsdiag-analyser (the same build of dnsdiag for clusters that
// keep the stock CoreDNS image and stream dnstap to it; it has no file
// capability, since it listens on 6000 and 9153 only), /etc/passwd and
// /etc/group naming the nonroot user 65532, an optional CA bundle,
// /home/nonroot and /tmp. The config runs /coredns as 65532:65532 and
// exposes 53/udp, 53/tcp and 9153/tcp; the analyser's Deployment
// (build/kubernetes/analyser) runs /dnsdiag-analyser from the same image.
// One image for both keeps the plugin and the analyser of one version
// together, and operators pull and mirror one name.
//
// build/Dockerfile builds the same image with Docker;
// build/image/dockerfile_test.go checks that the two agree.
package image

import (
	"archive/tar"
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What every image built here has; the Dockerfile must say the same.
const (
	Entrypoint = "/coredns"
	Analyser   = "/dnsdiag-analyser" // build/analyser, what build/kubernetes/analyser runs
	User       = "65532:65532"       // numeric, so Kubernetes can enforce runAsNonRoot
	UID, GID   = 65532, 65532
	WorkingDir = "/"
	CACertPath = "etc/ssl/certs/ca-certificates.crt"

	// Passwd and Group are distroless's nonroot entries.
	Passwd = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	Group  = "root:x:0:\nnonroot:x:65532:\n"

	// VersionVar is the variable the Makefile stamps (-X ...=dnsdiag-VERSION).
	VersionVar = "github.com/coredns/coredns/coremain.GitCommit"
)

// ExposedPorts are the ports of upstream CoreDNS's image and Deployment:
// DNS over UDP and TCP, and the prometheus plugin's metrics.
var ExposedPorts = []string{"53/tcp", "53/udp", "9153/tcp"}

// CapNetBindService is the security.capability extended attribute that
// `setcap cap_net_bind_service=+ep` writes (struct vfs_cap_data, revision
// 2, little endian): permitted and effective CAP_NET_BIND_SERVICE (bit 10).
// Upstream CoreDNS's image sets it the same way; with Kubernetes'
// `capabilities: {add: [NET_BIND_SERVICE], drop: [ALL]}` the non-root
// process may then bind port 53.
var CapNetBindService = []byte{
	0x01, 0x00, 0x00, 0x02, // magic_etc: VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
	0x00, 0x04, 0x00, 0x00, // data[0].permitted: 1<<10
	0x00, 0x00, 0x00, 0x00, // data[0].inheritable
	0x00, 0x00, 0x00, 0x00, // data[1].permitted
	0x00, 0x00, 0x00, 0x00, // data[1].inheritable
}

const xattrCapability = "SCHILY.xattr.security.capability"

// Labels are the image's labels that the Dockerfile sets too.
func Labels(version string) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "coredns-dnsdiag",
		"org.opencontainers.image.description": "CoreDNS with the dnsdiag plugin: one log line per DNS session with its Status and BitMap",
		"org.opencontainers.image.version":     version,
		"org.opencontainers.image.licenses":    "Apache-2.0",
	}
}

// Options says what goes into the image.
type Options struct {
	Binary   string    // a static linux coredns, built like `make build` does
	Analyser string    // a static linux dnsdiag-analyser of the same build (platform and stamp)
	Version  string    // the value `make build` stamped into VersionVar, e.g. dnsdiag-0abbadb
	CACerts  string    // a CA bundle to install at /etc/ssl/certs/ca-certificates.crt; "" for none
	Created  time.Time // the image's and every file's time; zero is the Unix epoch
	Source   string    // org.opencontainers.image.source label; "" for none
}

// Binary is what Inspect learnt about a coredns or dnsdiag-analyser binary.
type Binary struct {
	GOOS, GOARCH string
	Variant      string // OCI platform variant (arm: v6, v7)
	Version      string // the stamped coremain.GitCommit, e.g. dnsdiag-0abbadb
	GoVersion    string
}

// Inspect checks that path is a binary the image can run: a linux ELF
// executable with no dynamic loader or shared libraries, built with
// CGO_ENABLED=0 and -trimpath, and stamped with version through VersionVar.
// (-trimpath keeps -ldflags out of the build information, so the stamp is
// looked for in the binary itself; dnsdiag-analyser links coremain too, so
// `make build`'s one -ldflags stamps both.)
func Inspect(path, version string) (Binary, error) {
	b := Binary{Version: version}
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return b, fmt.Errorf("%s: not a Go binary: %w", path, err)
	}
	b.GoVersion = bi.GoVersion
	set := map[string]string{}
	for _, s := range bi.Settings {
		set[s.Key] = s.Value
	}
	b.GOOS, b.GOARCH = set["GOOS"], set["GOARCH"]
	if b.GOOS != "linux" {
		return b, fmt.Errorf("%s: built for GOOS=%s, the image needs linux (make image GOOS=linux)", path, b.GOOS)
	}
	if set["CGO_ENABLED"] != "0" {
		return b, fmt.Errorf("%s: built with CGO_ENABLED=%q, the image needs CGO_ENABLED=0 (make build)", path, set["CGO_ENABLED"])
	}
	if set["-trimpath"] != "true" {
		return b, fmt.Errorf("%s: not built with -trimpath (make build)", path)
	}
	if b.GOARCH == "arm" {
		b.Variant = "v" + strings.TrimSuffix(strings.TrimSuffix(set["GOARM"], ",softfloat"), ",hardfloat")
	}
	if version == "" {
		return b, errors.New("no version given: the one stamped with -X " + VersionVar)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return b, err
	}
	if !bytes.Contains(data, []byte(version)) {
		return b, fmt.Errorf("%s: %q is not stamped in it (-ldflags -X %s=%s; make build does it)", path, version, VersionVar, version)
	}

	f, err := elf.Open(path)
	if err != nil {
		return b, fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC {
		return b, fmt.Errorf("%s: ELF type %v, want a static executable (ET_EXEC)", path, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			return b, fmt.Errorf("%s: dynamically linked (%v)", path, p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return b, fmt.Errorf("%s: needs shared libraries %v", path, libs)
	}
	return b, nil
}

// Build makes the image. The result is the same, byte for byte, for the
// same inputs.
func Build(o Options) (v1.Image, Binary, error) {
	bin, err := Inspect(o.Binary, o.Version)
	if err != nil {
		return nil, bin, err
	}
	if o.Analyser == "" {
		return nil, bin, errors.New("no dnsdiag-analyser given: the image holds " + Analyser + " beside " + Entrypoint + " (make build writes it)")
	}
	an, err := Inspect(o.Analyser, o.Version)
	if err != nil {
		return nil, bin, fmt.Errorf("analyser: %w", err)
	}
	if an.GOOS != bin.GOOS || an.GOARCH != bin.GOARCH || an.Variant != bin.Variant {
		return nil, bin, fmt.Errorf("analyser %s is for %s/%s%s, coredns %s for %s/%s%s: build both for one platform",
			o.Analyser, an.GOOS, an.GOARCH, an.Variant, o.Binary, bin.GOOS, bin.GOARCH, bin.Variant)
	}
	created := o.Created
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	created = created.UTC().Truncate(time.Second)

	data, err := layerTar(o, created)
	if err != nil {
		return nil, bin, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, bin, err
	}

	ports := map[string]struct{}{}
	for _, p := range ExposedPorts {
		ports[p] = struct{}{}
	}
	labels := Labels(bin.Version)
	labels["org.opencontainers.image.created"] = created.Format(time.RFC3339)
	if o.Source != "" {
		labels["org.opencontainers.image.source"] = o.Source
	}
	what := Entrypoint + " (cap_net_bind_service=+ep), " + Analyser + ", /etc/passwd, /etc/group"
	if o.CACerts != "" {
		what += ", /" + CACertPath
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: bin.GOARCH,
		OS:           bin.GOOS,
		Variant:      bin.Variant,
		Created:      v1.Time{Time: created},
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			User:         User,
			Entrypoint:   []string{Entrypoint},
			ExposedPorts: ports,
			WorkingDir:   WorkingDir,
			Labels:       labels,
		},
	})
	if err != nil {
		return nil, bin, err
	}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "dnsdiag build/image: " + what,
			Comment:   "coredns " + bin.Version + " " + bin.GoVersion,
		},
	})
	return img, bin, err
}

// layerTar is the single layer, uncompressed, entries in a fixed order.
func layerTar(o Options, mtime time.Time) ([]byte, error) {
	binary, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, err
	}
	analyser, err := os.ReadFile(o.Analyser)
	if err != nil {
		return nil, err
	}
	var certs []byte
	if o.CACerts != "" {
		if certs, err = os.ReadFile(o.CACerts); err != nil {
			return nil, err
		}
		if !bytes.Contains(certs, []byte("-----BEGIN CERTIFICATE-----")) {
			return nil, fmt.Errorf("%s: not a PEM CA bundle", o.CACerts)
		}
	}

	type entry struct {
		name  string
		mode  int64
		uid   int
		data  []byte
		xattr []byte
		dir   bool
	}
	entries := []entry{
		{name: Entrypoint[1:], mode: 0o755, data: binary, xattr: CapNetBindService},
		// No capability: it binds 6000 and 9153, above the privileged ports.
		{name: Analyser[1:], mode: 0o755, data: analyser},
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/group", mode: 0o644, data: []byte(Group)},
		{name: "etc/passwd", mode: 0o644, data: []byte(Passwd)},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/nonroot/", mode: 0o700, uid: UID, dir: true},
		{name: "tmp/", mode: 0o1777, dir: true},
	}
	if certs != nil {
		entries = append(entries,
			entry{name: "etc/ssl/", mode: 0o755, dir: true},
			entry{name: "etc/ssl/certs/", mode: 0o755, dir: true},
			entry{name: CACertPath, mode: 0o644, data: certs},
		)
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.name, b.name) })

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name:    e.name,
			Mode:    e.mode,
			Uid:     e.uid,
			Gid:     e.uid, // nonroot's own entries are 65532:65532, the rest root's
			ModTime: mtime,
			Format:  tar.FormatPAX,
		}
		if e.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if e.xattr != nil {
			h.PAXRecords = map[string]string{xattrCapability: string(e.xattr)}
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("%s: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Reference is a parsed image name: docker.io/dnsdiag/coredns:dev for
// "dnsdiag/coredns:dev".
type Reference struct {
	Full string // registry/repository:tag, what containerd and podman name it
	Tag  string
	Repo string // as given, without the tag: docker's RepoTags keep it so
}

// ParseReference accepts [registry/]repository:tag (no digest). A name
// with no registry is Docker Hub's, as docker would take it.
func ParseReference(ref string) (Reference, error) {
	var r Reference
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return r, fmt.Errorf("image name %q: want repository:tag", ref)
	}
	r.Repo, r.Tag = ref[:i], ref[i+1:]
	if r.Repo == "" || r.Tag == "" || strings.Contains(ref, "@") || r.Repo != strings.ToLower(r.Repo) {
		return r, fmt.Errorf("image name %q: want a lower-case repository:tag", ref)
	}
	first, _, hasSlash := strings.Cut(r.Repo, "/")
	switch {
	case !hasSlash:
		r.Full = "docker.io/library/" + r.Repo
	case strings.ContainsAny(first, ".:") || first == "localhost":
		r.Full = r.Repo
	default:
		r.Full = "docker.io/" + r.Repo
	}
	r.Full += ":" + r.Tag
	return r, nil
}

// WriteArchive writes img as one tar that is at once an OCI image layout
// (oci-layout, index.json, blobs/sha256/...) and a docker save archive
// (manifest.json pointing into the same blobs), as `docker save` does
// since Docker 25. index.json names the image in both annotations that
// containerd, podman and Docker read.
func WriteArchive(w io.Writer, img v1.Image, ref string) error {
	r, err := ParseReference(ref)
	if err != nil {
		return err
	}
	manifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	mdigest, msize, err := v1.SHA256(bytes.NewReader(manifest))
	if err != nil {
		return err
	}
	mt, err := img.MediaType()
	if err != nil {
		return err
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}

	index := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: mt,
			Digest:    mdigest,
			Size:      msize,
			Annotations: map[string]string{
				"io.containerd.image.name":          r.Full,
				"org.opencontainers.image.ref.name": r.Full,
			},
			Platform: &v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant},
		}},
	}
	indexJSON, err := jsonBytes(index)
	if err != nil {
		return err
	}
	type dockerManifest struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	dm := []dockerManifest{{Config: blobPath(cfgName), RepoTags: []string{r.Repo + ":" + r.Tag}}}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		dm[0].Layers = append(dm[0].Layers, blobPath(d))
	}
	dmJSON, err := jsonBytes(dm)
	if err != nil {
		return err
	}

	tw := tar.NewWriter(w)
	mtime := cf.Created.Time
	file := func(name string, data []byte) error {
		return writeFile(tw, name, int64(len(data)), bytes.NewReader(data), mtime)
	}
	dirs := []string{"blobs/", "blobs/sha256/"}
	if err := file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
	}
	if err := file(blobPath(cfgName), config); err != nil {
		return err
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		size, err := l.Size()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		err = writeFile(tw, blobPath(d), size, rc, mtime)
		rc.Close()
		if err != nil {
			return err
		}
	}
	if err := file(blobPath(mdigest), manifest); err != nil {
		return err
	}
	if err := file("index.json", indexJSON); err != nil {
		return err
	}
	if err := file("manifest.json", dmJSON); err != nil {
		return err
	}
	return tw.Close()
}

func blobPath(h v1.Hash) string { return path.Join("blobs", h.Algorithm, h.Hex) }

func writeFile(tw *tar.Writer, name string, size int64, r io.Reader, mtime time.Time) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
		return err
	}
	n, err := io.Copy(tw, r)
	if err == nil && n != size {
		err = errors.New("short blob")
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func jsonBytes(v any) ([]byte, error) { return json.Marshal(v) }
