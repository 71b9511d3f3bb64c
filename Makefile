# forge-supervisor — build, test, demo, bench.
GO      ?= go
BIN     := bin/forge-supervisor
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
# Fully static: libseccomp is linked from Debian's libseccomp.a.
LDFLAGS := -s -w -X main.version=$(VERSION) -linkmode external -extldflags "-static"
FUZZTIME ?=

.PHONY: deps build test unit fuzz vet demo bench clean

# The Debian packages (.ci/packages) and Go modules that building, testing
# and the demo need, installed only when missing; see .ci/deps. SKIP_DEPS=1
# skips the step (a machine that is not Debian-like, set up by hand).
deps:
ifeq ($(SKIP_DEPS),)
	@./.ci/deps
endif

build: | $(if $(SKIP_DEPS),,deps)
	CGO_ENABLED=1 $(GO) build -trimpath -tags osusergo,netgo -ldflags '$(LDFLAGS)' -o $(BIN) .

vet:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Every test: unit, namespace end-to-end (root), escape suite, short fuzz.
test: deps build vet unit fuzz

unit:
	FORGE_SUPERVISOR_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 30m ./...

# A short run of every fuzz target (package:target:executions). Budgets are
# execution counts, not durations: with a -fuzztime duration, Go 1.26's
# fuzz coordinator can fail a healthy target with "context deadline
# exceeded" at the deadline (golang/go#75804, fixed in Go 1.27). Each count
# is a few seconds on a 2-core machine. For a long run of every target:
# make fuzz FUZZTIME=10m (durations are fine when nobody waits on them).
FUZZ_TARGETS := ./conn:FuzzParseClientHello:100000x ./conn:FuzzParseHTTPRequest:100000x ./conn:FuzzParseHTTPResponse:100000x \
	./conn:FuzzSniff:50000x ./conn:FuzzSOCKS5:100000x ./stages:FuzzProxyHead:20000x \
	./conn:FuzzHTTPGate:40000x ./conn:FuzzAnswerTracker:40000x ./policy:FuzzParse:20000x ./policy:FuzzNormalizeName:50000x \
	./policy:FuzzRegoDifferential:1500x ./dns:FuzzHandler:20000x ./dns:FuzzParseAnswer:30000x \
	./dns:FuzzCachedAnswer:30000x ./dns:FuzzParseUpstreams:30000x \
	./jail:FuzzParseProfile:50000x .:FuzzParseConfig:8000x ./deploy:FuzzKubernetesPolicy:10000x \
	./forgeyaml:FuzzParse:5000x \
	./sockdiag:FuzzReadMessages:50000x ./ops:FuzzSuggest:3000x ./procid:FuzzParseStat:50000x \
	./kverdict:FuzzParseSegment:100000x ./kverdict:FuzzParseNetlink:100000x \
	./nft:FuzzParseLogMessage:100000x \
	./actors:FuzzRelayLines:10000x

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; fn=$${rest%%:*}; budget=$${rest#*:}; \
		[ -z "$(FUZZTIME)" ] || budget=$(FUZZTIME); \
		echo "fuzz $$pkg $$fn ($$budget)"; \
		$(GO) test -run='^$$' -fuzz="^$$fn\$$" -fuzztime=$$budget $$pkg; \
	done

demo: deps build
	FORGE_SUPERVISOR_BIN=$(CURDIR)/$(BIN) ./tests/demo/demo.sh

# Every benchmark, each path measured side by side in one run; the output
# is what docs/benchmarks.md quotes, and the figures of the engine and DNS
# comparisons are drawn into docs/bench.png (bench/plot). Takes a few
# minutes; needs root.
BENCH_RESULTS := bin/bench-results.jsonl
bench: build
	@mkdir -p bin; rm -f $(BENCH_RESULTS)
	FORGE_BENCH_RESULTS=$(CURDIR)/$(BENCH_RESULTS) $(GO) test -run='^$$' -bench='^BenchmarkConnectFirstByte$$' -benchtime=2000x ./bench/
	FORGE_BENCH_RESULTS=$(CURDIR)/$(BENCH_RESULTS) $(GO) test -run='^$$' -bench='ConnectConcurrency' -benchtime=200x ./bench/
	FORGE_BENCH_RESULTS=$(CURDIR)/$(BENCH_RESULTS) $(GO) test -run='^$$' -bench='BulkThroughput' -benchtime=20x ./bench/
	$(GO) test -run='^$$' -bench='^BenchmarkFastPath(ConnectFirstByte|ClientHello)$$' -benchtime=2000x ./bench/
	$(GO) test -run='^$$' -bench='^BenchmarkFastPath(Concurrent|Bulk|CPU|CPUTLS)$$' -benchtime=10x ./bench/
	$(GO) test -run='^$$' -bench='^BenchmarkFastPathIdleMemory$$' -benchtime=1x ./bench/
	FORGE_BENCH_RESULTS=$(CURDIR)/$(BENCH_RESULTS) $(GO) test -run='^$$' -bench='DNSComparison' -benchtime=2000x ./bench/
	$(GO) test -run='^$$' -bench='Policy|Rego' -benchmem ./bench/
	$(GO) test -run='^$$' -bench='Install' -benchtime=300x ./nft/
	$(GO) test -run='^$$' -bench='StartToExec' -benchtime=200x ./actors/
	$(GO) test -run='^$$' -bench='ParseClientHello|Sniff' -benchmem ./conn/
	$(GO) run ./bench/plot -in $(BENCH_RESULTS) -out docs/bench.png

clean:
	rm -rf bin
