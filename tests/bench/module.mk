# tests/bench: benchmarks (not timed tests). bench-agent-probe timestamps, with
# inotify, the moment each agent's applied files change (see
# tests/bench/bench-agent.sh). Plain libc: no libraries linked.
ifndef BENCH_AGENT_PROBE
BENCH_AGENT_PROBE := $(BUILD)/tests/bench/bench-agent-probe

$(BENCH_AGENT_PROBE): $(BUILD)/tests/bench/bench-agent-probe.o
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $<

bench-agent: $(BENCH_AGENT_PROBE)
endif
