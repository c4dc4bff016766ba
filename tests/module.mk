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
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(SUPPORT_OBJS) $(TEST_LIBS) $(PKG_LIBS) $(CMOCKA_LIBS)

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
