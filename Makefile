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

fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzParseClientHello$$' -fuzztime=$(FUZZTIME) ./conn
	$(GO) test -run='^$$' -fuzz='^FuzzParseHTTPRequest$$' -fuzztime=$(FUZZTIME) ./conn
	$(GO) test -run='^$$' -fuzz='^FuzzSniff$$' -fuzztime=$(FUZZTIME) ./conn
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./policy
	$(GO) test -run='^$$' -fuzz='^FuzzHandler$$' -fuzztime=$(FUZZTIME) ./dns

demo: build
	FORGE_SUPERVISOR_BIN=$(CURDIR)/$(BIN) ./tests/demo/demo.sh

bench: build
	FORGE_SUPERVISOR_BIN=$(CURDIR)/$(BIN) $(GO) test -run='^$$' -bench=. -benchtime=2000x -timeout 30m ./bench/

clean:
	rm -rf bin
