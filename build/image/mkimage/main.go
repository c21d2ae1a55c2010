// Command mkimage writes the coredns-dnsdiag image archive from the static
// linux coredns and dnsdiag-analyser binaries; `make image` runs it on the
// two `make build` wrote. No container engine is needed.
//
//	go run ./build/image/mkimage -binary coredns -analyser dnsdiag-analyser \
//		-version dnsdiag-$(git describe --always --dirty) -o coredns-dnsdiag.tar
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/dnsdiag/dnsdiag/build/image"
)

func main() {
	var (
		o       image.Options
		out     = flag.String("o", "coredns-dnsdiag.tar", "archive to write")
		ref     = flag.String("name", "dnsdiag/coredns:dev", "image name, repository:tag")
		created = flag.String("created", os.Getenv("SOURCE_DATE_EPOCH"), "image time, Unix seconds (default $SOURCE_DATE_EPOCH, else the epoch)")
	)
	flag.StringVar(&o.Binary, "binary", "coredns", "static linux coredns binary (make build)")
	flag.StringVar(&o.Analyser, "analyser", "dnsdiag-analyser", "static linux dnsdiag-analyser binary of the same build (make build), installed as "+image.Analyser)
	flag.StringVar(&o.Version, "version", "", "the version stamped in the binary (-X coremain.GitCommit=...), required")
	flag.StringVar(&o.CACerts, "cacerts", "", "CA bundle to install at /"+image.CACertPath+" (none if empty)")
	flag.StringVar(&o.Source, "source", "", "org.opencontainers.image.source label")
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if *created != "" {
		s, err := strconv.ParseInt(*created, 10, 64)
		if err != nil {
			fail(fmt.Errorf("-created: %w", err))
		}
		o.Created = time.Unix(s, 0)
	}

	img, bin, err := image.Build(o)
	if err != nil {
		fail(err)
	}
	tmp := *out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		fail(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	err = image.WriteArchive(w, img, *ref)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, *out)
	}
	if err != nil {
		os.Remove(tmp)
		fail(err)
	}
	d, _ := img.Digest()
	fmt.Printf("%s: %s %s/%s %s (%s)\n", *out, *ref, bin.GOOS, bin.GOARCH, bin.Version, d)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "mkimage:", err)
	os.Exit(1)
}
