# Ballast — one non-recursive GNU Makefile. Each tree adds its rules through
# its module.mk; everything is built under $(BUILD).
#
#   make                      build/ballast-operator, build/ballast-agent
#   make check                unit tests (seconds, no servers)
#   make test                 deps, build, local control plane, unit + integration
#                             (+ ASan/UBSan pass), the kind suite, teardown even
#                             on failure
#   make SANITIZER=address,undefined ...   everything instrumented (in build/san/)
#   make lint                 clang-format and layering checks
#   make kind-e2e             the end-to-end suite on a kind cluster (offline)
#   make cluster-up / cluster-down         the local control plane (tests/cluster)

.DEFAULT_GOAL := all
SHELL := /bin/bash

VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

SANITIZER ?=
ifeq ($(SANITIZER),)
BUILD ?= build
OPTFLAGS := -O2 -D_FORTIFY_SOURCE=2
else
BUILD ?= build/san
OPTFLAGS := -O1 -fno-omit-frame-pointer -fsanitize=$(SANITIZER) -fno-sanitize-recover=all
SAN_LDFLAGS := -fsanitize=$(SANITIZER)
endif

CC ?= cc
PKGS := libcurl json-c yaml-0.1 libsystemd expat libcrypto libmicrohttpd zlib

# pkg-config output is cached in $(BUILD)/config.mk, which depends on the
# dependency installer: GNU make remakes it (installing what is missing) and
# restarts before compiling anything.
NODEPS_GOALS := clean lint cluster-up cluster-down distclean help demo-down kind-e2e-down
ifneq ($(filter-out $(NODEPS_GOALS),$(or $(MAKECMDGOALS),all)),)
-include $(BUILD)/config.mk
endif

$(BUILD)/config.mk: .ci/install-deps.sh Makefile
	@mkdir -p $(@D)
	@bash .ci/install-deps.sh
	@{ echo "PKG_CFLAGS := $$(pkg-config --cflags $(PKGS))"; \
	   echo "PKG_LIBS := $$(pkg-config --libs $(PKGS)) -lm -pthread"; \
	   echo "CMOCKA_LIBS := $$(pkg-config --libs cmocka)"; } > $@.tmp && mv $@.tmp $@

WARNFLAGS := -Wall -Wextra -Werror -Wformat=2 -Wshadow -Wmissing-prototypes \
	-Wstrict-prototypes -Wno-unused-parameter -Wno-missing-field-initializers \
	-Wimplicit-fallthrough -Wvla
HARDEN := -fstack-protector-strong -fstack-clash-protection -fcf-protection -fPIE
CFLAGS ?=
CPPFLAGS += -D_GNU_SOURCE -Ilib -DBALLAST_VERSION='"$(VERSION)"'
ALL_CFLAGS = -std=gnu17 -g $(OPTFLAGS) $(WARNFLAGS) $(HARDEN) $(PKG_CFLAGS) $(CFLAGS) -MMD -MP
LDFLAGS ?=
ALL_LDFLAGS = -pie -Wl,-z,relro,-z,now -Wl,--as-needed $(SAN_LDFLAGS) $(LDFLAGS)

# V=1 shows the full commands.
ifeq ($(V),1)
Q :=
else
Q := @
endif

$(BUILD)/%.o: %.c $(BUILD)/config.mk
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c -o $@ $<

include lib/module.mk
include operator/module.mk
include nodeagent/module.mk
include tests/module.mk
include tests/images/module.mk
include tests/helm/module.mk
include tests/bench/module.mk

all: $(BINARIES)

.PHONY: all check test lint clean distclean cluster-up cluster-down help deps

deps:
	@bash .ci/install-deps.sh

lint:
	@bash tests/lint.sh

cluster-up:
	@bash tests/cluster/cluster.sh up

cluster-down:
	@bash tests/cluster/cluster.sh down

clean:
	rm -rf build/ballast-* build/lib build/operator build/nodeagent build/tests build/san build/*.a build/config.mk

distclean:
	-bash tests/cluster/cluster.sh down
	rm -rf build

help:
	@sed -n '2,/^$$/s/^# \{0,1\}//p' Makefile

-include $(shell find $(BUILD) -name '*.d' -type f 2>/dev/null)

# Benchmarks: figures and the commands that reproduce them go to
# docs/benchmarks.md. Not timed tests; run them on a quiet machine.
.PHONY: bench bench-operator
bench: bench-operator

bench-operator: all
	@bash tests/bench/bench-operator.sh

.PHONY: bench-agent
bench: bench-agent

bench-agent: all
	@bash tests/bench/bench-agent.sh

# The scenarios of `make e2e` and what only real nodes show, on a kind cluster
# built offline (kind-e2e/README.md); part of `make test`. KEEP=1 leaves the
# cluster running; `make kind-e2e-down` removes it and what the suite made.
.PHONY: kind-e2e kind-e2e-down
kind-e2e:
	@bash kind-e2e/run.sh

kind-e2e-down:
	@bash kind-e2e/run.sh down
