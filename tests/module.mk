# tests/: cmocka unit tests (tests/unit/test-*.c, no servers) and integration
# tests (tests/integration/test-*.c, against the local control plane). Shared
# test helpers live in tests/support/*.c. Each test file is one program that
# links the libraries of the tree it tests.
SUPPORT_SRCS := $(wildcard tests/support/*.c)
SUPPORT_OBJS := $(SUPPORT_SRCS:%.c=$(BUILD)/%.o)
UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(wildcard tests/unit/test-*.c))
INTEGRATION_TESTS := $(patsubst tests/integration/%.c,$(BUILD)/tests/integration/%,$(wildcard tests/integration/test-*.c))
TEST_LIBS = $(OPERATOR_LIB) $(AGENT_LIB) $(LIBBALLAST)

$(UNIT_TESTS) $(INTEGRATION_TESTS): $(BUILD)/tests/%: $(BUILD)/tests/%.o $(SUPPORT_OBJS) $(OPERATOR_LIB) $(AGENT_LIB) $(LIBBALLAST)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(SUPPORT_OBJS) $(TEST_LIBS) $(PKG_LIBS) $(CMOCKA_LIBS)

tests-build: $(UNIT_TESTS) $(INTEGRATION_TESTS) $(BINARIES)

# Unit tests only: seconds, no servers.
check: $(UNIT_TESTS)
	@bash tests/run-tests.sh unit $(UNIT_TESTS)

# Integration tests; expects the local control plane (tests/cluster) to be up.
check-integration: $(INTEGRATION_TESTS) $(BINARIES)
	@bash tests/run-tests.sh integration $(INTEGRATION_TESTS)

# The one test command: see tests/test.sh.
test:
	@bash tests/test.sh

.PHONY: tests-build check-integration

# Tests see the daemons' internal headers too.
$(BUILD)/tests/%.o: CPPFLAGS += -Ioperator -Inodeagent -Itests/support

# Fuzz harnesses (tests/fuzz/fuzz-<parser>.c defining LLVMFuzzerTestOneInput)
# are linked with a replay main and run over their seed corpus
# (tests/fuzz/corpus/<parser>/) by `make check`, under whatever sanitizers the
# build has. `make fuzz FUZZER=fuzz-yamlx` runs one under libFuzzer (clang).
FUZZERS := $(patsubst tests/fuzz/%.c,$(BUILD)/tests/fuzz/%,$(wildcard tests/fuzz/fuzz-*.c))

$(FUZZERS): $(BUILD)/tests/fuzz/%: $(BUILD)/tests/fuzz/%.o $(BUILD)/tests/fuzz/replay.o $(OPERATOR_LIB) $(AGENT_LIB) $(LIBBALLAST)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

check-fuzz: $(FUZZERS)
	@set -e; for f in $(FUZZERS); do \
		n=$${f##*/fuzz-}; \
		echo "== fuzz replay: $${f##*/} over tests/fuzz/corpus/$$n"; \
		$$f tests/fuzz/corpus/$$n; \
	done

check: check-fuzz
tests-build: $(FUZZERS)

FUZZ_TIME ?= 60
fuzz:
	@test -n "$(FUZZER)" || { echo "usage: make fuzz FUZZER=fuzz-NAME [FUZZ_TIME=60]"; exit 2; }
	@command -v clang >/dev/null || { echo "make fuzz needs clang: apt-get install clang"; exit 1; }
	$(MAKE) CC=clang SANITIZER=fuzzer-no-link,address,undefined BUILD=build/fuzz build/fuzz/libballast.a build/fuzz/liboperator.a build/fuzz/libagent.a build/fuzz/tests/fuzz/$(FUZZER).o
	clang -fsanitize=fuzzer,address,undefined -o build/fuzz/$(FUZZER) build/fuzz/tests/fuzz/$(FUZZER).o build/fuzz/liboperator.a build/fuzz/libagent.a build/fuzz/libballast.a $(PKG_LIBS)
	mkdir -p build/fuzz/corpus-$(FUZZER) && build/fuzz/$(FUZZER) -max_total_time=$(FUZZ_TIME) build/fuzz/corpus-$(FUZZER) tests/fuzz/corpus/$(FUZZER:fuzz-%=%)

.PHONY: check-fuzz fuzz

# End to end on the local control plane (tests/e2e/local.sh); also part of
# `make test`. E2E_OUTAGE=60 sets the length of the API-server partition.
e2e: all
	@bash tests/e2e/local.sh

.PHONY: e2e

# The main job on one machine, narrated; leaves it running (see the summary).
demo: all
	@bash tests/e2e/demo.sh

demo-down:
	@bash tests/e2e/demo-down.sh

.PHONY: demo demo-down
