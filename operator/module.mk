# operator/: ballast-operator, the control plane.
OPERATOR_SRCS := $(wildcard operator/*.c)
OPERATOR_OBJS := $(OPERATOR_SRCS:%.c=$(BUILD)/%.o)
# Everything but main.o also goes into a library the tests link.
OPERATOR_LIB := $(BUILD)/liboperator.a

$(OPERATOR_LIB): $(filter-out $(BUILD)/operator/main.o,$(OPERATOR_OBJS))
	@mkdir -p $(@D)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/ballast-operator: $(BUILD)/operator/main.o $(OPERATOR_LIB) $(LIBBALLAST)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

BINARIES += $(BUILD)/ballast-operator
