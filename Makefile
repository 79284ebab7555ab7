# The two commands of the README's quick start: `make demo` and `make test`.
GO ?= go

.PHONY: demo test bench redis-server

# redis-server comes from Debian's packages; as root it is installed when missing.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing redis-server from Debian's packages"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null; \
	  else \
	    echo "redis-server is missing: install it (apt-get install redis-server redis-tools)"; exit 1; \
	  fi; }

demo: redis-server
	$(GO) run ./examples/demo

# The version matrix's server binaries (internal/redistest/versions.go), when they are there.
MIGRATE_TEST_SERVERS ?= $(if $(wildcard ../shared/servers),$(abspath ../shared/servers))

test: redis-server
	$(GO) vet ./...
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	@# Most tests wait on servers (syncs, failovers, rate limits): four at once on two cores.
	MIGRATE_TEST_SERVERS=$(MIGRATE_TEST_SERVERS) $(GO) test -race -parallel 4 -timeout 9m ./...

bench: redis-server
	$(GO) run ./internal/bench $(BENCHFLAGS)
