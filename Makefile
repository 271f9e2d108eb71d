# Rafting: the two commands are `make run` (a local 3-node cluster) and `make test`.
GO      ?= go
BIN     ?= bin
FUZZTIME ?= 5000x
export GOFLAGS := -buildvcs=false

.PHONY: run build test test-unit fuzz vet bench fmt clean chaos chaos-quick

## run: start a 3-node dev cluster on 127.0.0.1:7070/7170/7270 (data in ./.rafting-dev)
run: build
	./$(BIN)/rafting dev

## build: build the rafting binary into ./bin, its version (VERSION, else git describe) and commit
## stamped in (GET /v1/cluster, rafting cluster, rafting_build_info)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X github.com/rafting/rafting/server.version=$(VERSION) -X github.com/rafting/rafting/server.commit=$(COMMIT)
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/rafting ./cmd/rafting

## test: everything CI runs: vet, race tests, examples and benchmarks build, brief fuzzing, the
## fault campaign in brief (chaos-quick)
test: vet test-unit fuzz
	$(GO) build ./examples/... ./cmd/...
	cd benchmarks && $(GO) build ./... && $(GO) vet ./... && $(GO) test -count=1 -run '^$$' ./...
	$(MAKE) chaos-quick

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	cd contrib/grpc && $(GO) vet ./...

## test-unit: the race tests of the core module and of contrib/grpc (a module of its own: gRPC stays out of the core)
test-unit:
	$(GO) test -race -count=1 -timeout 20m ./...
	cd contrib/grpc && $(GO) test -race -count=1 -timeout 10m ./...

## fuzz: run every fuzz target briefly (FUZZTIME each); seeds also run in test-unit
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

## chaos: the fault campaign (docs/RELIABILITY.md): SCENARIOS (200) seeded scenarios of real processes under
## faults, every checker, then the negative controls (<= 60 min); SEED=n reruns that scenario alone
## (with PHASE=6s for one of chaos-quick's), CONTROL=name SEED=n one negative control
SCENARIOS ?= 200
PHASE ?= 8s
ifdef SEED
ifdef CONTROL
CHAOS_RUN = -chaos.seed $(SEED) -chaos.scenarios 0 -chaos.controls $(CONTROL)
else
CHAOS_RUN = -chaos.seed $(SEED) -chaos.scenarios 1 -chaos.controls none
endif
else
CHAOS_RUN = -chaos.scenarios $(SCENARIOS)
endif
chaos:
	$(GO) test -c -o $(BIN)/chaos.test ./internal/chaos
	./$(BIN)/chaos.test -test.run '^(TestChaos|TestNodesJoinAndLeaveUnderFaults)$$' -test.timeout 90m -test.parallel 2 -chaos -chaos.phase $(PHASE) $(CHAOS_RUN)

## chaos-quick: the campaign in brief (<= 3 min): a few scenarios from a new seed each run, and the controls
## (not yet in `test`: docs/RELIABILITY.md says why)
chaos-quick:
	$(GO) test -c -o $(BIN)/chaos.test ./internal/chaos
	./$(BIN)/chaos.test -test.run '^TestChaos$$' -test.timeout 10m -test.parallel 2 -chaos -chaos.scenarios 4 -chaos.phase 6s

## bench: Rafting's own benchmarks of benchmarks/RESULTS.md (the comparison with peers is bench-peers)
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./balancer/
	$(GO) test -run '^$$' -bench Propagation -benchtime 200x ./sdk/
	$(GO) test -run '^$$' -bench IdleFarm -benchtime 1x ./sdk/
	cd benchmarks && $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 120m . ./failover/ ./noisy/ ./tenants/ ./attacks/ ./scale/

## bench-peers: Rafting vs etcd vs ZooKeeper side by side (<= 20 min): rewrites the peers section of
## benchmarks/RESULTS.md and benchmarks/peers-plots/ (installs the peers from Debian when missing)
.PHONY: bench-peers bench-peers-quick
bench-peers:
	cd benchmarks && $(GO) test -run '^$$' -bench Peers -benchtime 1x -timeout 40m ./peers/

## bench-peers-quick: the same in quick mode (<= 3 min), into benchmarks/peers-quick/ (RESULTS.md untouched)
bench-peers-quick:
	cd benchmarks && $(GO) test -run '^$$' -bench Peers -benchtime 1x -timeout 15m ./peers/ -args -quick

## ui-screenshots: rewrite docs/ui/*.png, the dashboard's main views, taken by server/ui's TestDashboard
## in a headless chromium (installed by scripts/install-chromium.sh when missing)
.PHONY: ui-screenshots
ui-screenshots:
	$(GO) test -count=1 -run '^TestDashboard$$' ./server/ui -ui.screenshots $(CURDIR)/docs/ui

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN)
