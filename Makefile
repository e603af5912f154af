# Development tasks. `make test` is the test command: it starts the services
# the tests need, then vets, format-checks, lints and tests every package.
#
#   make test       services + vet + gofmt check + staticcheck + go test -race,
#                   with the OpenSearch node up (started and stopped around
#                   the tests unless it was already running)
#   make build      the redstream binary, ./redstream, stamped with the git
#                   revision (VERSION=v1.2.3 sets the version it prints)
#   make test-es    the same for ./elastic/... (needs ELASTICSEARCH_URL)
#   make services   ensure PostgreSQL, MariaDB, Redis and the Redis Cluster answer
#                   (scripts/services.sh)
#   make cluster    ensure the local Redis Cluster answers; make cluster
#                   CLUSTER=stop|status stops it or reports on it
#                   (scripts/redis-cluster.sh)
#   make sentinel   ensure the local Redis Sentinel deployment (a master, its
#                   replica, a sentinel) answers, healthy; make sentinel
#                   SENTINEL=stop|status stops it or reports on it
#                   (scripts/redis-sentinel.sh)
#   make opensearch start the OpenSearch node of the tests unless it is up
#                   (building its launcher in opensearch/ with Maven first);
#                   prints OPENSEARCH_URL=http://127.0.0.1:PORT last.
#                   make opensearch-stop stops it (scripts/opensearch.sh)
#   make fuzz       every fuzz target for FUZZTIME each (seeds in testdata/fuzz)
#   make chaos      the long chaos run (make test runs a short one); see
#                   docs/RELIABILITY.md
#   make bench      every benchmark BENCH_COUNT times, medians by benchstat
#                   (raw output in bench.out), then the bench command's
#                   scenarios BENCH_RUNS times (bench-figures.out);
#                   BENCH_SHORT=1 for a quick pass. See docs/BENCHMARKS.md
#   make fmt | vet | lint

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

GO ?= go
# staticcheck 2026.2.2, the first release line that supports Go 1.26.
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK = $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

TEST_FLAGS ?= -race -count=1 -timeout 20m

# Where the tests find their servers (see internal/testenv).
DATABASE_URL ?= postgres://redstream:redstream@127.0.0.1:5432/redstream_test?sslmode=disable
REDIS_URL ?= redis://127.0.0.1:6379/0
# The MariaDB of the MySQL tests; each test creates a database of its own.
MYSQL_URL ?= mysql://redstream:redstream@127.0.0.1:3306/redstream_test
# The three masters scripts/redis-cluster.sh starts for the cluster tests.
REDIS_CLUSTER_PORTS ?= 30001 30002 30003
comma := ,
REDIS_CLUSTER_ADDRS ?= $(subst $() ,$(comma),$(addprefix 127.0.0.1:,$(strip $(REDIS_CLUSTER_PORTS))))
export DATABASE_URL REDIS_URL MYSQL_URL REDIS_CLUSTER_PORTS REDIS_CLUSTER_ADDRS
# The sentinel and the two data nodes scripts/redis-sentinel.sh starts for
# the Sentinel tests; a failover swaps which node is the master.
REDIS_SENTINEL_PORT ?= 30126
REDIS_SENTINEL_NODE_PORTS ?= 30101 30102
REDIS_SENTINEL_MASTER ?= redstream
REDIS_SENTINEL_ADDRS ?= 127.0.0.1:$(strip $(REDIS_SENTINEL_PORT))
export REDIS_SENTINEL_PORT REDIS_SENTINEL_NODE_PORTS REDIS_SENTINEL_MASTER REDIS_SENTINEL_ADDRS
# make test-es reads ELASTICSEARCH_URL from the environment or the command
# line (make test-es ELASTICSEARCH_URL=...), which make passes on by itself.

.PHONY: build test test-es services cluster sentinel opensearch opensearch-stop vet fmt fmt-check lint bench fuzz demo chaos

test: services vet fmt-check lint
	bash scripts/opensearch.sh run $(GO) test $(TEST_FLAGS) ./...

# -buildvcs=auto records the git revision (redstream version prints it)
# even when GOFLAGS says -buildvcs=false.
VERSION ?=
build:
	$(GO) build -buildvcs=auto $(if $(VERSION),-ldflags "-X main.version=$(VERSION)") -o redstream ./cmd/redstream

test-es: services
	@if [[ -z "$${ELASTICSEARCH_URL:-}" ]]; then \
		echo "test-es: set ELASTICSEARCH_URL to an Elasticsearch server, e.g." >&2; \
		echo "  make test-es ELASTICSEARCH_URL=http://127.0.0.1:9200" >&2; \
		exit 1; \
	fi
	$(GO) vet ./elastic/...
	@$(MAKE) --no-print-directory fmt-check FMT_DIRS=./elastic
	$(STATICCHECK) ./elastic/...
	bash scripts/opensearch.sh run $(GO) test $(TEST_FLAGS) ./elastic/...

services:
	@bash scripts/services.sh

CLUSTER ?= start

cluster:
	@bash scripts/redis-cluster.sh $(CLUSTER)

SENTINEL ?= start

