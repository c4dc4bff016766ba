# lib/: the C code both binaries share. Every lib/*.c goes into one static
# library; lib/ never includes from operator/ or nodeagent/ (make lint checks).
LIB_SRCS := $(wildcard lib/*.c)
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
LIBBALLAST := $(BUILD)/libballast.a

$(LIBBALLAST): $(LIB_OBJS)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^
