# forge-supervisor — build, test, demo, bench.
GO      ?= go
BIN     := bin/forge-supervisor
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
# Fully static: libseccomp is linked from Debian's libseccomp.a.
LDFLAGS := -s -w -X main.version=$(VERSION) -linkmode external -extldflags "-static"
FUZZTIME ?= 10s

.PHONY: build test unit fuzz vet demo bench clean

build:
	CGO_ENABLED=1 $(GO) build -trimpath -tags osusergo,netgo -ldflags '$(LDFLAGS)' -o $(BIN) .

vet:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Every test: unit, namespace end-to-end (root), escape suite, short fuzz.
test: build vet unit fuzz

unit:
	FORGE_SUPERVISOR_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 30m ./...

# A short run of every fuzz target (package:target). Longer runs:
# make fuzz FUZZTIME=10m
FUZZ_TARGETS := ./conn:FuzzParseClientHello ./conn:FuzzParseHTTPRequest ./conn:FuzzSniff \
	./conn:FuzzSOCKS5 ./stages:FuzzProxyHead ./policy:FuzzParse ./policy:FuzzNormalizeName \
	./dns:FuzzHandler ./jail:FuzzParseProfile .:FuzzParseConfig ./deploy:FuzzKubernetesPolicy \
	./policy:FuzzRegoDifferential ./stages:FuzzHTTPGate ./dns:FuzzParseAnswer

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
		$(GO) test -run='^$$' -fuzz="^$$fn\$$" -fuzztime=$(FUZZTIME) $$pkg; \
	done

demo: build
	FORGE_SUPERVISOR_BIN=$(CURDIR)/$(BIN) ./tests/demo/demo.sh

# Every benchmark, each path measured side by side in one run; the output
# is what docs/benchmarks.md quotes. Takes a few minutes; needs root.
bench: build
	$(GO) test -run='^$$' -bench='ConnectFirstByte' -benchtime=2000x ./bench/
	$(GO) test -run='^$$' -bench='BulkThroughput' -benchtime=20x ./bench/
	$(GO) test -run='^$$' -bench='DNSComparison' -benchtime=2000x ./bench/
	$(GO) test -run='^$$' -bench='Policy|Rego' -benchmem ./bench/
	$(GO) test -run='^$$' -bench='Install' -benchtime=300x ./nft/
	$(GO) test -run='^$$' -bench='StartToExec' -benchtime=200x ./actors/
	$(GO) test -run='^$$' -bench='ParseClientHello|Sniff' -benchmem ./conn/

clean:
	rm -rf bin
