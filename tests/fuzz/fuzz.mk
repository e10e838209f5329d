# The fuzz targets, tests/fuzz/fuzz_NAME.c, each with its seed corpus in corpus/NAME/.
#   make units        also builds $(O)/fuzz/replay_NAME: the target with the ordinary
#                     compiler and replay.c's main; make check replays every corpus
#   make fuzz         builds them with clang's libFuzzer, ASan and UBSan in build/fuzz
#                     and runs each for FUZZ_SECS seconds, one line per target
FUZZ_NAMES   := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_REPLAYS := $(FUZZ_NAMES:%=$(O)/fuzz/replay_%)
FUZZ_SECS    ?= 60
FUZZ_CC      ?= clang

ifeq ($(FUZZING),1)
CFLAGS  += -fsanitize=fuzzer-no-link
endif

$(O)/fuzz/replay_%: $(O)/tests/fuzz/fuzz_%.o $(O)/tests/fuzz/replay.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LIB) $(PKG_LIBS)

$(O)/fuzz/fuzz_%: $(O)/tests/fuzz/fuzz_%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $< $(LIB) $(PKG_LIBS)

units: $(FUZZ_REPLAYS)

fuzz-bins: $(FUZZ_NAMES:%=$(O)/fuzz/fuzz_%)

fuzz-deps:
	@command -v $(FUZZ_CC) >/dev/null && exit 0; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "installing: clang"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang; \
	else \
		echo "make fuzz needs clang (libFuzzer); run as root:"; \
		echo "  apt-get install -y clang"; exit 1; \
	fi

fuzz: fuzz-deps
	$(MAKE) O=build/libfuzzer CC=$(FUZZ_CC) SAN=1 FUZZING=1 fuzz-bins
	$(PYTHON) tests/fuzz/run --bin build/libfuzzer/fuzz --secs $(FUZZ_SECS) $(FUZZ_NAMES)

.PHONY: fuzz fuzz-bins fuzz-deps
