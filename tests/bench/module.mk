# tests/bench: benchmarks (not timed tests). Guarded: bench-agent.sh reads
# this file a second time.
#  - bench-agent-probe timestamps, with inotify, the moment each agent's
#    applied files change (see tests/bench/bench-agent.sh). Plain libc: no
#    libraries linked.
#  - bench-kube-floor sends the API writes of publishing N bundles, built by
#    the operator's own functions, as fast as the API server answers: the
#    floor bench-operator compares the operator with
#    (tests/bench/bench-operator.sh).
ifndef BENCH_AGENT_PROBE
BENCH_AGENT_PROBE := $(BUILD)/tests/bench/bench-agent-probe
BENCH_KUBE_FLOOR := $(BUILD)/tests/bench/bench-kube-floor

$(BENCH_AGENT_PROBE): $(BUILD)/tests/bench/bench-agent-probe.o
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $<

$(BENCH_KUBE_FLOOR): $(BUILD)/tests/bench/bench-kube-floor.o $(OPERATOR_LIB) $(LIBBALLAST)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

bench-agent: $(BENCH_AGENT_PROBE)
bench-operator: $(BENCH_KUBE_FLOOR)
tests-build: $(BENCH_KUBE_FLOOR)
endif
