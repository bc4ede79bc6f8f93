# roster-sidecar — everyday commands. See README.md.
SHELL := /bin/bash
GO      ?= go
BIN     ?= roster-sidecar
# A count, not a duration: with a duration, Go 1.26's fuzz coordinator can
# fail a target with "context deadline exceeded" and no crasher when the
# time runs out (golang/go#75804). 200,000 inputs take 7-15 s a target here.
FUZZTIME ?= 200000x
# staticcheck, pinned; `go run` fetches it through the module proxy.
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build test lint unit e2e fuzz demo servers clean check-deploy browser-test bench

all: build

build:
	$(GO) build -o $(BIN) ./cmd/roster-sidecar

## test: lint (gofmt, vet, staticcheck), unit tests with -race, short fuzz runs, the deploy/ checks, then the e2e suite on
## real Prosody and ejabberd, and the browser test (Converse.js in headless Chromium).
test: lint unit fuzz check-deploy e2e browser-test

lint:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/...
	$(GO) vet -tags 'e2e browser' ./e2e/...
	$(STATICCHECK) ./...
	$(STATICCHECK) -tags e2e ./e2e/...
	$(STATICCHECK) -tags 'e2e browser' ./e2e/...

unit:
	$(GO) test -race -count=1 ./...

## fuzz: every fuzz target for FUZZTIME inputs each (corpus kept in testdata/fuzz).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

## e2e: the end-to-end suite; needs Prosody 13, Prosody 0.12 and ejabberd 24.12 (make servers).
e2e:
	$(GO) test -tags e2e -count=1 -timeout 30m -v ./e2e/ 2>&1 | tee e2e.out | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)'; \
	rc=$${PIPESTATUS[0]}; if [ $$rc -ne 0 ]; then \
	  echo "== why (from e2e.out, the full log):"; awk -f e2e/failures.awk e2e.out e2e.out | tail -n 400; fi; exit $$rc

## check-deploy: validate deploy/: the container build (static binary), the systemd unit
## (systemd-analyze verify + security), the Kubernetes manifests (k8s.io/api types).
check-deploy:
	GO=$(GO) bash deploy/check-deploy.sh

## browser-test: Converse.js in headless Chromium sees a refresh without a reload, and a new
## friend online (installs Debian's chromium and the npm packages of e2e/browser; runs on
## Prosody with the helper and on ejabberd in API mode: make servers).
browser-test:
	bash e2e/browser/install.sh
	$(GO) test -tags 'e2e browser' -count=1 -timeout 10m -v -run '^TestBrowser' ./e2e/

## bench: the sidecar against each server's own limit on real Prosody and ejabberd (about 50 minutes
## on 2 cores, most of it the scaling curve's 5,000-contact points; -scale= skips them; the program
## in bench/): prints the tables, the full log goes to bench.out, the report to docs/BENCHMARKS.md
## (text outside its generated markers is kept) and the chart to docs/bench-scaling.svg. Other sizes and
## settings: BENCH_ARGS, the flags of `go run ./bench -help` (those of the former e2e TestBench
## without their "bench." prefix), e.g. make bench BENCH_ARGS='-users=5000 -contacts=50 -rounds=5'.
BENCH_ARGS ?= -users=1000 -contacts=20 -servers=prosody,ejabberd
bench:
	$(GO) run ./bench $(BENCH_ARGS) -out=docs/BENCHMARKS.md -chart=docs/bench-scaling.svg 2>&1 | tee bench.out | grep -vE '^ {8}' ; exit $${PIPESTATUS[0]}

## servers: install Prosody 13 + mod_privilege and ejabberd 24.12 from Debian packages, and unpack
## bookworm's Prosody 0.12 + prosody-modules into /opt/roster-sidecar-e2e (root).
servers:
	bash deploy/install-servers.sh

## demo: Prosody + example backend + roster-sidecar on loopback; one refresh; Ctrl-C stops.
demo:
	bash deploy/demo/demo.sh

clean:
	rm -f $(BIN) e2e.out bench.out