sentinel:
	@bash scripts/redis-sentinel.sh $(SENTINEL)

opensearch:
	@bash scripts/opensearch.sh start

opensearch-stop:
	@bash scripts/opensearch.sh stop

vet:
	$(GO) vet ./...

FMT_DIRS ?= .

fmt:
	gofmt -w $(FMT_DIRS)

fmt-check:
	@files="$$(gofmt -l $(FMT_DIRS))"; \
	if [[ -n "$$files" ]]; then \
		echo "gofmt: these files need formatting (run make fmt):" >&2; \
		echo "$$files" >&2; \
		exit 1; \
	fi

lint:
	$(STATICCHECK) ./...

# make bench: the Go benchmarks matching BENCH, BENCH_COUNT times each
# for BENCH_TIME, then the scenarios BENCH_SCENARIOS of the bench command
# (go run ./internal/bench), BENCH_RUNS runs each, with BENCH_FLAGS.
# The Go benchmarks run as BENCH_COUNT passes of one count each, so that
# the variants of a benchmark (delay=keep and delay=ack, ...) run side by
# side in every pass rather than one after the other's five counts; then
# benchstat prints the medians, and the keep/ack variants side by side.
# BENCH=none skips the Go benchmarks, BENCH_SCENARIOS=none the command.
# The engines scenario (in all) runs with the OpenSearch node of
# scripts/opensearch.sh.
# BENCH_SHORT=1 is a quick pass: one count, short bench times, and the
# command's -short (3 runs, smaller sizes) unless those are set.
BENCH ?= .
BENCH_SCENARIOS ?= all
BENCH_FLAGS ?=
ifneq ($(BENCH_SHORT),)
BENCH_COUNT ?= 1
BENCH_TIME ?= 100ms
BENCH_FLAGS += -short
endif
BENCH_COUNT ?= 5
BENCH_TIME ?= 1s
BENCH_RUNS ?=
BENCHSTAT = $(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da

bench: services
	@if [[ "$(BENCH)" != none ]]; then \
		for pass in $$(seq $(BENCH_COUNT)); do \
			$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime $(BENCH_TIME) -count 1 -timeout 60m ./... || exit 1; \
		done | tee bench.out; \
		$(BENCHSTAT) bench.out; \
		if grep -q '/delay=' bench.out; then $(BENCHSTAT) -col /delay -filter '/delay:(keep OR ack)' bench.out; fi; \
	fi
	@if [[ "$(BENCH_SCENARIOS)" != none ]]; then \
		$(if $(filter all engines,$(BENCH_SCENARIOS)),bash scripts/opensearch.sh run )$(GO) run ./internal/bench $(if $(BENCH_RUNS),-runs $(BENCH_RUNS)) $(BENCH_FLAGS) $(BENCH_SCENARIOS) | tee bench-figures.out; \
	fi

# The products example synced by the worker for DEMO_SECONDS (default 20),
# then a few documents and the verify result; see scripts/demo.sh.
# DB=mysql runs it on MariaDB (MYSQL_URL); ENGINE=opensearch syncs into
# OpenSearch (OPENSEARCH_URL, or the node of scripts/opensearch.sh).
demo:
	@bash scripts/demo.sh

# Each fuzz target runs for FUZZTIME; the seed corpora (testdata/fuzz/) also
# run as ordinary tests in make test. Results: docs/RELIABILITY.md.
FUZZTIME ?= 30s
FUZZ_TARGETS = FuzzParseID:. FuzzEntryPayload:. FuzzMessageID:./elastic FuzzAppendJSONString:./elastic FuzzParseConfig:./cmd/redstream

fuzz:
	@for t in $(FUZZ_TARGETS); do \
		name=$${t%%:*}; pkg=$${t#*:}; \
		echo "== $$name ($$pkg, $(FUZZTIME))"; \
		if ! $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg > fuzz.out 2>&1; then \
			cat fuzz.out; rm -f fuzz.out; exit 1; \
		fi; \
		grep 'fuzz: elapsed' fuzz.out | tail -1; \
	done; rm -f fuzz.out

# The chaos tests with a long load: CHAOS_KILLS SIGKILLs of the two worker
# processes (in TestShardedChaos, joins, SIGTERMs and SIGKILLs of up to three)
# at most CHAOS_GAP apart, while a writer does at least
# CHAOS_WRITES operations at CHAOS_RATE a second. CHAOS_SEED replays a run.
# make test runs the same tests with 20 kills and 1,500 operations
# (TestMySQLChaos: the first one on MariaDB).
CHAOS_KILLS ?= 100
CHAOS_GAP ?= 3s
CHAOS_WRITES ?= 30000
CHAOS_RATE ?= 250

chaos: services
	CHAOS_KILLS=$(CHAOS_KILLS) CHAOS_GAP=$(CHAOS_GAP) CHAOS_WRITES=$(CHAOS_WRITES) CHAOS_RATE=$(CHAOS_RATE) \
	$(GO) test -race -count=1 -timeout 60m -run '^(TestChaos|TestClusterChaos|TestShardedChaos|TestMySQLChaos)$$' -v ./cmd/redstream | grep -v '^=== '
