# Development tasks. `make test` is the test command: it starts the services
# the tests need, then vets, format-checks, lints and tests every package.
#
#   make test       services + vet + gofmt check + staticcheck + go test -race
#   make test-es    the same for ./elastic/... (needs ELASTICSEARCH_URL)
#   make services   ensure PostgreSQL and Redis answer (scripts/services.sh)
#   make fuzz       every fuzz target for FUZZTIME each (seeds in testdata/fuzz)
#   make bench      every benchmark BENCH_COUNT times, medians by benchstat
#                   (raw output in bench.out; see docs/BENCHMARKS.md)
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
export DATABASE_URL REDIS_URL
# make test-es reads ELASTICSEARCH_URL from the environment or the command
# line (make test-es ELASTICSEARCH_URL=...), which make passes on by itself.

.PHONY: test test-es services vet fmt fmt-check lint bench fuzz demo

test: services vet fmt-check lint
	$(GO) test $(TEST_FLAGS) ./...

test-es: services
	@if [[ -z "$${ELASTICSEARCH_URL:-}" ]]; then \
		echo "test-es: set ELASTICSEARCH_URL to an Elasticsearch server, e.g." >&2; \
		echo "  make test-es ELASTICSEARCH_URL=http://127.0.0.1:9200" >&2; \
		exit 1; \
	fi
	$(GO) vet ./elastic/...
	@$(MAKE) --no-print-directory fmt-check FMT_DIRS=./elastic
	$(STATICCHECK) ./elastic/...
	$(GO) test $(TEST_FLAGS) ./elastic/...

services:
	@bash scripts/services.sh

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

BENCH ?= .
BENCH_COUNT ?= 5
BENCHSTAT = $(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da

bench: services
	$(GO) test -run '^$$' -bench '$(BENCH)' -count $(BENCH_COUNT) -timeout 60m ./... | tee bench.out
	$(BENCHSTAT) bench.out

# The products example synced by the worker for DEMO_SECONDS (default 20),
# then a few documents and the verify result; see scripts/demo.sh.
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
