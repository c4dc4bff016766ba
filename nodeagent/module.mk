# nodeagent/: ballast-agent, the data plane.
AGENT_SRCS := $(wildcard nodeagent/*.c)
AGENT_OBJS := $(AGENT_SRCS:%.c=$(BUILD)/%.o)
AGENT_LIB := $(BUILD)/libagent.a

$(AGENT_LIB): $(filter-out $(BUILD)/nodeagent/main.o,$(AGENT_OBJS))
	@mkdir -p $(@D)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/ballast-agent: $(BUILD)/nodeagent/main.o $(AGENT_LIB) $(LIBBALLAST)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

BINARIES += $(BUILD)/ballast-agent
