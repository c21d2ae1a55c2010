# dnsdiag: a custom CoreDNS build with the dnsdiag plugin.
#
#   make run    build ./coredns and serve the demo on 127.0.0.1:1053
#   make test   every test: unit (with -race), build drift checks, e2e against ./coredns
#   make bench  overhead against the same binary without dnsdiag (see README)

GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/coredns/coredns/coremain.GitCommit=dnsdiag-$(VERSION)
GOBUILD := CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags '$(LDFLAGS)'

.PHONY: build run test unit e2e vet clean

build:
	$(GOBUILD) -o coredns ./build/coredns

run: build
	./coredns -conf corefile-examples/demo.Corefile

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt needed'; exit 1; }

unit:
	$(GO) test -race -count=1 ./plugin/... ./build/...

e2e: build
	COREDNS_BINARY=$(CURDIR)/coredns $(GO) test -count=1 -timeout 20m ./e2e/...

test: vet unit e2e

clean:
	rm -f coredns coredns-dnsdiag.tar
