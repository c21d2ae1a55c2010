# dnsdiag: a custom CoreDNS build with the dnsdiag plugin.
#
#   make run    build ./coredns and serve the demo on 127.0.0.1:1053
#   make test   every test: unit (with -race), build drift checks, each fuzz target
#               for a fixed number of runs (TESTFUZZ), e2e against ./coredns, and again against a -race build
#   make bench  overhead against the same binary without dnsdiag (see README)
#   make image  coredns-dnsdiag.tar, the container image of ./coredns and ./dnsdiag-analyser (build/kubernetes/README.md)

GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/coredns/coredns/coremain.GitCommit=dnsdiag-$(VERSION)
GOBUILD := CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags '$(LDFLAGS)'

.PHONY: build run test unit e2e e2e-tools e2e-race vet clean image bench stress fuzz fuzz-corpus

# build regenerates build/coredns/zplugin.go (imports and directive order)
# from plugin.cfg first, as CoreDNS's own Makefile does. It also writes
# ./dnsdiag-analyser, dnsdiag for a stock CoreDNS's dnstap stream
# (build/analyser/README.md).
build:
	$(GO) generate ./build/coredns
	$(GOBUILD) -o coredns ./build/coredns
	$(GOBUILD) -o dnsdiag-analyser ./build/analyser

run: build
	./coredns -conf corefile-examples/demo.Corefile

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt needed'; exit 1; }

unit:
	$(GO) test -race -count=1 ./plugin/... ./build/... ./bench/...

# e2e-tools: what the e2e tests run besides ./coredns. podman and skopeo load
# and inspect the image archive, dig (bind9-dnsutils) resends as BIND's clients
# do for e2e/hints_test.go: Debian packages, installed when missing;
# kubectl renders the kustomizations (it ships on this machine kind).
e2e-tools:
	@command -v podman >/dev/null 2>&1 && command -v skopeo >/dev/null 2>&1 && command -v dig >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman skopeo bind9-dnsutils; }
	@command -v kubectl >/dev/null 2>&1 || { echo 'e2e needs kubectl (kubectl kustomize) on PATH'; exit 1; }

e2e: build e2e-tools
	COREDNS_BINARY=$(CURDIR)/coredns $(GO) test -count=1 -timeout 20m ./e2e/...

# e2e-race: the e2e suite again, against ./coredns-race, the same binary
# built with the race detector, so that a race anywhere on dnsdiag's paths
# through the real server (reloads, prefetch, serve_stale, shutdown) fails.
# Two tests run only in `make e2e`: TestOverload, whose RSS and throughput
# bounds are for the real binary, not one 5-10x heavier; TestK8sKubeSystem,
# which reloads the kubernetes plugin, whose klog.SetLogger races with
# client-go's reflectors in CoreDNS v1.15.0 itself.
e2e-race: e2e-tools
	CGO_ENABLED=1 $(GO) build -race -trimpath -buildvcs=false -ldflags '$(LDFLAGS)' -o coredns-race ./build/coredns
	COREDNS_BINARY=$(CURDIR)/coredns-race $(GO) test -count=1 -timeout 20m -skip '^(TestOverload|TestK8sKubeSystem)$$' ./e2e/...

# monitoring-tools: Debian's prometheus package (prometheus and promtool),
# installed when missing, with service starts denied (policy-rc.d) so that
# its postinst leaves no prometheus running on :9090: the tests start their
# own, on a free loopback port with a temporary directory.
monitoring-tools:
	@command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || { \
		apt-get update -qq; policy=; \
		if [ ! -e /usr/sbin/policy-rc.d ]; then policy=/usr/sbin/policy-rc.d; printf '#!/bin/sh\nexit 101\n' >$$policy; chmod +x $$policy; fi; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; rc=$$?; \
		if [ -n "$$policy" ]; then rm -f $$policy; fi; exit $$rc; }

# monitoring: promtool checks build/monitoring's alert rules and runs their
# unit tests (each alert fires, and does not); e2e/monitoring_test.go
# evaluates them and the dashboard against a real Prometheus scraping
# ./coredns. monitoring-rule regenerates the PrometheusRule manifest from
# the rules file.
monitoring: monitoring-tools
	promtool check rules build/monitoring/dnsdiag-alerts.rules.yml
	promtool test rules build/monitoring/dnsdiag-alerts.test.yml

monitoring-rule:
	$(GO) run ./build/monitoring/mkrule build/monitoring/dnsdiag-alerts.prometheusrule.yaml

.PHONY: monitoring monitoring-tools monitoring-rule
e2e-tools: monitoring-tools
test: monitoring

# Each fuzz target also runs on every `make test`, for a number of runs
# (some 8 s of each on this machine kind), not for a duration: with
# -fuzztime as a duration Go 1.26's fuzzing coordinator can fail a clean run
# with a bare "context deadline exceeded" when the time is up
# (golang/go#75804, fixed in Go 1.27), and it did here.
TESTFUZZ ?= plugin/dnsdiag:FuzzTapSink:1500x plugin/dnsdiag:FuzzSessionLine:4000x plugin/dnsdiag:FuzzRawMsgJSON:7000x \
	plugin/dnsdiag:FuzzAppendJSONString:12000x plugin/hints:FuzzDetector:40000x plugin/selfstat:FuzzNetUDP:30000x \
	plugin/selfstat:FuzzRead:3000x plugin/dnsdiag:FuzzAnalyserFrame:4000x
test: vet unit
	$(MAKE) --no-print-directory fuzz FUZZTARGETS="$(TESTFUZZ)"
	$(MAKE) --no-print-directory e2e
	$(MAKE) --no-print-directory e2e-race

# bench: dnsdiag against plain CoreDNS and dnstap streaming, interleaved rounds
# (bench/README.md), and dnsdiag-analyser's sessions/s on one core (ANALYSER=0
# skips it). Knobs: ROUNDS DURATION LATDURATION LATQPS MEMDURATION
# VARIANTS MICRO ... (bench/run/main.go). Writes bench/results/latest.md.
bench: build
	@command -v dnsperf >/dev/null 2>&1 || { apt-get update && apt-get install -y dnsperf; }
	@command -v taskset >/dev/null 2>&1 || { apt-get update && apt-get install -y util-linux; }
	COREDNS=$(CURDIR)/coredns $(GO) run ./bench/run

# stress: the overload test (e2e/overload_test.go) with a longer load:
# a UDP flood beyond saturation, a slow and a silent upstream, the log pipe
# unread then read slowly. STRESS_SECONDS of load (default 20), flood at
# STRESS_QPS queries/s (default 60000). `make test` runs it for 6 s.
STRESS_SECONDS ?= 20
STRESS_QPS     ?= 60000
stress: build
	COREDNS_BINARY=$(CURDIR)/coredns DNSDIAG_OVERLOAD_SECONDS=$(STRESS_SECONDS) DNSDIAG_OVERLOAD_QPS=$(STRESS_QPS) \
		$(GO) test -count=1 -timeout 5m -run '^TestOverload$$' -v ./e2e/

# fuzz: each fuzz target (package:Target) for FUZZTIME, or for the budget
# a package:Target:budget entry gives (a duration, or Nx runs); crashers land in
# <package>/testdata/fuzz/<Target>/ (commit them: they become regression
# tests). `make unit` runs the seeds and that corpus as regular tests;
# `make test` also fuzzes each target for its TESTFUZZ runs. The inputs fuzzing
# finds interesting stay in Go's cache; `make fuzz-corpus` copies them next
# to the crashers, to commit with them.
FUZZTIME    ?= 20s
FUZZTARGETS ?= $(foreach t,$(TESTFUZZ),$(word 1,$(subst :, ,$(t))):$(word 2,$(subst :, ,$(t))))
fuzz:
	@set -e; for pf in $(FUZZTARGETS); do \
		p=$${pf%%:*}; f=$${pf#*:}; t=$(FUZZTIME); \
		case $$f in *:*) t=$${f#*:}; f=$${f%%:*};; esac; \
		echo "== $$p $$f ($$t)"; \
		$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $$t ./$$p/; \
	done

fuzz-corpus:
	@set -e; for pf in $(FUZZTARGETS); do \
		p=$${pf%%:*}; f=$${pf#*:}; \
		cache="$$($(GO) env GOCACHE)/fuzz/github.com/dnsdiag/dnsdiag/$$p"; \
		mkdir -p $$p/testdata/fuzz/$$f; \
		if [ -d "$$cache/$$f" ]; then cp -n "$$cache/$$f"/* $$p/testdata/fuzz/$$f/; fi; \
		echo "$$p $$f: $$(ls $$p/testdata/fuzz/$$f | wc -l) inputs"; \
	done

# The OCI image archive of the two binaries `make build` wrote (CGO off,
# -trimpath, stamped): /coredns, and /dnsdiag-analyser for the analyser's
# Deployment (build/kubernetes/analyser). Made without a container engine:
# IMAGE names it, CA certificates come from this machine. Another platform:
# make image GOOS=linux GOARCH=arm64.
IMAGE ?= dnsdiag/coredns:dev
image: build
	GOOS= GOARCH= $(GO) run ./build/image/mkimage -binary coredns -analyser dnsdiag-analyser -version dnsdiag-$(VERSION) -name $(IMAGE) \
		-created "$$(git log -1 --format=%ct 2>/dev/null || echo 0)" \
		$$(test -f /etc/ssl/certs/ca-certificates.crt && echo -cacerts /etc/ssl/certs/ca-certificates.crt) \
		-o coredns-dnsdiag.tar

clean:
	rm -f coredns coredns-race dnsdiag-analyser coredns-dnsdiag.tar
